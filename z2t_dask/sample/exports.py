"""Ground-truth exports of a sample: the export metadata of a config, ``Sample.export`` and ``output.exports``.

:func:`export_meta` turns a config into the :class:`~z2t_dask.io.exporters.ExportMeta` every exporter
takes (image, pixel size, camera, background and the PSF width the Cramér–Rao bound needs);
:func:`export_sample` writes one tool's files for a :class:`~z2t_dask.sample.core.Sample`
(``Sample.export``) and :func:`write_exports` the configured ones (``output.exports``) into a sample
folder being saved, beside ``emitters.h5``.

The PSF width
-------------
The bound uses an effective Gaussian width measured on the config's own exact PSF model
(:func:`~z2t_dask.engine.assembly.exact_psf_model`): the unaberrated, pixel-integrated PSF at z from
``-emitters.z_range_um`` to ``+emitters.z_range_um`` every 0.05 µm (or finer), each fitted by a
pixel-integrated elliptical Gaussian (:func:`~z2t_dask.physics.crlb.fit_gaussian_sigma`), then
interpolated linearly at each record's z. In focus this gives about ``0.21 λ/NA`` (96 nm for 660 nm and
NA 1.4, against 99 nm from the formula); defocus widens it (about 660 nm at 1 µm). The Zmap's
aberrations are not included: the bound is that of an unaberrated PSF at the record's depth (a lower
bound for the aberrated one).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from z2t_dask.caching import BuildOnceCache
from z2t_dask.config import SimulationConfig

if TYPE_CHECKING:
    from z2t_dask.io.exporters import ExportMeta
    from z2t_dask.sample.core import Sample

__all__ = ["export_meta", "export_sample", "psf_sigma_table", "readout_variance", "write_exports"]

log = logging.getLogger("z2t_dask")

#: Largest z spacing (µm) of the tabulated PSF width.
SIGMA_DZ_UM = 0.05

_SIGMA_CACHE: BuildOnceCache[tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = BuildOnceCache(16)


def psf_sigma_table(cfg: SimulationConfig) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Effective Gaussian PSF width along x and y (nm) of a config's exact model, tabulated over z.

    Returns
    -------
    (z_um, sigma_x_nm, sigma_y_nm) : tuples of float
        z from ``-emitters.z_range_um`` to ``+emitters.z_range_um`` (at most :data:`SIGMA_DZ_UM` apart;
        only 0 when the range is 0) and the fitted widths there (see the module notes). Cached per
        process for the same optics and range.
    """
    from z2t_dask.engine.assembly import exact_psf_model
    from z2t_dask.physics.crlb import fit_gaussian_sigma

    model = exact_psf_model(cfg)
    zr = float(cfg.emitters.z_range_um)
    n = math.ceil(zr / SIGMA_DZ_UM) if zr > 0 else 0
    zs = np.linspace(-zr, zr, 2 * n + 1) if n else np.zeros(1)
    key = json.dumps([model.__getstate__(), zs.tolist()], default=str, sort_keys=True)

    def build() -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        patches = model.compute(np.zeros((zs.size, 1), np.float32), zs.astype(np.float32))
        pitch = (model.pixel_size_nm_x, model.pixel_size_nm_y)
        fits = [fit_gaussian_sigma(p, pitch) for p in patches]
        return tuple(zs.tolist()), tuple(f[0] for f in fits), tuple(f[1] for f in fits)

    return _SIGMA_CACHE.get(key, build)


def readout_variance(cfg: SimulationConfig) -> tuple[float, str]:
    """Read-noise variance per pixel in photo-electrons² at the camera input, and where it comes from.

    EMCCD ``(read_noise_e / em_gain)²``; sCMOS the mean of ``variance / gain²`` over the ROI (per-pixel
    maps read from their files; 0 with a warning when they cannot be read); the original float model
    its ``readout_noise²`` (photons); ideal and none 0.
    """
    c = cfg.camera
    if c.model == "emccd":
        return (c.read_noise_e / c.em_gain) ** 2, "camera.read_noise_e / camera.em_gain, squared"
    if c.model == "scmos":
        from z2t_dask.engine.assembly import make_camera
        from z2t_dask.errors import Z2TError

        try:
            cam = make_camera(cfg)
        except (OSError, Z2TError) as exc:
            log.warning("export: sCMOS maps unreadable (%s); the bound ignores the read noise", exc)
            return 0.0, f"0 (sCMOS maps unreadable: {exc})"
        var = np.asarray(cam.variance, dtype=np.float64) / np.asarray(cam.gain, dtype=np.float64) ** 2
        return float(np.mean(var)), "mean of camera.scmos_variance / camera.scmos_gain^2 over the ROI"
    if c.model == "original" and cfg.tiff.noise_params is not None:
        return float(cfg.tiff.noise_params.readout_noise) ** 2, "tiff.noise_params.readout_noise, squared"
    return 0.0, "none"


