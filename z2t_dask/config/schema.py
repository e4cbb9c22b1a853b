"""The configuration schema: typed, immutable sections of one simulated sample.

A :class:`SimulationConfig` is a tree of frozen dataclasses, one per section (``emitters``,
``zernike``, ``tiff``, ``optical``, ``psf``, ``camera``, ``background``, ``render``, ``output``).
Each field carries its documentation, unit and range in ``metadata`` (``doc``, ``unit``, ``gt``,
``ge``, ``le``): :mod:`z2t_dask.config.validation` checks values against them and
:mod:`z2t_dask.tools.docs` generates the config reference from them.

A config never changes once built: assigning to a field raises
:class:`dataclasses.FrozenInstanceError`; derive a changed one with :func:`dataclasses.replace`
(or load a new one with :func:`~z2t_dask.config.load_config` and ``overrides``). The lists and
dicts inside (``tiff.crop_offset``, ``psf.fixed_zernike``, ``provenance`` ...) are plain
containers: treat them as read-only.

Build configs with :func:`~z2t_dask.config.load_config`, which validates them; constructing the
dataclasses directly skips every check.

Units: lengths of the optics in nm, positions in camera pixels, z in µm, times in frames,
photons per frame, Zernike coefficients in radians RMS (Noll order) unless a Zmap declares
otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from z2t_dask.config.schema_optics import OpticalConfig, PSFConfig, meta
from z2t_dask.errors import ConfigError

__all__ = [
    "BackgroundConfig",
    "CameraConfig",
    "EXPORT_FORMATS",
    "EmittersConfig",
    "NoiseParams",
    "OpticalConfig",
    "OutputConfig",
    "PSFConfig",
    "RenderConfig",
    "SimulationConfig",
    "TiffConfig",
    "ZernikeConfig",
    "config_to_dict",
]


#: Names ``output.exports`` accepts: the built-in exporters of :mod:`z2t_dask.io.exporters`.
EXPORT_FORMATS = ("thunderstorm", "decode", "picasso", "smap")


_meta = meta  # field metadata: doc, unit and range bounds (gt, ge, le)


@dataclass(frozen=True)
class ZernikeConfig:
    """Zmap handling (the original ``zernike`` section) and the synthetic default Zmap."""

    crop_size: int | None = field(
        default=None, metadata=_meta("original key: must equal the ROI size when given", "px", ge=1)
    )
    crop_offset: list | None = field(
        default=None,
        metadata=_meta("[x, y] offset of the ROI on the camera chip / Zmap (same as tiff.crop_offset)", "px"),
    )
    interpolation_method: Literal["cubic", "linear", "nearest"] = field(
        default="cubic",
        metadata=_meta("per-emitter interpolation of the coefficient maps (cubic B-spline, linear, nearest)", ""),
    )
    convention: Literal["auto", "legacy21", "noll", "osa"] = field(
        default="auto",
        metadata=_meta(
            "index order of the Zmap modes; auto = the file's declared convention, else legacy21 for 21-mode maps", ""
        ),
    )
    units: Literal["auto", "rad", "waves", "nm"] = field(
        default="auto", metadata=_meta("unit of the Zmap coefficients; auto = declared, else rad", "")
    )
    scale: float = field(
        default=1.0, metadata=_meta("multiplies every phase coefficient (aberration strength sweeps)", "", ge=0)
    )
    synthetic_rms_rad: float = field(
        default=0.35, metadata=_meta("RMS of the synthetic default Zmap's aberrations (no zmap_path)", "rad", ge=0)
    )
    synthetic_seed: int = field(default=0, metadata=_meta("seed of the synthetic default Zmap", "", ge=0))
    synthetic_shape: list = field(
        default_factory=lambda: [1200, 1200], metadata=_meta("[height, width] of the synthetic Zmap (the chip)", "px")
    )
    num_plot: int = field(
        default=0,
        metadata=_meta(
            "original plotting key: emitters whose coefficients the original plotted when zernike.no_plot was "
            "false; no effect (no_plot must be true; use previews)",
            "",
            ge=0,
        ),
    )
    no_plot: bool = field(default=True, metadata=_meta("original plotting key: only true is accepted", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass(frozen=True)
class EmittersConfig:
    """Emitter sampling and photophysics (the original sampler's parameters and meaning)."""

    num_emitters: int = field(default=1000, metadata=_meta("emitters per movie (not per frame)", "", ge=0))
    frames: int = field(default=10, metadata=_meta("frames in the movie", "", ge=1))
    area_px: Any = field(
        default=None, metadata=_meta("x, y drawn in [0, area): a number, [width, height], or null = the ROI", "px")
    )
    margin_px: float = field(
        default=0.0,
        metadata=_meta("also draw emitters this far outside the area (they light the image edge)", "px", ge=0),
    )
    intensity_mu: float = field(default=2000.0, metadata=_meta("mean photons per full frame on", "photons", ge=0))
    intensity_sigma: float = field(
        default=400.0, metadata=_meta("s.d. of photons per frame (normal truncated at intensity_min)", "photons", ge=0)
    )
    intensity_min: float = field(
        default=1.0, metadata=_meta("draws below this are redrawn (no invisible labelled emitters)", "photons", ge=0)
    )
    lifetime_avg: float = field(default=2.5, metadata=_meta("mean on-time (model 'single')", "frames", gt=0))
    z_range_um: float = field(default=1.0, metadata=_meta("z drawn in [-z_range_um, +z_range_um)", "um", ge=0))
    seed: int | None = field(
        default=None, metadata=_meta("original key: sample seed when simulate() gets none", "", ge=0)
    )
    model: Literal["single", "blinking"] = field(
        default="single",
        metadata=_meta("'single': one exponential on-interval (original); 'blinking': on/dark/bleached cycles", ""),
    )
    t_on: float = field(default=3.0, metadata=_meta("blinking: mean on time before going dark", "frames", gt=0))
    t_dark: float = field(default=2.5, metadata=_meta("blinking: mean dark time", "frames", gt=0))
    t_bleach: float = field(
        default=15.0, metadata=_meta("blinking: mean on time before bleaching (competes with t_on)", "frames", gt=0)
    )
    dipole: Literal["isotropic", "fixed"] = field(
        default="isotropic",
        metadata=_meta(
            "emission dipole: 'isotropic' = freely rotating (the mean of x, y and z dipoles); 'fixed' = each emitter "
            "a fixed orientation, stored in the ground truth (needs psf.vectorial true)",
            "",
        ),
    )
    dipole_polar_deg: float | None = field(
        default=None,
        metadata=_meta(
            "fixed dipoles: polar angle from +z (the optical axis, away from the objective; dipoles are axial, so "
            "0..90 covers every orientation); null = drawn uniformly on the sphere",
            "deg",
            ge=0,
            le=90,
        ),
    )
    dipole_azimuth_deg: float | None = field(
        default=None,
        metadata=_meta(
            "fixed dipoles: azimuth from +x (columns) towards +y (rows); null = drawn uniformly in [0, 360)",
            "deg",
            ge=0,
            le=360,
        ),
    )
    species: list = field(
        default_factory=list,
        metadata=_meta(
            "dye species (needs channels): [{name, fraction, ratio: mean share per channel, ratio_spread, "
            "brightness, t_on, t_dark, t_bleach, lifetime_avg}] (see z2t_dask.config.channels)",
            "",
        ),
    )
    no_plot: bool = field(default=True, metadata=_meta("original plotting key: only true is accepted", ""))
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass(frozen=True)
class NoiseParams:
    """The original tool's float noise model (``camera.model = 'original'``)."""

    background: float = field(default=100.0, metadata=_meta("constant background", "photons/px/frame", ge=0))
    readout_noise: float = field(default=10.0, metadata=_meta("Gaussian read noise s.d.", "photons", ge=0))
    shot_noise: bool = field(default=True, metadata=_meta("Poisson shot noise", ""))


@dataclass(frozen=True)
class TiffConfig:
    """Image geometry and the TIFF output (the original ``tiff`` section)."""

    filename: str = field(
        default="simulation.ome.tiff", metadata=_meta("TIFF name (sample folders use <sample>.ome.tiff)", "")
    )
    roi_size: int | None = field(
        default=None, metadata=_meta("square image side; or give roi_width / roi_height", "px", ge=1)
    )
    roi_width: int | None = field(default=None, metadata=_meta("image width (columns)", "px", ge=1))
    roi_height: int | None = field(default=None, metadata=_meta("image height (rows)", "px", ge=1))
    crop_offset: list = field(
        default_factory=lambda: [0, 0], metadata=_meta("[x, y] position of the ROI on the chip / Zmap", "px")
    )
    use_direct_rendering: bool = field(
        default=True, metadata=_meta("original key: only true (the high-res path was wrong, D8)", "")
    )
    add_noise: bool = field(
        default=True, metadata=_meta("false = expected photons without camera (camera.model 'none')", "")
    )
    noise_params: NoiseParams | None = field(
        default=None, metadata=_meta("original float noise model; given alone it selects camera.model 'original'", "")
    )
    compression: Literal["zstd", "zlib", "none"] = field(
        default="zstd",
        metadata=_meta(
            "TIFF compression: zstd level 1, zlib (deflate) level 1 or none; no LZW, no predictor (both enlarge noisy "
            "data)",
            "",
        ),
    )
    bigtiff: bool | None = field(
        default=None,
        metadata=_meta("BigTIFF (64-bit offsets); null = automatic when the raw stack exceeds ~1.9 GiB", ""),
    )
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass(frozen=True)
class CameraConfig:
    """Camera model. Accepts ``camera_parameters.json`` and ``default_config.json`` names."""

    model: Literal["emccd", "scmos", "ideal", "none", "original"] = field(
        default="emccd", metadata=_meta("camera chain", "")
    )
    qe: float = field(default=0.9, metadata=_meta("quantum efficiency", "", gt=0, le=1))
    em_gain: float = field(default=100.0, metadata=_meta("EMCCD electron-multiplying gain (1 = off)", "", ge=1))
    spurious_charge: float = field(default=0.002, metadata=_meta("EMCCD clock-induced charge", "e-/px/frame", ge=0))
    read_noise_e: float = field(default=74.4, metadata=_meta("Gaussian read noise s.d.", "e-", ge=0))
    e_per_adu: float = field(
        default=45.0, metadata=_meta("conversion (sensitivity); A2D / e_adu in original files", "e-/ADU", gt=0)
    )
    baseline: float = field(
        default=100.0, metadata=_meta("offset added to every pixel; 'offset' in camera_parameters.json", "ADU", ge=0)
    )
    bit_depth: int = field(default=16, metadata=_meta("output clipped to [0, 2**bit_depth - 1]", "bits", ge=1, le=32))
    scmos_offset: Any = field(
        default=100.0, metadata=_meta("sCMOS per-pixel offset: number or .npy path (chip-sized map)", "ADU")
    )
    scmos_variance: Any = field(
        default=2.0, metadata=_meta("sCMOS per-pixel read-noise variance: number or .npy path", "ADU^2")
    )
    scmos_gain: Any = field(default=0.5, metadata=_meta("sCMOS per-pixel gain: number or .npy path", "ADU/e-"))
    poisson: bool = field(default=True, metadata=_meta("'ideal' model: Poisson noise (false = expected photons)", ""))
    chip_height: int | None = field(
        default=None, metadata=_meta("chip rows (chipszh); ROI + offset must fit", "px", ge=1)
    )
    chip_width: int | None = field(default=None, metadata=_meta("chip columns (chipszw)", "px", ge=1))
    name: str = field(
        default="", metadata=_meta("camera description / calibration file (cam_pth, view_type kept as provenance)", "")
    )


@dataclass(frozen=True)
class BackgroundConfig:
    """Uniform background reaching the camera."""

    photons: float = field(default=50.0, metadata=_meta("background", "photons/px/frame", ge=0))


@dataclass(frozen=True)
class RenderConfig:
    """Lazy-graph layout."""

    chunk_frames: int | None = field(
        default=None,
        metadata=_meta(
            "frames per dask chunk (memory_optimization.chunk_size); null = automatic from chunk_mb (at most 32)",
            "frames",
            ge=1,
        ),
    )
    tile_size: int | None = field(
        default=None,
        metadata=_meta(
            "side of the square y/x tiles of a chunk; null = whole frames unless one frame exceeds chunk_mb (then "
            "multiples of 512 px, the noise grid)",
            "px",
            ge=1,
        ),
    )
    chunk_mb: float = field(
        default=12.0,
        metadata=_meta(
            "target size of one output chunk (frames x tile x dtype) for the automatic chunking; working memory is ~4x "
            "this per thread",
            "MiB",
            gt=0,
        ),
    )
    memory_budget_mb: float | None = field(
        default=None,
        metadata=_meta(
            "memory allowed for non-streaming writes (--no-streaming needs ~2x the stack); null = the available memory",
            "MiB",
            gt=0,
        ),
    )
    gc_frequency: int = field(
        default=0,
        metadata=_meta(
            "run gc.collect() every N written chunks (0 = never; original enable_gc/gc_frequency)", "chunks", ge=0
        ),
    )
    tune_malloc: bool = field(
        default=True,
        metadata=_meta(
            "when saving, cap glibc malloc arenas at one per core (at least 2), serve allocations >= 4 MiB by mmap and "
            "trim the heap beyond 4 MiB free (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_=4194304, "
            "MALLOC_TRIM_THRESHOLD_=4194304 for this process; frames of 1 MiB or more: 32 MiB and 64 MiB, so that "
            "rendered blocks are reused from the heap), and return free heap memory to the OS after "
            "simulate and "
            "every 256 written blocks: keeps memory flat over long writes; false = leave the allocator alone",
            "",
        ),
    )


@dataclass(frozen=True)
class OutputConfig:
    """What a saved sample contains."""

    verbose: bool = field(default=False, metadata=_meta("log at INFO level", ""))
    save_intermediate: bool = field(
        default=True, metadata=_meta("original key: emitters.h5 is always written; only true is accepted", "")
    )
    generate_plots: bool = field(default=False, metadata=_meta("original plotting key: only false is accepted", ""))
    write_csv: bool = field(default=False, metadata=_meta("also write ground_truth.csv", ""))
    frames_in_h5: bool = field(
        default=False, metadata=_meta("also store the frames as emitters.h5 'frames' (original v2/v3 loaders)", "")
    )
    format: Literal["ome-tiff", "ome-zarr", "hdf5"] = field(
        default="ome-tiff",
        metadata=_meta("frame-stack format of a sample folder: <name>.ome.tiff, <name>.ome.zarr or <name>.h5", ""),
    )
    zarr_format: Literal[2, 3] = field(
        default=3,
        metadata=_meta("OME-Zarr: 3 = zarr v3 + NGFF 0.5 (core codecs), 2 = zarr v2 + NGFF 0.4 (numcodecs)", ""),
    )
    zarr_compression: Literal["zstd", "zlib", "none"] = field(
        default="zstd", metadata=_meta("OME-Zarr chunk compression: zstd level 1, zlib (gzip) level 1 or none", "")
    )
    hdf5_compression: Literal["none", "zlib", "lzf"] = field(
        default="none",
        metadata=_meta(
            "HDF5 stack compression: none (fastest), zlib (gzip level 1) or lzf; all built into h5py so every "
            "reader opens "
            "it",
            "",
        ),
    )
    exports: list = field(
        default_factory=list,
        metadata=_meta(
            "ground truth also written beside emitters.h5 for SMLM tools: any of thunderstorm "
            "(<name>_thunderstorm.csv), decode (<name>_decode.h5 + .csv), picasso (<name>_locs.hdf5 + .yaml), "
            "smap (<name>_sml.mat); records outside the image left out (z2t export --include-outside keeps them)",
            "",
        ),
    )


@dataclass(frozen=True)
class SimulationConfig:
    """Everything needed to simulate one sample (with a seed)."""

    zmap_path: str | None = field(
        default=None, metadata=_meta("Zmap result.h5 / patches.h5; null = synthetic Zmap", "")
    )
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
    provenance: dict = field(
        default_factory=dict, metadata=_meta("informational keys carried into the output metadata", "")
    )
    # ---- detection channels (z2t_dask.config.channels; empty = one channel, unchanged) --------
    channels: list = field(
        default_factory=list,
        metadata=_meta(
            "detection channels (>= 2; empty = one channel): [{name, wavelength_nm, zmap_path, synthetic_seed, "
            "fixed_zernike, efficiency, z_offset_um, background, crop_offset, transform: {shift_px, rotation_deg, "
            "scale, centre_px, affine}, camera}] (see z2t_dask.config.channels)",
            "",
        ),
    )
    channels_layout: Literal["stack", "split-view"] = field(
        default="stack",
        metadata=_meta(
            "frames of several channels: 'stack' = (T, C, Y, X); 'split-view' = one chip (T, Y, X) with the "
            "channels side by side, each at its crop_offset",
            "",
        ),
    )

    # ---- derived geometry ------------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the rendered frames in camera pixels (resolved by :func:`load_config`)."""
        height, width = self.tiff.roi_height, self.tiff.roi_width
        if height is None or width is None:
            raise ConfigError([("tiff.roi_width", "unresolved ROI size: build configs with load_config")])
        return int(height), int(width)

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

    @property
    def focus_depth_um(self) -> float:
        """Height of the nominal focal plane above the coverslip in µm (``optical.focus_depth_um``, resolved).

        ``null`` resolves to ``emitters.z_range_um``: emitters drawn at ``z`` in ``[-z_range, z_range)`` then
        lie at depths ``focus_depth_um + z`` in ``[0, 2 z_range)`` above the coverslip.
        """
        f = self.optical.focus_depth_um
        return float(self.emitters.z_range_um if f is None else f)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config as plain JSON-able data."""
        return config_to_dict(self)


def config_to_dict(cfg: Any) -> Any:
    """Plain-data (JSON-able) view of a config dataclass tree."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg
