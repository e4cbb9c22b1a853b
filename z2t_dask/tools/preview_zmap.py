"""Zmap previews: coefficient maps over the chip, PSFs across the field and through focus.

Maps are in rad RMS (Noll order); PSFs come from the config's PSF model
(:func:`z2t_dask.engine.assembly.make_psf_model`) at the Zmap's coefficients. Needs matplotlib.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.tools.figures import new_figure, save_figure

__all__ = ["focus_series", "preview_zmap", "zmap_figure"]

_ZERNIKE_NAMES = {
    (0, 0): "piston",
    (1, 1): "tilt x",
    (1, -1): "tilt y",
    (2, 0): "defocus",
    (2, -2): "oblique astig.",
    (2, 2): "vertical astig.",
    (3, -1): "vertical coma",
    (3, 1): "horizontal coma",
    (3, -3): "vertical trefoil",
    (3, 3): "oblique trefoil",
    (4, 0): "spherical",
    (4, 2): "2nd astig. V",
    (4, -2): "2nd astig. O",
    (4, 4): "quadrafoil V",
    (4, -4): "quadrafoil O",
    (5, 1): "2nd coma H",
    (5, -1): "2nd coma V",
    (5, 3): "2nd trefoil O",
    (5, -3): "2nd trefoil V",
    (5, 5): "pentafoil O",
    (5, -5): "pentafoil V",
    (6, 0): "2nd spherical",
}


def _mode_name(j: int) -> str:
    from z2t_dask.physics.optics.zernike import noll_to_nm

    n, m = noll_to_nm(j)
    return _ZERNIKE_NAMES.get((n, m), f"n={n} m={m}")


def _coefficient_grid(zmap: Any, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase coefficients ``(K, G, G)`` rad on a regular grid of chip positions (read row by row)."""
    h, w = zmap.shape
    ys = np.linspace(0, h - 1, min(grid, h))
    xs = np.linspace(0, w - 1, min(grid, w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy21 dropped-mode warning (z2t inspect reports them)
        rows = [zmap.coefficients(xs, np.full_like(xs, y), method="linear")[0] for y in ys]
    return np.stack(rows, axis=1).transpose(2, 0, 1) if rows else np.zeros((zmap.n_modes, 0, 0)), xs, ys


def _model_name(cfg: Any) -> str:
    return "vectorial" if cfg.psf.vectorial else "scalar"


def focus_series(
    zmap: Any, cfg: Any, z_um: Sequence[float] | np.ndarray, *, compare_scalar: bool = False
) -> dict[str, np.ndarray]:
    """PSFs through focus at the centre of a Zmap: ``{model name: (n, p, p) float32}``.

    Parameters
    ----------
    zmap
        A Zmap (rad RMS, Noll); its centre's coefficients are used.
    cfg
        A validated config; its PSF model (:func:`~z2t_dask.engine.assembly.make_psf_model`) comes
        first, named ``"vectorial"`` or ``"scalar"`` (``psf.vectorial``); freely rotating emitters.
    z_um
        Axial positions (µm, positive away from the coverslip).
    compare_scalar
        Also the other model (scalar beside vectorial, or vectorial beside scalar) of the same
        optics, so both are shown side by side.
    """
    import dataclasses

    from z2t_dask.engine.assembly import make_psf_model

    h, w = zmap.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph_c, mag_c = zmap.coefficients(np.array([w / 2]), np.array([h / 2]), method="cubic")
    zs = np.asarray(z_um, np.float64)
    n = zs.size
    cfgs = [cfg]
    if compare_scalar:
        cfgs.append(dataclasses.replace(cfg, psf=dataclasses.replace(cfg.psf, vectorial=not cfg.psf.vectorial)))
    out = {}
    for c in cfgs:
        out[_model_name(c)] = np.asarray(
            make_psf_model(c).compute(
                np.repeat(ph_c, n, 0), zs, np.zeros(n), np.zeros(n), None if mag_c is None else np.repeat(mag_c, n, 0)
            )
        )
    return out


def zmap_figure(
    zmap: Any,
    config: Any = None,
    *,
    title: str = "",
    grid: int = 48,
    max_maps: int = 15,
    z_um: Sequence[float] | None = None,
    compare_scalar: bool = False,
) -> Any:
    """Coefficient maps, PSFs across the field (in focus) and through z at the field centre.

    Parameters
    ----------
    zmap
        A :class:`~z2t_dask.physics.zmap.Zmap` (file or synthetic); coefficients in rad RMS, Noll order.
    config
        Config whose optics build the PSF model (default: the built-in default).
    grid
        Points per axis at which the maps are sampled (linear interpolation).
    max_maps
        Most coefficient maps drawn (modes j >= 4 that are not zero everywhere).
    z_um
        Axial positions (µm) of the through-focus row; default 5 steps over ±``emitters.z_range_um``.
    compare_scalar
        Add a second through-focus row with the other PSF model (scalar under the vectorial
        default, or vectorial under a scalar config): :func:`focus_series`.
    """
    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import make_psf_model

    cfg = load_config(config)
    model = make_psf_model(cfg)
    coeffs, xs, ys = _coefficient_grid(zmap, grid)
    h, w = zmap.shape
    modes = [j for j in range(4, coeffs.shape[0] + 1) if np.abs(coeffs[j - 1]).max() > 1e-6][:max_maps]
    ncols = 5
    map_rows = max(1, math.ceil(len(modes) / ncols))
    extra = 1 if compare_scalar else 0
    fig = new_figure((2.6 * ncols, 2.3 * map_rows + 2.3 * 3 + 2.5 * (1 + extra)))
    gs = fig.add_gridspec(
        map_rows + 4 + extra, ncols, height_ratios=[1.0] * map_rows + [1.0, 1.0, 1.0] + [1.05] * (1 + extra)
    )
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    for k, j in enumerate(modes):
        ax = fig.add_subplot(gs[k // ncols, k % ncols])
        v = float(np.abs(coeffs[j - 1]).max())
        im = ax.imshow(coeffs[j - 1], cmap="RdBu_r", vmin=-v, vmax=v, extent=extent, interpolation="bilinear")
        ax.set_title(f"Z{j} {_mode_name(j)}", fontsize=8)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    if not modes:
        ax = fig.add_subplot(gs[0, :])
        ax.text(0.5, 0.5, "no aberration modes j >= 4 (flat Zmap)", ha="center", va="center")
        ax.axis("off")
    # PSFs over a 3 x 3 grid of field positions, in focus
    fx = np.array([w / 6, w / 2, 5 * w / 6])
    fy = np.array([h / 6, h / 2, 5 * h / 6])
    px, py = np.meshgrid(fx, fy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phase, mag = zmap.coefficients(px.ravel(), py.ravel(), method="cubic")
    zero = np.zeros(phase.shape[0])
    psfs = np.asarray(model.compute(phase, zero, zero, zero, mag))
    from matplotlib.colors import PowerNorm

    c, r = psfs.shape[-1] // 2, min(psfs.shape[-1] // 2, 8)
    for i in range(9):
        ax = fig.add_subplot(gs[map_rows + i // 3, i % 3])
        ax.imshow(
            psfs[i, c - r : c + r + 1, c - r : c + r + 1],
            cmap="inferno",
            norm=PowerNorm(0.5, vmin=0),
            interpolation="nearest",
        )
        ax.set_title(f"x={px.ravel()[i]:.0f} y={py.ravel()[i]:.0f} px, peak {psfs[i].max():.3f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(gs[map_rows : map_rows + 3, 3:])
    rms = np.sqrt((coeffs[1:] ** 2).sum(axis=0))
    im = ax.imshow(rms, cmap="viridis", extent=extent, interpolation="bilinear")
    fig.colorbar(im, ax=ax, shrink=0.7, label="rad RMS").ax.tick_params(labelsize=6)
    ax.plot(px.ravel(), py.ravel(), "w+", ms=10, mew=1.5)
    beads = zmap.beads() if hasattr(zmap, "beads") else {}
    if beads.get("x") is not None and len(beads["x"]):
        ax.plot(beads["x"], beads["y"], "o", mfc="none", mec="red", ms=6, label="calibration beads")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title("RMS pupil phase (j >= 2); + = PSF positions", fontsize=8)
    ax.tick_params(labelsize=6)
    # through focus at the centre
    zr = float(cfg.emitters.z_range_um) or 0.8
    zs = np.asarray(z_um if z_um is not None else np.linspace(-zr, zr, ncols), np.float64)[:ncols]
    series = focus_series(zmap, cfg, zs, compare_scalar=compare_scalar)
    vmax = max(float(s.max()) for s in series.values())  # one scale: the models compare by eye
    for row, (name, stack) in enumerate(series.items()):
        for i in range(zs.size):
            ax = fig.add_subplot(gs[map_rows + 3 + row, i])
            ax.imshow(stack[i], cmap="inferno", norm=PowerNorm(0.5, vmin=0, vmax=vmax), interpolation="nearest")
            ax.set_title(f"{name}, centre, z = {zs[i]:+.2f} um, peak {stack[i].max():.3f}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    o = cfg.optical
    fig.suptitle(
        f"{title} Zmap {h}x{w} px (maps in rad RMS, Noll); {_model_name(cfg)} PSFs {model.patch_size}x"
        f"{model.patch_size} px, NA {o.NA}, {o.wavelength_nm:g} nm, n {o.n_medium}, focal plane "
        f"{cfg.focus_depth_um:g} um above the coverslip, sqrt intensity scale; z > 0 away from the coverslip",
        fontsize=9,
    )
    return fig


def preview_zmap(
    zmap: Any = None, path: str | os.PathLike = "zmap_preview.png", *, config: Any = None, dpi: int = 80, **kwargs: Any
) -> Path:
    """PNG of :func:`zmap_figure`. ``zmap``: a Zmap, a file path, or None (the config's Zmap)."""
    import dataclasses

    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import make_zmap

    cfg = load_config(config)
    if zmap is None:
        zm, title = make_zmap(cfg), (Path(cfg.zmap_path).name if cfg.zmap_path else "synthetic")
    elif isinstance(zmap, (str, os.PathLike)):  # read with the config's conventions
        zm, title = make_zmap(dataclasses.replace(cfg, zmap_path=str(zmap))), Path(zmap).name
    else:
        zm, title = zmap, type(zmap).__name__
    return save_figure(zmap_figure(zm, cfg, title=title, **kwargs), path, dpi)