def export_meta(
    cfg: SimulationConfig,
    *,
    image_shape: tuple[int, int] | None = None,
    frames: int | None = None,
    pixel_size_nm: tuple[float, float] | None = None,
    provenance: dict[str, Any] | None = None,
) -> ExportMeta:
    """The :class:`~z2t_dask.io.exporters.ExportMeta` of a config (image, camera, background, PSF width).

    Parameters
    ----------
    cfg : SimulationConfig
        The sample's config (optics, camera, background, ``emitters.z_range_um``).
    image_shape, frames, pixel_size_nm : optional
        Override the config's (e.g. what a sample folder's stack declares).
    provenance : dict, optional
        JSON-able facts stored in the files (seed, sample name, ...).
    """
    from z2t_dask import __version__
    from z2t_dask.io.exporters import ExportMeta
    from z2t_dask.physics.crlb import excess_noise_factor

    c, o = cfg.camera, cfg.optical
    zs, sx, sy = psf_sigma_table(cfg)
    read, read_source = readout_variance(cfg)
    return ExportMeta(
        image_shape=tuple(int(v) for v in (image_shape or cfg.image_shape)),  # type: ignore[arg-type]
        frames=int(frames or cfg.emitters.frames),
        pixel_size_nm=pixel_size_nm or (o.pixel_size_nm_x, o.pixel_size_nm_y),
        background_photons=float(cfg.background.photons),
        qe=float(c.qe) if c.model in ("emccd", "scmos") else 1.0,
        excess_noise=excess_noise_factor(c.model, c.em_gain),
        readout_variance=read,
        camera=c.model,
        sigma_z_um=zs,
        sigma_x_nm=sx,
        sigma_y_nm=sy,
        sigma_source=f"Gaussian fit to the exact unaberrated PSF over z (wavelength {o.wavelength_nm} nm, NA {o.NA}; "
        "z2t_dask.sample.exports)",
        provenance={"z2t_version": __version__, "readout_variance": read_source, **(provenance or {})},
    )


def _records(sample: Sample) -> dict[str, np.ndarray]:
    """The whole truth's records as one mapping (part after part; the sample keeps nothing)."""
    parts = [p.records for p in sample.truth.parts()]
    keys = ("xyz", "phot", "frame_ix", "id", "inside")
    if len(parts) == 1:
        return {k: parts[0][k] for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def export_sample(
    sample: Sample,
    to: str,
    path: str | os.PathLike[str] | None = None,
    *,
    include_outside: bool = False,
    name: str | None = None,
) -> tuple[Path, ...]:
    """Write a sample's ground truth for the tool ``to`` (see :meth:`z2t_dask.Sample.export`)."""
    from z2t_dask.io.exporters import get_exporter

    entry = get_exporter(to, "to")
    stem = name or f"sample_{int(sample.seed):03d}"
    target = Path(path) if path is not None else Path.cwd() / entry.filename(stem)
    if target.is_dir():
        target = target / entry.filename(stem)
    meta = export_meta(sample.config, provenance={"seed": int(sample.seed), "sample": stem})
    return entry.write(target, _records(sample), meta, include_outside=include_outside)


def write_exports(sample: Sample, folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Write the exports ``output.exports`` lists into a sample folder ``<folder>/<name><suffix>``."""
    names = list(getattr(sample.config.output, "exports", []) or [])
    written: list[Path] = []
    for to in names:
        written += export_sample(sample, to, Path(folder), name=name)
    return written
