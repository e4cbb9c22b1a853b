"""Typed, validated configuration of one simulated sample.

A :class:`SimulationConfig` is a tree of dataclasses. It is built from a JSON or YAML file, a
``dict`` or nothing (the built-in default) by :func:`load_config`, which

* accepts the original tool's *pipeline* config (sections ``zmap_path``, ``emitters``,
  ``zernike``, ``tiff`` with ``noise_params``, ``optical``, ``output``, ``memory_optimization``),
  its ``default_config.json`` (optics and camera defaults) and its ``camera_parameters.json``
  (camera calibration) and translates their field names;
* rejects unknown keys, wrong types and out-of-range values with a :class:`ConfigError` that names
  every bad key path, says what was expected and suggests the close key on a typo;
* never ignores a field silently: keys the original tool read but never used are either
  implemented here or rejected; a few purely descriptive keys of ``default_config.json``
  (``experiment.*`` ...) are kept as provenance and reported with a :class:`LegacyKeyWarning`.

Units: lengths of the optics in nm, positions in camera pixels, z in µm, times in frames,
photons per frame, Zernike coefficients in radians RMS (Noll order) unless a Zmap declares
otherwise.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from z2t_dask.errors import ConfigError, LegacyKeyWarning

__all__ = [
    "ConfigError",
    "LegacyKeyWarning",
    "OpticalConfig",
    "PSFConfig",
    "ZernikeConfig",
    "EmittersConfig",
    "TiffConfig",
    "NoiseParams",
    "CameraConfig",
    "BackgroundConfig",
    "RenderConfig",
    "OutputConfig",
    "SimulationConfig",
    "load_config",
    "default_config",
    "config_to_dict",
]


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------

def _meta(doc: str, unit: str = "", **kw: Any) -> dict[str, Any]:
    return {"doc": doc, "unit": unit, **kw}


@dataclass
class OpticalConfig:
    """Microscope optics. Defaults are the original ``default_config.json`` values."""

    wavelength_nm: float = field(default=660.0, metadata=_meta("emission wavelength in vacuum", "nm", gt=0))
    pixel_size_nm_x: float = field(default=101.11, metadata=_meta("camera pixel pitch along x (columns), object space", "nm", gt=0))
    pixel_size_nm_y: float = field(default=98.83, metadata=_meta("camera pixel pitch along y (rows), object space", "nm", gt=0))
    NA: float = field(default=1.4, metadata=_meta("numerical aperture of the objective", "", gt=0))
    n_medium: float = field(default=1.518, metadata=_meta("refractive index of the sample medium (defocus phase uses it)", "", gt=1.0 - 1e-9))
    n_immersion: float = field(default=1.518, metadata=_meta("refractive index of the immersion medium (must exceed NA)", "", gt=0))
    use_default_config: bool = field(default=True, metadata=_meta("original key: true = use these defaults; giving explicit optics with true is an error", ""))
    ignore_fixed_psf_coeffs: bool = field(default=True, metadata=_meta("original key: false applies psf.fixed_zernike to every emitter", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass
class PSFConfig:
    """Pupil PSF numerics."""

    mode: Literal["exact", "fast"] = field(default="exact", metadata=_meta("PSF model: 'exact' = scalar pupil PSF per emitter; 'fast' = interpolated library of exact PSFs over field, z and sub-pixel offset (its measured error is stored in the output metadata)", ""))
    patch_size: int = field(default=33, metadata=_meta("side of the rendered PSF patch (odd); light beyond it is lost", "camera px", ge=3))
    oversampling: int | None = field(default=None, metadata=_meta("fine-grid oversampling; null = Nyquist-safe automatic", "", ge=1))
    n_modes: int = field(default=21, metadata=_meta("number of Noll Zernike modes (j = 1..n_modes)", "", ge=1, le=66))
    fixed_zernike: dict = field(default_factory=dict, metadata=_meta("Noll index -> extra phase added to every emitter (applied when optical.ignore_fixed_psf_coeffs is false)", "rad RMS"))
    batch_size: int = field(default=256, metadata=_meta("emitters per FFT batch (memory bound)", "", ge=1))
    fast_dz_um: float = field(default=0.025, metadata=_meta("fast mode: largest z spacing of the library planes (linear interpolation)", "um", gt=0))
    fast_subpixel: int = field(default=8, metadata=_meta("fast mode: sub-pixel offsets per pixel in the library (even)", "", ge=2))
    fast_span_rad: float = field(default=0.05, metadata=_meta("fast mode: largest RMS aberration change across a field cell of the library", "rad", gt=0))
    fast_tol_rad: float = field(default=0.002, metadata=_meta("fast mode: emitters whose aberrations are farther (RMS wavefront) from the library's field interpolation use the exact model", "rad", ge=0))
    fast_max_mib: float = field(default=256.0, metadata=_meta("fast mode: memory cap of the library tables per process (coarser field cells beyond it)", "MiB", gt=0))


@dataclass
class ZernikeConfig:
    """Zmap handling (the original ``zernike`` section) and the synthetic default Zmap."""

    crop_size: int | None = field(default=None, metadata=_meta("original key: must equal the ROI size when given", "px", ge=1))
    crop_offset: list | None = field(default=None, metadata=_meta("[x, y] offset of the ROI on the camera chip / Zmap (same as tiff.crop_offset)", "px"))
    interpolation_method: Literal["cubic", "linear", "nearest"] = field(default="cubic", metadata=_meta("per-emitter interpolation of the coefficient maps (cubic B-spline, linear, nearest)", ""))
    convention: Literal["auto", "legacy21", "noll", "osa"] = field(default="auto", metadata=_meta("index order of the Zmap modes; auto = the file's declared convention, else legacy21 for 21-mode maps", ""))
    units: Literal["auto", "rad", "waves", "nm"] = field(default="auto", metadata=_meta("unit of the Zmap coefficients; auto = declared, else rad", ""))
    scale: float = field(default=1.0, metadata=_meta("multiplies every phase coefficient (aberration strength sweeps)", "", ge=0))
    synthetic_rms_rad: float = field(default=0.35, metadata=_meta("RMS of the synthetic default Zmap's aberrations (no zmap_path)", "rad", ge=0))
    synthetic_seed: int = field(default=0, metadata=_meta("seed of the synthetic default Zmap", "", ge=0))
    synthetic_shape: list = field(default_factory=lambda: [1200, 1200], metadata=_meta("[height, width] of the synthetic Zmap (the chip)", "px"))
    num_plot: int = field(default=0, metadata=_meta("original plotting key: only 0 / no plots is accepted (use previews)", "", ge=0))
    no_plot: bool = field(default=True, metadata=_meta("original plotting key: only true is accepted", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass
class EmittersConfig:
    """Emitter sampling and photophysics (the original sampler's parameters and meaning)."""

    num_emitters: int = field(default=1000, metadata=_meta("emitters per movie (not per frame)", "", ge=0))
    frames: int = field(default=10, metadata=_meta("frames in the movie", "", ge=1))
    area_px: Any = field(default=None, metadata=_meta("x, y drawn in [0, area): a number, [width, height], or null = the ROI", "px"))
    margin_px: float = field(default=0.0, metadata=_meta("also draw emitters this far outside the area (they light the image edge)", "px", ge=0))
    intensity_mu: float = field(default=2000.0, metadata=_meta("mean photons per full frame on", "photons", ge=0))
    intensity_sigma: float = field(default=400.0, metadata=_meta("s.d. of photons per frame (normal truncated at intensity_min)", "photons", ge=0))
    intensity_min: float = field(default=1.0, metadata=_meta("draws below this are redrawn (no invisible labelled emitters)", "photons", ge=0))
    lifetime_avg: float = field(default=2.5, metadata=_meta("mean on-time (model 'single')", "frames", gt=0))
    z_range_um: float = field(default=1.0, metadata=_meta("z drawn in [-z_range_um, +z_range_um)", "um", ge=0))
    seed: int | None = field(default=None, metadata=_meta("original key: sample seed when simulate() gets none", "", ge=0))
    model: Literal["single", "blinking"] = field(default="single", metadata=_meta("'single': one exponential on-interval (original); 'blinking': on/dark/bleached cycles", ""))
    t_on: float = field(default=3.0, metadata=_meta("blinking: mean on time before going dark", "frames", gt=0))
    t_dark: float = field(default=2.5, metadata=_meta("blinking: mean dark time", "frames", gt=0))
    t_bleach: float = field(default=15.0, metadata=_meta("blinking: mean on time before bleaching (competes with t_on)", "frames", gt=0))
    no_plot: bool = field(default=True, metadata=_meta("original plotting key: only true is accepted", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass
class NoiseParams:
    """The original tool's float noise model (``camera.model = 'original'``)."""

    background: float = field(default=100.0, metadata=_meta("constant background", "photons/px/frame", ge=0))
    readout_noise: float = field(default=10.0, metadata=_meta("Gaussian read noise s.d.", "photons", ge=0))
    shot_noise: bool = field(default=True, metadata=_meta("Poisson shot noise", ""))


@dataclass
class TiffConfig:
    """Image geometry and the TIFF output (the original ``tiff`` section)."""

    filename: str = field(default="simulation.ome.tiff", metadata=_meta("TIFF name (sample folders use <sample>.ome.tiff)", ""))
    roi_size: int | None = field(default=None, metadata=_meta("square image side; or give roi_width / roi_height", "px", ge=1))
    roi_width: int | None = field(default=None, metadata=_meta("image width (columns)", "px", ge=1))
    roi_height: int | None = field(default=None, metadata=_meta("image height (rows)", "px", ge=1))
    crop_offset: list = field(default_factory=lambda: [0, 0], metadata=_meta("[x, y] position of the ROI on the chip / Zmap", "px"))
    use_direct_rendering: bool = field(default=True, metadata=_meta("original key: only true (the high-res path was wrong, D8)", ""))
    add_noise: bool = field(default=True, metadata=_meta("false = expected photons without camera (camera.model 'none')", ""))
    noise_params: NoiseParams | None = field(default=None, metadata=_meta("original float noise model; given alone it selects camera.model 'original'", ""))
    compression: Literal["zstd", "zlib", "none"] = field(default="zstd", metadata=_meta("TIFF compression: zstd level 1, zlib (deflate) level 1 or none; no LZW, no predictor (both enlarge noisy data)", ""))
    bigtiff: bool | None = field(default=None, metadata=_meta("BigTIFF (64-bit offsets); null = automatic when the raw stack exceeds ~1.9 GiB", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass
class CameraConfig:
    """Camera model. Accepts ``camera_parameters.json`` and ``default_config.json`` names."""

    model: Literal["emccd", "scmos", "ideal", "none", "original"] = field(default="emccd", metadata=_meta("camera chain", ""))
    qe: float = field(default=0.9, metadata=_meta("quantum efficiency", "", gt=0, le=1))
    em_gain: float = field(default=100.0, metadata=_meta("EMCCD electron-multiplying gain (1 = off)", "", ge=1))
    spurious_charge: float = field(default=0.002, metadata=_meta("EMCCD clock-induced charge", "e-/px/frame", ge=0))
    read_noise_e: float = field(default=74.4, metadata=_meta("Gaussian read noise s.d.", "e-", ge=0))
    e_per_adu: float = field(default=45.0, metadata=_meta("conversion (sensitivity); A2D / e_adu in original files", "e-/ADU", gt=0))
    baseline: float = field(default=100.0, metadata=_meta("offset added to every pixel; 'offset' in camera_parameters.json", "ADU", ge=0))
    bit_depth: int = field(default=16, metadata=_meta("output clipped to [0, 2**bit_depth - 1]", "bits", ge=1, le=32))
    scmos_offset: Any = field(default=100.0, metadata=_meta("sCMOS per-pixel offset: number or .npy path (chip-sized map)", "ADU"))
    scmos_variance: Any = field(default=2.0, metadata=_meta("sCMOS per-pixel read-noise variance: number or .npy path", "ADU^2"))
    scmos_gain: Any = field(default=0.5, metadata=_meta("sCMOS per-pixel gain: number or .npy path", "ADU/e-"))
    poisson: bool = field(default=True, metadata=_meta("'ideal' model: Poisson noise (false = expected photons)", ""))
    chip_height: int | None = field(default=None, metadata=_meta("chip rows (chipszh); ROI + offset must fit", "px", ge=1))
    chip_width: int | None = field(default=None, metadata=_meta("chip columns (chipszw)", "px", ge=1))
    name: str = field(default="", metadata=_meta("camera description / calibration file (cam_pth, view_type kept as provenance)", ""))


@dataclass
class BackgroundConfig:
    """Uniform background reaching the camera."""

    photons: float = field(default=50.0, metadata=_meta("background", "photons/px/frame", ge=0))


@dataclass
class RenderConfig:
    """Lazy-graph layout."""

    chunk_frames: int | None = field(default=None, metadata=_meta("frames per dask chunk (memory_optimization.chunk_size); null = automatic from chunk_mb (at most 32)", "frames", ge=1))
    tile_size: int | None = field(default=None, metadata=_meta("side of the square y/x tiles of a chunk; null = whole frames unless one frame exceeds chunk_mb (then multiples of 512 px, the noise grid)", "px", ge=1))
    chunk_mb: float = field(default=16.0, metadata=_meta("target size of one output chunk (frames x tile x dtype) for the automatic chunking; working memory is ~4x this per thread", "MiB", gt=0))
    memory_budget_mb: float | None = field(default=None, metadata=_meta("memory allowed for non-streaming writes (--no-streaming needs ~2x the stack); null = the available memory", "MiB", gt=0))
    gc_frequency: int = field(default=0, metadata=_meta("run gc.collect() every N written chunks (0 = never; original enable_gc/gc_frequency)", "chunks", ge=0))
    tune_malloc: bool = field(default=True, metadata=_meta("when saving, cap glibc malloc arenas at one per core (at least 2), serve allocations >= 4 MiB by mmap and trim the heap beyond 4 MiB free (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_=4194304, MALLOC_TRIM_THRESHOLD_=4194304 for this process), and return free heap memory to the OS after simulate and every 256 written blocks: keeps memory flat over long writes; false = leave the allocator alone", ""))


@dataclass
class OutputConfig:
    """What a saved sample contains."""

    verbose: bool = field(default=False, metadata=_meta("log at INFO level", ""))
    save_intermediate: bool = field(default=True, metadata=_meta("original key: emitters.h5 is always written; only true is accepted", ""))
    generate_plots: bool = field(default=False, metadata=_meta("original plotting key: only false is accepted", ""))
    write_csv: bool = field(default=False, metadata=_meta("also write ground_truth.csv", ""))
    frames_in_h5: bool = field(default=False, metadata=_meta("also store the frames as emitters.h5 'frames' (original v2/v3 loaders)", ""))
    format: Literal["ome-tiff", "ome-zarr", "hdf5"] = field(default="ome-tiff", metadata=_meta("frame-stack format of a sample folder: <name>.ome.tiff, <name>.ome.zarr or <name>.h5", ""))
    zarr_format: Literal[2, 3] = field(default=3, metadata=_meta("OME-Zarr: 3 = zarr v3 + NGFF 0.5 (core codecs), 2 = zarr v2 + NGFF 0.4 (numcodecs)", ""))
    zarr_compression: Literal["zstd", "zlib", "none"] = field(default="zstd", metadata=_meta("OME-Zarr chunk compression: zstd level 1, zlib (gzip) level 1 or none", ""))
    hdf5_compression: Literal["none", "zlib", "lzf"] = field(default="none", metadata=_meta("HDF5 stack compression: none (fastest), zlib (gzip level 1) or lzf; all built into h5py so every reader opens it", ""))


@dataclass
class SimulationConfig:
    """Everything needed to simulate one sample (with a seed)."""

    zmap_path: str | None = field(default=None, metadata=_meta("Zmap result.h5 / patches.h5; null = synthetic Zmap", ""))
    emitters: EmittersConfig = field(default_factory=EmittersConfig, metadata=_meta("emitters", ""))
    zernike: ZernikeConfig = field(default_factory=ZernikeConfig, metadata=_meta("Zmap", ""))
    tiff: TiffConfig = field(default_factory=TiffConfig, metadata=_meta("geometry and TIFF", ""))
    optical: OpticalConfig = field(default_factory=OpticalConfig, metadata=_meta("optics", ""))
    psf: PSFConfig = field(default_factory=PSFConfig, metadata=_meta("PSF numerics", ""))
    camera: CameraConfig = field(default_factory=CameraConfig, metadata=_meta("camera", ""))
    background: BackgroundConfig = field(default_factory=BackgroundConfig, metadata=_meta("background", ""))
    render: RenderConfig = field(default_factory=RenderConfig, metadata=_meta("render", ""))
    output: OutputConfig = field(default_factory=OutputConfig, metadata=_meta("output", ""))
    description: str = field(default="", metadata=_meta("free text", ""))
    provenance: dict = field(default_factory=dict, metadata=_meta("informational keys carried into the output metadata", ""))

    # ---- derived geometry ------------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the rendered frames in camera pixels."""
        t = self.tiff
        return int(t.roi_height), int(t.roi_width)

    @property
    def crop_offset_xy(self) -> tuple[int, int]:
        """``(x0, y0)``: chip pixel of the ROI's pixel (0, 0)."""
        return int(self.tiff.crop_offset[0]), int(self.tiff.crop_offset[1])

    @property
    def area_xy(self) -> tuple[float, float]:
        """``(width, height)`` of the emitter sampling area in px."""
        a = self.emitters.area_px
        if a is None:
            h, w = self.image_shape
            return float(w), float(h)
        if isinstance(a, (int, float)):
            return float(a), float(a)
        return float(a[0]), float(a[1])

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config as plain JSON-able data."""
        return config_to_dict(self)


# --------------------------------------------------------------------------------------------
# generic dataclass parsing with key-path errors
# --------------------------------------------------------------------------------------------

_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str, problems: list) -> Any:
    """Check ``value`` against the annotation ``tp``; return the converted value or ``_BAD``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        problems.append((path, f"expected {_type_name(tp)}, got {value!r}"))
        return _BAD
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            trial: list = []
            out = _coerce(value, a, path, trial)
            if not trial:
                return out
        problems.append((path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}"))
        return _BAD
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append((path, f"expected a mapping (section), got {type(value).__name__}"))
            return _BAD
        return _build(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append((path, f"expected true/false, got {type(value).__name__} {value!r}"))
        return _BAD
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected an integer, got {type(value).__name__} {value!r}"))
            return _BAD
        if isinstance(value, float):
            if not value.is_integer():
                problems.append((path, f"expected an integer, got {value!r}"))
                return _BAD
            value = int(value)
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected a number, got {type(value).__name__} {value!r}"))
            return _BAD
        if not math.isfinite(float(value)):
            problems.append((path, f"expected a finite number, got {value!r}"))
            return _BAD
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        problems.append((path, f"expected a string, got {type(value).__name__} {value!r}"))
        return _BAD
    if tp is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        problems.append((path, f"expected a list, got {type(value).__name__} {value!r}"))
        return _BAD
    if tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        problems.append((path, f"expected a mapping, got {type(value).__name__} {value!r}"))
        return _BAD
    return value


class _Bad:
    def __repr__(self) -> str:  # pragma: no cover
        return "<bad>"


_BAD = _Bad()


def _check_range(value: Any, meta: Mapping[str, Any], path: str, problems: list) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    if "gt" in meta and not value > meta["gt"]:
        problems.append((path, f"must be > {meta['gt']}{unit}, got {value}"))
    if "ge" in meta and not value >= meta["ge"]:
        problems.append((path, f"must be >= {meta['ge']}{unit}, got {value}"))
    if "le" in meta and not value <= meta["le"]:
        problems.append((path, f"must be <= {meta['le']}{unit}, got {value}"))


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list) -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
            problems.append((path, "unknown key" + hint))
            continue
        out = _coerce(value, hints[key], path, problems)
        if out is _BAD:
            continue
        _check_range(out, fields[key].metadata, path, problems)
        kwargs[key] = out
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - only reachable through a schema bug
        problems.append((prefix or "<root>", str(exc)))
        return cls()


def config_to_dict(cfg: Any) -> Any:
    """Plain-data (JSON-able) view of a config dataclass tree."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


# --------------------------------------------------------------------------------------------
# translation of the original tool's files
# --------------------------------------------------------------------------------------------

# camera_parameters.json -> camera section (value transforms handled in _translate_camera)
_CAMERA_ALIASES = {
    "QE": "qe", "EMGain": "em_gain", "A2D": "e_per_adu", "e_adu": "e_per_adu",
    "offset": "baseline", "max_adu": "bit_depth", "chipszh": "chip_height", "chipszw": "chip_width",
}


def _translate_camera(cam: Mapping[str, Any], out: dict[str, Any], problems: list, prefix: str) -> None:
    """Map original camera names (camera_parameters.json, default_config.json ``camera``)."""
    sim_cam = out.setdefault("camera", {})
    optical = out.setdefault("optical", {})
    for key, value in cam.items():
        path = f"{prefix}.{key}"
        if key in ("cam_pxszx", "cam_pxszy"):
            optical["pixel_size_nm_x" if key.endswith("x") else "pixel_size_nm_y"] = value
            optical["use_default_config"] = False
        elif key == "max_adu":
            if isinstance(value, (int, float)) and value > 0 and float(value + 1).is_integer() and \
                    (int(value) + 1) & int(value) == 0:
                sim_cam["bit_depth"] = int(value + 1).bit_length() - 1
            else:
                problems.append((path, f"expected 2**bits - 1 (e.g. 65535), got {value!r}"))
        elif key == "var":
            # read-noise variance in ADU^2 -> s.d. in electrons (needs the ADU conversion)
            a2d = cam.get("A2D", cam.get("e_adu", cam.get("e_per_adu")))
            if not isinstance(value, (int, float)) or value < 0:
                problems.append((path, f"expected a variance >= 0 (ADU^2), got {value!r}"))
            elif a2d is None:
                problems.append((path, "read-noise variance in ADU^2 needs A2D (e-/ADU) in the same file"))
            elif "read_noise_e" not in cam:
                sim_cam["read_noise_e"] = math.sqrt(value) * float(a2d)
        elif key == "scmos_var":
            if value is True:
                sim_cam["model"] = "scmos"
            elif value is not False:
                problems.append((path, f"expected true/false, got {value!r}"))
        elif key in ("cam_pth", "view_type"):
            prov = out.setdefault("provenance", {})
            prov[f"camera.{key}"] = value
        elif key == "autofluorescence_background":
            out.setdefault("background", {})["photons"] = value
        else:
            sim_cam[_CAMERA_ALIASES.get(key, key)] = value


def _is_camera_parameters(d: Mapping[str, Any]) -> bool:
    return any(k in d for k in ("cam_pxszx", "A2D", "EMGain", "chipszh", "scmos_var"))


def _is_default_config(d: Mapping[str, Any]) -> bool:
    return any(k in d for k in ("photophysics", "simulation", "experiment", "emitter")) and "tiff" not in d


# default_config.json keys with no effect on the simulation (the original ignored them too);
# they are kept as provenance and reported with a LegacyKeyWarning.
_DEFAULT_CONFIG_DESCRIPTIVE = {
    "optical.psf_patch_size", "optical.ao_strength_factor",
    "emitter.n_emitters", "emitter.total_photons", "emitter.full_roi_size", "emitter.emitter_on_prob",
    "emitter.min_z_um", "emitter.max_z_um",
    "photophysics.quantum_yield", "photophysics.laser_power_w_cm2", "photophysics.molar_extinction_coeff",
    "photophysics.wavelength_nm", "photophysics.sub_frame_resolution",
    "simulation.n_samples", "simulation.output_dir", "experiment.*", "psf.type",
}


def _translate_default_config(d: Mapping[str, Any], problems: list) -> dict[str, Any]:
    """Translate the original ``configs/default_config.json`` (optics and camera defaults)."""
    out: dict[str, Any] = {}
    descriptive: dict[str, Any] = {}
    for section, body in d.items():
        if not isinstance(body, Mapping):
            problems.append((section, "expected a mapping (section)"))
            continue
        for key, value in body.items():
            path = f"{section}.{key}"
            if section == "optical":
                if key in ("wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "NA", "n_medium"):
                    out.setdefault("optical", {})[key] = value
                    out["optical"]["use_default_config"] = False
                elif key == "max_noll_coeffs":
                    out.setdefault("psf", {})["n_modes"] = value
                elif key == "defocus_noll_index":
                    if value != 4:
                        problems.append((path, f"defocus is Noll index 4 in this library, got {value!r}"))
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "camera":
                _translate_camera({key: value, **({"e_adu": body["e_adu"]} if key == "var" and "e_adu" in body else {})},
                                  out, problems, section)
            elif section == "photophysics":
                mapping = {"T_ON": "t_on", "T_DARK": "t_dark", "T_BLEACH": "t_bleach"}
                if key in mapping:
                    out.setdefault("emitters", {})[mapping[key]] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "simulation":
                if key == "n_frames":
                    out.setdefault("emitters", {})["frames"] = value
                elif key == "random_seed":
                    out.setdefault("emitters", {})["seed"] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "psf":
                if key == "zernike_coefficients":
                    out.setdefault("psf", {})["fixed_zernike"] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section in ("emitter", "experiment"):
                if path in _DEFAULT_CONFIG_DESCRIPTIVE or section == "experiment":
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            else:
                problems.append((section, "unknown section of default_config.json"))
                break
    if descriptive:
        out.setdefault("provenance", {}).update({f"default_config.{k}": v for k, v in descriptive.items()})
        warnings.warn(
            "default_config.json keys with no effect on the simulation (the original tool ignored them "
            "too); kept as provenance only: " + ", ".join(sorted(descriptive)),
            LegacyKeyWarning, stacklevel=4)
    return out


def _translate_pipeline(d: Mapping[str, Any], problems: list) -> dict[str, Any]:
    """Translate the original pipeline config (and its batch ``base_config``) into this schema."""
    out = copy.deepcopy(dict(d))
    # memory_optimization -> render
    mo = out.pop("memory_optimization", None)
    if mo is not None:
        if not isinstance(mo, Mapping):
            problems.append(("memory_optimization", "expected a mapping (section)"))
        else:
            render = out.setdefault("render", {})
            for key, value in mo.items():
                if key == "chunk_size":
                    render["chunk_frames"] = value
                elif key == "gc_frequency":
                    render.setdefault("gc_frequency", value)
                elif key == "enable_gc":
                    if value is False:
                        render["gc_frequency"] = 0
                    elif value is not True:
                        problems.append(("memory_optimization.enable_gc", f"expected true/false, got {value!r}"))
                    else:
                        render.setdefault("gc_frequency", mo.get("gc_frequency", 5))
                else:
                    close = difflib.get_close_matches(key, ["chunk_size", "enable_gc", "gc_frequency"], n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    problems.append((f"memory_optimization.{key}", "unknown key" + hint))
    # emitters: the sample_config.json style keys
    em = out.get("emitters")
    if isinstance(em, Mapping):
        em = dict(em)
        if "intensity_mu_sig" in em:
            v = em.pop("intensity_mu_sig")
            if isinstance(v, (list, tuple)) and len(v) == 2:
                em.setdefault("intensity_mu", v[0])
                em.setdefault("intensity_sigma", v[1])
            else:
                problems.append(("emitters.intensity_mu_sig", f"expected [mean, sd] in photons, got {v!r}"))
        if "xy_unit" in em:
            v = em.pop("xy_unit")
            if v != "px":
                problems.append(("emitters.xy_unit", f"only 'px' (camera pixels) is supported, got {v!r}"))
        if "z_range" in em:
            v = em.pop("z_range")
            if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v) \
                    and v[0] == -v[1] and v[1] >= 0:
                em.setdefault("z_range_um", v[1] / 1000.0)   # DECODE-style z range in nm
            else:
                problems.append(("emitters.z_range", f"expected a symmetric [-z, z] range in nm, got {v!r}; "
                                 "use z_range_um"))
        if "lifetime" in em:
            problems.append(("emitters.lifetime", "ambiguous original key (the original ignored it); "
                             "use lifetime_avg (mean on-time in frames)"))
            em.pop("lifetime")
        if "density_mu_sig" in em:
            problems.append(("emitters.density_mu_sig", "not supported (the original ignored it and ran with "
                             "defaults); set num_emitters per movie"))
            em.pop("density_mu_sig")
        out["emitters"] = em
    # camera section may use the original names
    cam = out.get("camera")
    if isinstance(cam, Mapping) and any(k in cam for k in (*_CAMERA_ALIASES, "var", "cam_pxszx", "cam_pxszy",
                                                           "scmos_var", "cam_pth", "view_type",
                                                           "autofluorescence_background")):
        plain = {k: v for k, v in cam.items() if k not in _CAMERA_ALIASES and k not in
                 ("var", "cam_pxszx", "cam_pxszy", "scmos_var", "cam_pth", "view_type", "autofluorescence_background")}
        legacy = {k: v for k, v in cam.items() if k not in plain}
        out["camera"] = plain
        _translate_camera(legacy, out, problems, "camera")
    # the original float noise model when no camera section is given
    tiff = out.get("tiff")
    if isinstance(tiff, Mapping) and "noise_params" in tiff and "camera" not in d:
        out.setdefault("camera", {})["model"] = "original"
    if isinstance(tiff, Mapping) and tiff.get("add_noise") is False:
        if isinstance(out.get("camera"), dict) and out["camera"].get("model") not in (None, "none"):
            problems.append(("tiff.add_noise", "false contradicts camera.model "
                             f"{out['camera']['model']!r}; remove one"))
        out.setdefault("camera", {})["model"] = "none"
    return out


# --------------------------------------------------------------------------------------------
# semantic checks across sections
# --------------------------------------------------------------------------------------------

def _finalise(cfg: SimulationConfig, problems: list, explicit_optics: set[str]) -> None:
    t, e, o, z, c = cfg.tiff, cfg.emitters, cfg.optical, cfg.zernike, cfg.camera
    # geometry
    if t.roi_size is not None:
        for k in ("roi_width", "roi_height"):
            if getattr(t, k) is not None and getattr(t, k) != t.roi_size:
                problems.append((f"tiff.{k}", f"contradicts tiff.roi_size={t.roi_size}"))
        t.roi_width = t.roi_width or t.roi_size
        t.roi_height = t.roi_height or t.roi_size
    if t.roi_width is None or t.roi_height is None:
        if t.roi_width is None and t.roi_height is None:
            t.roi_width = t.roi_height = 1200     # the original default roi_size
        else:
            problems.append(("tiff.roi_width" if t.roi_width is None else "tiff.roi_height",
                             "give both roi_width and roi_height, or roi_size"))
            return
    t.roi_size = t.roi_width if t.roi_width == t.roi_height else None
    for name, off in (("tiff.crop_offset", t.crop_offset), ("zernike.crop_offset", z.crop_offset)):
        if off is not None and (len(off) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v >= 0 for v in off)):
            problems.append((name, f"expected [x, y] non-negative integers (px), got {off!r}"))
            return
    if z.crop_offset is not None and list(z.crop_offset) != list(t.crop_offset):
        if list(t.crop_offset) == [0, 0]:
            t.crop_offset = list(z.crop_offset)
        else:
            problems.append(("zernike.crop_offset", f"{z.crop_offset} contradicts tiff.crop_offset {t.crop_offset}"))
    z.crop_offset = list(t.crop_offset)
    if z.crop_size is not None and (z.crop_size != t.roi_width or z.crop_size != t.roi_height):
        problems.append(("zernike.crop_size", f"must equal the ROI size ({t.roi_width}x{t.roi_height}), got "
                         f"{z.crop_size}: the Zmap window is the ROI"))
    if not t.use_direct_rendering:
        problems.append(("tiff.use_direct_rendering", "only true is supported: the original high-resolution path "
                         "shrank PSFs and lost photons (defect D8); PSFs here are exact at any pixel size"))
    if c.chip_height is not None and t.crop_offset[1] + t.roi_height > c.chip_height:
        problems.append(("tiff.crop_offset", f"ROI rows {t.crop_offset[1]}..{t.crop_offset[1] + t.roi_height} exceed "
                         f"the chip height {c.chip_height}"))
    if c.chip_width is not None and t.crop_offset[0] + t.roi_width > c.chip_width:
        problems.append(("tiff.crop_offset", f"ROI columns {t.crop_offset[0]}..{t.crop_offset[0] + t.roi_width} exceed "
                         f"the chip width {c.chip_width}"))
    # emitters
    a = e.area_px
    if a is not None:
        ok = (isinstance(a, (int, float)) and not isinstance(a, bool) and a > 0) or (
            isinstance(a, list) and len(a) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and v > 0 for v in a))
        if not ok:
            problems.append(("emitters.area_px", f"expected a positive number or [width, height] in px, got {a!r}"))
    if e.no_plot is not True:
        problems.append(("emitters.no_plot", "plots are not produced by the simulator; set true "
                         "(z2t writes the ground truth to emitters.h5 / CSV)"))
    if z.no_plot is not True:
        problems.append(("zernike.no_plot", "coefficient plots are not produced by the simulator; set true"))
    if cfg.output.generate_plots:
        problems.append(("output.generate_plots", "plots are not produced by the simulator; set false"))
    if not cfg.output.save_intermediate:
        problems.append(("output.save_intermediate", "emitters.h5 (the ground truth) is always written; set true"))
    # optics
    if o.use_default_config and explicit_optics:
        problems.append(("optical.use_default_config", "is true but optical " + ", ".join(sorted(explicit_optics))
                         + " given; set it false to use them"))
    if o.NA >= o.n_immersion:
        problems.append(("optical.NA", f"must be < n_immersion ({o.n_immersion}), got {o.NA}"))
    # psf
    p = cfg.psf
    if p.patch_size % 2 == 0:
        problems.append(("psf.patch_size", f"must be odd, got {p.patch_size}"))
    if p.fast_subpixel % 2:
        problems.append(("psf.fast_subpixel", f"must be even, got {p.fast_subpixel}"))
    fixed: dict[int, float] = {}
    for k, v in p.fixed_zernike.items():
        try:
            j = int(k)
        except (TypeError, ValueError):
            problems.append((f"psf.fixed_zernike.{k}", "keys must be Noll indices (integers >= 1)"))
            continue
        if j < 1 or j > p.n_modes:
            problems.append((f"psf.fixed_zernike.{k}", f"Noll index must be in 1..psf.n_modes={p.n_modes}"))
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            problems.append((f"psf.fixed_zernike.{k}", f"expected a number (rad RMS), got {v!r}"))
        else:
            fixed[j] = float(v)
    p.fixed_zernike = fixed
    # zmap shape
    zs = z.synthetic_shape
    if not (isinstance(zs, list) and len(zs) == 2 and all(isinstance(v, int) and v > 0 for v in zs)):
        problems.append(("zernike.synthetic_shape", f"expected [height, width] positive integers, got {zs!r}"))
    # camera
    if c.model == "original" and t.noise_params is None:
        t.noise_params = NoiseParams()
    if c.model == "original":
        cfg.background.photons = t.noise_params.background
    for k in ("scmos_offset", "scmos_variance", "scmos_gain"):
        v = getattr(c, k)
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            problems.append((f"camera.{k}", f"expected a number or a .npy path, got {v!r}"))


def _read_document(source: str | os.PathLike) -> dict[str, Any]:
    path = Path(source)
    if not path.is_file():
        raise ConfigError([("<file>", f"config file not found: {path}")], str(path))
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise ConfigError([("<file>", f"cannot parse {path.name}: {exc}")], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([("<root>", f"expected a mapping at the top level, got {type(data).__name__}")], str(path))
    return data


def _builtin_default() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "data" / "default_config.json").read_text("utf-8"))


def default_config() -> SimulationConfig:
    """The built-in default sample (synthetic Zmap, EMCCD, 64x64 px, 100 frames)."""
    return load_config(None)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(source: str | os.PathLike | Mapping[str, Any] | SimulationConfig | None = None, *,
                camera: str | os.PathLike | Mapping[str, Any] | None = None,
                optics: str | os.PathLike | Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> SimulationConfig:
    """Load and validate a sample configuration.

    Parameters
    ----------
    source
        A JSON/YAML path, a ``dict``, a :class:`SimulationConfig` (returned as a validated copy),
        or ``None`` for the built-in default (no user data needed). The original pipeline config
        and a batch config's ``base_config`` are accepted; so are the original
        ``default_config.json`` and ``camera_parameters.json`` (each applied over the defaults).
    camera
        Optional ``camera_parameters.json`` (path or dict) applied over ``source``.
    optics
        Optional original ``default_config.json`` (path or dict) applied under ``source``.
    overrides
        Nested mapping applied last (e.g. ``{"emitters": {"frames": 50}}``).

    Returns
    -------
    SimulationConfig

    Raises
    ------
    ConfigError
        Listing every bad key path with what was expected.
    """
    src_name = str(source) if isinstance(source, (str, os.PathLike)) else None
    if isinstance(source, SimulationConfig):
        source = config_to_dict(source)
    problems: list[tuple[str, str]] = []
    if source is None:
        data: dict[str, Any] = _builtin_default()
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        data = _read_document(source)
    if "base_config" in data and isinstance(data["base_config"], Mapping):
        # an original batch config: its per-job config (batch keys belong to the batch engine)
        base = copy.deepcopy(dict(data["base_config"]))
        if src_name and isinstance(base.get("zmap_path"), str) and not os.path.isabs(base["zmap_path"]):
            base["zmap_path"] = str(Path(src_name).parent / base["zmap_path"])
        data = base
    explicit_optics: set[str] = set()

    def explicit(d: Mapping[str, Any]) -> set[str]:
        opt = d.get("optical") if isinstance(d.get("optical"), Mapping) else {}
        defaults = OpticalConfig()
        return {k for k in opt if k in ("wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "NA", "n_medium",
                                        "n_immersion") and opt[k] != getattr(defaults, k)}

    if _is_camera_parameters(data):
        cam_out: dict[str, Any] = {}
        _translate_camera(data, cam_out, problems, "camera_parameters")
        data = _merge(_builtin_default(), cam_out)
    elif _is_default_config(data):
        data = _merge(_builtin_default(), _translate_default_config(data, problems))
    else:
        data = _translate_pipeline(data, problems)
    explicit_optics |= explicit(data) if data.get("optical", {}).get("use_default_config", True) else set()
    if optics is not None:
        odata = optics if isinstance(optics, Mapping) else _read_document(optics)
        under = _translate_default_config(odata, problems)
        data = _merge(under, data)
    if camera is not None:
        cdata = camera if isinstance(camera, Mapping) else _read_document(camera)
        cam_out = {}
        _translate_camera(cdata, cam_out, problems, "camera_parameters")
        data = _merge(data, cam_out)
        if "model" not in cam_out.get("camera", {}) and data.get("camera", {}).get("model") in (None, "original"):
            data["camera"]["model"] = "emccd"
    if overrides:
        data = _merge(data, overrides)
    if isinstance(data.get("optical"), Mapping) and data["optical"].get("use_default_config") is False:
        explicit_optics = set()
    cfg = _build(SimulationConfig, data, "", problems)
    if not problems:
        _finalise(cfg, problems, explicit_optics)
    if problems:
        raise ConfigError(problems, src_name)
    if isinstance(cfg.zmap_path, str) and src_name and not os.path.isabs(cfg.zmap_path) and \
            not Path(cfg.zmap_path).exists() and (Path(src_name).parent / cfg.zmap_path).exists():
        cfg.zmap_path = str(Path(src_name).parent / cfg.zmap_path)
    return cfg
