"""The one place that builds physics objects from a config.

Every consumer — the ground truth (:func:`z2t_dask.sample.simulate`), the render plan, the fast
PSF library, previews, benchmarks — calls these functions; nothing rebuilds a Zmap, an
aberration field, a PSF model or a camera by hand, so two consumers can never disagree about
what a config means.

============================  ===========================================================
:func:`make_zmap`             the Zmap of ``zmap_path`` or the synthetic default
:func:`aberration_field`      per-emitter Zernike coefficients from ROI positions
:func:`make_psf_model`        the exact pupil PSF, or its fast library (``psf.mode``)
:func:`make_camera`           the camera model, sCMOS maps cropped to the ROI
============================  ===========================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.config import SimulationConfig
from z2t_dask.errors import ConfigError
from z2t_dask.physics import camera as cam
from z2t_dask.physics.aberrations import AberrationField
from z2t_dask.physics.optics import psf_store
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.psf_library import PSFLibrary, cached_library
from z2t_dask.physics.optics.psf_spectral import SpectralLibrary
from z2t_dask.physics.zmap import SyntheticZmap, Zmap, read_zmap

__all__ = [
    "make_zmap",
    "aberration_field",
    "check_zmap_covers_roi",
    "make_psf_model",
    "make_camera",
    "exact_psf_model",
]


def make_zmap(cfg: SimulationConfig) -> Zmap:
    """The Zmap of a config: the file at ``zmap_path``, or the synthetic default.

    Parameters
    ----------
    cfg
        A validated config (``zernike.*`` say how to read the file; ``psf.n_modes`` how many
        Noll modes to keep; ``optical.wavelength_nm`` converts nm coefficients to rad).
    """
    z = cfg.zernike
    if cfg.zmap_path:
        return read_zmap(
            cfg.zmap_path,
            convention=z.convention,
            units=z.units,
            wavelength_nm=cfg.optical.wavelength_nm,
            n_modes=cfg.psf.n_modes,
        )
    return SyntheticZmap(
        shape=tuple(z.synthetic_shape), rms_rad=z.synthetic_rms_rad, seed=z.synthetic_seed, n_modes=cfg.psf.n_modes
    )


def check_zmap_covers_roi(cfg: SimulationConfig, zmap: Zmap) -> None:
    """Refuse a Zmap that does not cover the ROI on the chip (``tiff.crop_offset`` + ROI size).

    Emitters are placed on the chip at ROI position + ``tiff.crop_offset`` (px); a ROI reaching
    beyond the Zmap would read clamped edge values (or extrapolate a synthetic map) silently.

    Raises
    ------
    ConfigError
        Naming ``tiff.crop_offset`` (or ``tiff.roi_size`` when the ROI alone is larger than the
        Zmap), the ROI's chip rows and columns and the Zmap's shape.
    """
    shape = getattr(zmap, "shape", None)
    if shape is None or len(shape) != 2 or min(int(v) for v in shape) <= 0:
        return  # a Zmap object that declares no extent
    zh, zw = int(shape[0]), int(shape[1])
    (h, w), (x0, y0) = cfg.image_shape, cfg.crop_offset_xy
    if x0 + w <= zw and y0 + h <= zh:
        return
    source = getattr(zmap, "path", None)
    what = f"the Zmap {source}" if source else f"the {type(zmap).__name__} (zernike.synthetic_shape)"
    key = "tiff.roi_size" if w > zw or h > zh else "tiff.crop_offset"
    raise ConfigError(
        [
            (
                key,
                f"the ROI (tiff.crop_offset [{x0}, {y0}] + {w}x{h} px) covers chip columns {x0}..{x0 + w - 1}, rows "
                f"{y0}..{y0 + h - 1}, beyond {what} of {zh}x{zw} px (height x width); choose a crop_offset and ROI "
                "inside it",
            )
        ]
    )


def aberration_field(cfg: SimulationConfig, zmap: Zmap | None = None) -> AberrationField:
    """The aberration field of a config over ``zmap`` (default :func:`make_zmap`).

    The Zmap's phase at the chip position (ROI + ``tiff.crop_offset``) times ``zernike.scale``,
    plus ``psf.fixed_zernike`` unless ``optical.ignore_fixed_psf_coeffs``. The Zmap must cover
    the ROI on the chip (:func:`check_zmap_covers_roi`, a :class:`~z2t_dask.errors.ConfigError`).
    """
    fixed = (
        ()
        if cfg.optical.ignore_fixed_psf_coeffs
        else tuple((int(j), float(v)) for j, v in cfg.psf.fixed_zernike.items())
    )
    zmap = make_zmap(cfg) if zmap is None else zmap
    check_zmap_covers_roi(cfg, zmap)
    return AberrationField(
        zmap=zmap,
        offset_xy=cfg.crop_offset_xy,
        scale=float(cfg.zernike.scale),
        fixed=fixed,
        method=cfg.zernike.interpolation_method,
    )


def exact_psf_model(cfg: SimulationConfig) -> PupilPSF:
    """The exact pupil PSF model of a config's optics and ``psf.*`` numerics.

    Vectorial or scalar (``psf.vectorial``), with the sample / coverslip / immersion indices and
    thicknesses (actual and design; null design values resolve in the model), the OTF blur
    ``psf.otf_sigma_nm`` (nm) and the resolved focal-plane depth :attr:`SimulationConfig.focus_depth_um`
    (µm above the coverslip; ``optical.focus_depth_um`` null = ``emitters.z_range_um``), which
    ``describe()`` stores in every output's metadata.
    """
    o, p = cfg.optical, cfg.psf
    return PupilPSF(
        wavelength_nm=o.wavelength_nm,
        na=o.NA,
        n_medium=o.n_medium,
        n_immersion=o.n_immersion,
        pixel_size_nm_x=o.pixel_size_nm_x,
        pixel_size_nm_y=o.pixel_size_nm_y,
        patch_size=p.patch_size,
        oversampling=p.oversampling,
        n_modes=p.n_modes,
        vectorial=bool(p.vectorial),
        n_immersion_design=o.n_immersion_design,
        n_coverslip=o.n_coverslip,
        n_coverslip_design=o.n_coverslip_design,
        coverslip_um=float(o.coverslip_um),
        coverslip_design_um=o.coverslip_design_um,
        working_distance_um=float(o.working_distance_um),
        focus_depth_um=cfg.focus_depth_um,
        otf_sigma_nm=float(p.otf_sigma_nm),
    )


def make_psf_model(cfg: SimulationConfig) -> PupilPSF | PSFLibrary:
    """The PSF model of a config: the exact pupil model, or (``psf.mode = "fast"``) a library of it.

    The fast library tabulates the config's own :func:`aberration_field` (``zmap_path`` or the
    synthetic default, ``zernike.scale`` and the fixed coefficients) over the emitter sampling
    area (ROI + margin) and ``[-z_range, z_range]``; it is built once per process for the same
    optics, Zmap and options and carries its measured error in ``describe()``. Emitters whose
    aberrations do not come from that field (e.g. a Zmap object passed to ``simulate``) get
    exact PSFs, and so do fixed dipoles (``emitters.dipole = "fixed"``). A field the table library
    does not cover within ``psf.fast_max_mib`` (a whole chip with a varying Zmap) gets the low-rank
    spectral library (:class:`~z2t_dask.physics.optics.psf_spectral.SpectralLibrary`: its memory
    does not grow with the area; z planes ``2 * psf.fast_dz_um`` apart, cubic). The library's cache key holds
    the exact model's every parameter (vectorial or scalar, indices, thicknesses, resolved focus
    depth, OTF blur): two configs that differ in any of them never share a library. A built
    library is also kept on disk (:mod:`~z2t_dask.physics.optics.psf_store`: ``$Z2T_PSF_CACHE``,
    else ``~/.cache/z2t_dask/psf``; ``off`` disables it) under that key and the code's stamp, and
    loaded (checked) instead of built by later processes: the same library, hence the same bytes.
    """
    exact = exact_psf_model(cfg)
    p = cfg.psf
    if p.mode == "exact":
        return exact
    z, e, o = cfg.zernike, cfg.emitters, cfg.optical
    (w, h), m, (x0, y0) = cfg.area_xy, float(e.margin_px), cfg.crop_offset_xy
    extent = (-m, w + m, -m, h + m)
    pad = 1e-4  # um: float32 rounding of the emitters' z; never below the coverslip (depth focus + z >= 0)
    z_range = (max(-float(e.z_range_um) - pad, -cfg.focus_depth_um), float(e.z_range_um) + pad)
    fixed = {} if o.ignore_fixed_psf_coeffs else dict(p.fixed_zernike)
    st = os.stat(cfg.zmap_path) if cfg.zmap_path and os.path.exists(cfg.zmap_path) else None
    stamp = None if st is None else [st.st_size, st.st_mtime_ns]  # a rewritten Zmap is another library
    key = json.dumps(
        [
            exact.__getstate__(),
            cfg.zmap_path,
            stamp,
            z.convention,
            z.units,
            z.interpolation_method,
            z.scale,
            z.synthetic_rms_rad,
            z.synthetic_seed,
            list(z.synthetic_shape),
            sorted(fixed.items()),
            [x0, y0],
            extent,
            z_range,
            p.fast_dz_um,
            p.fast_subpixel,
            p.fast_span_rad,
            p.fast_tol_rad,
            p.fast_max_mib,
        ],
        default=str,
    )

    def build() -> PSFLibrary:
        stored = psf_store.load_library(key, exact)  # a library built by an earlier run or another worker
        if stored is not None:
            return stored
        step = 2 * exact.sampling  # sub-pixel offsets: even and a multiple of the fine sampling
        field_fn = aberration_field(cfg).at
        kw: dict[str, Any] = dict(
            dz_um=p.fast_dz_um,
            subpixel=-(-p.fast_subpixel // step) * step,
            span_rad=p.fast_span_rad,
            tol_rad=p.fast_tol_rad,
            max_mib=p.fast_max_mib,
        )
        plan = PSFLibrary.from_field(exact, field_fn, extent, z_range, plan_only=True, **kw)
        lib: PSFLibrary
        if plan.info["coverage"] >= 1.0:  # the table library covers the field within its cap
            lib = PSFLibrary.from_field(exact, field_fn, extent, z_range, **kw)
            psf_store.save_library(key, lib, field_fn, extent)
            return lib
        # a large varying field (a whole chip): the low-rank spectral library, cubic in z
        lib = SpectralLibrary.from_field(
            exact,
            field_fn,
            extent,
            z_range,
            dz_um=2 * p.fast_dz_um,
            span_rad=p.fast_span_rad,
            tol_rad=p.fast_tol_rad,
            max_mib=p.fast_max_mib,
        )
        psf_store.save_library(key, lib, field_fn, extent)
        return lib

    return cached_library(key, build)


def _load_map(value: Any, name: str) -> Any:
    """A number, or the float32 per-pixel map of a ``.npy`` path (``camera.<name>``; errors name it)."""
    if not isinstance(value, str):
        return float(value)
    key, p = f"camera.{name}", Path(value)
    if not p.is_file():  # an OS error about the user's path (exit 2), naming the key
        raise FileNotFoundError(f"{key}: map file not found: {p} (expected a .npy per-pixel map of the chip)")
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError([(key, f"{p} is not a readable .npy array ({exc})")]) from None
    if arr.dtype.kind not in "iuf":
        raise ConfigError([(key, f"{p} must hold real numbers, got dtype {arr.dtype}")])
    if arr.ndim != 2:
        raise ConfigError([(key, f"{p} must be a 2-D (rows, columns) map of the chip, got shape {arr.shape}")])
    return arr.astype(np.float32)


def _check_map_shape(cfg: SimulationConfig, name: str, value: Any) -> None:
    """A per-pixel sCMOS map must be the chip (``camera.chip_*``) or, without one, cover the ROI on it."""
    if np.ndim(value) != 2:
        return
    (h, w), (x0, y0), c = cfg.image_shape, cfg.crop_offset_xy, cfg.camera
    got = tuple(int(v) for v in np.shape(value))
    path = getattr(c, name)
    if c.chip_height is not None and c.chip_width is not None:
        if got != (c.chip_height, c.chip_width):
            raise ConfigError(
                [
                    (
                        f"camera.{name}",
                        f"map {path} has shape {got[0]}x{got[1]} (rows x columns), expected the chip's "
                        f"{c.chip_height}x{c.chip_width} (camera.chip_height x camera.chip_width)",
                    )
                ]
            )
    if got[0] < y0 + h or got[1] < x0 + w:
        raise ConfigError(
            [
                (
                    f"camera.{name}",
                    f"map {path} has shape {got[0]}x{got[1]} (rows x columns) but the ROI needs at least "
                    f"{y0 + h}x{x0 + w} (tiff.crop_offset [{x0}, {y0}] + the {h}x{w} ROI): give a chip-sized map",
                )
            ]
        )


def make_camera(cfg: SimulationConfig, *, crop_to_roi: bool = True) -> Any:
    """The camera model of a config (``camera.model``).

    Parameters
    ----------
    cfg
        A validated config.
    crop_to_roi
        Crop per-pixel sCMOS maps (chip-sized ``.npy`` files) to the ROI
        ``tiff.crop_offset`` + ``tiff.roi_*``.

    Raises
    ------
    FileNotFoundError
        An sCMOS map file that does not exist (the message names ``camera.scmos_*``).
    ConfigError
        An sCMOS map that is not a 2-D ``.npy`` array, not the chip's shape (or smaller
        than ``tiff.crop_offset`` + ROI) or with invalid values; the message names
        ``camera.scmos_*``, the file and both shapes.
    """
    c = cfg.camera
    if c.model == "emccd":
        return cam.EMCCD(
            qe=c.qe,
            em_gain=c.em_gain,
            spurious_charge=c.spurious_charge,
            read_noise_e=c.read_noise_e,
            e_per_adu=c.e_per_adu,
            baseline=c.baseline,
            bit_depth=c.bit_depth,
        )
    if c.model == "scmos":
        maps = {}
        for field_name, name in (("offset", "scmos_offset"), ("variance", "scmos_variance"), ("gain", "scmos_gain")):
            maps[field_name] = _load_map(getattr(c, name), name)
            _check_map_shape(cfg, name, maps[field_name])
        try:
            model = cam.SCMOS(qe=c.qe, bit_depth=c.bit_depth, **maps)
        except ValueError as exc:  # a map's values (NaN, gain <= 0, variance < 0) or the maps' shapes differ
            keys = ", ".join(f"camera.{n}" for n in ("scmos_offset", "scmos_variance", "scmos_gain"))
            raise ConfigError([(keys, str(exc))]) from None
        if crop_to_roi and any(np.ndim(getattr(model, k)) == 2 for k in ("offset", "variance", "gain")):
            (h, w), (x0, y0) = cfg.image_shape, cfg.crop_offset_xy
            model = model.crop(y0, x0, h, w)
        return model
    if c.model == "ideal":
        return cam.Ideal(poisson=c.poisson)
    if c.model == "none":
        return cam.Ideal(poisson=False)
    if c.model == "original":
        noise = cfg.tiff.noise_params
        if noise is None:  # validation fills tiff.noise_params for the original model
            raise ValueError("camera.model 'original' needs tiff.noise_params")
        return cam.OriginalFloat(readout_noise=noise.readout_noise, shot_noise=noise.shot_noise)
    raise ValueError(f"camera.model: unknown model {c.model!r}")  # validation admits no other value
