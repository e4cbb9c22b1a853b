"""Public helpers for testing code that uses z2t-dask (as :mod:`zarr.testing` is for zarr).

An ordinary module, importable without pytest and cheap to import (the package's heavy modules
are imported when a helper is first called). It holds:

Small configs
    :func:`tiny_config` (a validated :class:`~z2t_dask.config.SimulationConfig`) and
    :func:`tiny_config_dict` (the plain mapping, e.g. to write a JSON file for the CLI): a
    24 × 20 px ROI (non-square, so a swapped x/y shows), 6 frames, 30 emitters, a 15 px PSF patch,
    an EMCCD camera; rendered in well under a second.
A sample from arrays
    :func:`emitter_table` and :func:`sample_from_arrays`: a lazy
    :class:`~z2t_dask.sample.Sample` rendering ground truth you give as arrays (emitters placed
    exactly where a test needs them, e.g. on tile borders) instead of drawing it from the seed.
NGFF validation
    :func:`validate_ngff` (re-exported from :mod:`z2t_dask.io.ngff`): checks an OME-Zarr group's
    multiscales metadata and returns a summary.
The naive reference renderer
    :class:`NaiveOptics`, :func:`naive_psf`, :func:`naive_frames`, :func:`naive_emccd` and
    :func:`naive_expected_photons`: z2t's exact physics written the straightforward way the
    original tool was (one PSF per record, everything rebuilt from scratch in float64, a Python
    loop to place patches). It is the eager oracle the lazy graph is tested against (as
    dask-image tests against scipy) and the baseline ``python -m benchmarks`` times z2t against.

Conventions are the package's: frames ``(T, Y, X)``; x is the column, y the row, both in camera
pixels of the ROI, pixel ``(r, c)`` centred at ``(y=r, x=c)``; z in µm (0 = focal plane, positive
= away from the coverslip); photons per frame; Zernike coefficients in rad RMS, Noll order.

Examples
--------
>>> from z2t_dask.testing import tiny_config, naive_expected_photons
>>> import z2t_dask as z2t
>>> cfg = tiny_config(camera={"model": "none"})             # noise-free: frames are expected photons
>>> sample = z2t.simulate(cfg, seed=3)
>>> bool(abs(sample.compute() - naive_expected_photons(sample)).max() < 1e-3)
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from z2t_dask.config import SimulationConfig
    from z2t_dask.io.ngff import validate_ngff
    from z2t_dask.physics.emitters import EmitterTable, Records
    from z2t_dask.sample import Sample

__all__ = [
    "TINY_CONFIG",
    "NaiveOptics",
    "emitter_table",
    "naive_emccd",
    "naive_expected_photons",
    "naive_frames",
    "naive_psf",
    "sample_from_arrays",
    "tiny_config",
    "tiny_config_dict",
    "validate_ngff",
]

# --------------------------------------------------------------------------- small configs


def _frozen(value: Any) -> Any:
    """A read-only view of nested mappings and lists (mappings -> mappingproxy, lists -> tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    """A fresh plain copy of ``value``: mappings -> dict, tuples and lists -> list (deep)."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thawed(v) for v in value]
    return copy.deepcopy(value)


#: The sections :func:`tiny_config` starts from (read-only; :func:`tiny_config_dict` gives a plain copy).
TINY_CONFIG: Mapping[str, Mapping[str, Any]] = _frozen(
    {
        "tiff": {"roi_width": 24, "roi_height": 20},  # px; non-square on purpose
        "emitters": {
            "num_emitters": 30,
            "frames": 6,
            "margin_px": 2.0,
            "intensity_mu": 3000.0,
            "intensity_sigma": 500.0,
            "lifetime_avg": 2.0,
            "z_range_um": 0.5,
        },  # photons/frame, frames, µm
        "psf": {"patch_size": 15},  # px
        "camera": {"model": "emccd"},
        "zernike": {"synthetic_shape": [64, 64]},  # px of the synthetic Zmap (covers the ROI)
    }
)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over`` recursively (mappings merge key by key; anything else replaces)."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = _thawed(value)
    return base


def tiny_config_dict(**sections: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The tiny test config as a fresh plain ``dict`` (for a JSON file, a batch's ``base_config``).

    Parameters
    ----------
    **sections
        Config sections merged over :data:`TINY_CONFIG` key by key, e.g.
        ``camera={"model": "none"}`` or ``emitters={"frames": 12}``; a non-mapping value
        (e.g. ``zmap_path="z.h5"``) sets that top-level key.

    Returns
    -------
    dict
        A deep copy: changing it changes nothing else.
    """
    return _merge(_thawed(TINY_CONFIG), sections)


def tiny_config(**sections: Mapping[str, Any] | Any) -> SimulationConfig:
    """A validated config of a small sample, fast enough for any test.

    A 24 × 20 px ROI (width × height; non-square so that a swapped x/y shows), 6 frames, 30
    emitters (3000 ± 500 photons per frame while on, mean on-time 2 frames, z in ±0.5 µm, drawn
    up to 2 px outside the image), a 15 px PSF patch (exact scalar pupil model), the synthetic
    Zmap, 50 background photons / px / frame and an EMCCD camera. ``camera={"model": "none"}``
    makes the frames the expected photons (float32, no noise).

    Parameters
    ----------
    **sections
        Overrides merged over :data:`TINY_CONFIG`, see :func:`tiny_config_dict`.

    Returns
    -------
    SimulationConfig
        Validated (:func:`z2t_dask.load_config`).

    Raises
    ------
    z2t_dask.ConfigError
        An override that does not validate (the message names the key).
    """
    from z2t_dask.config import load_config

    return load_config(tiny_config_dict(**sections))


# --------------------------------------------------------------------------- samples from arrays


def emitter_table(xyz: Any, intensity: Any, *, t0: Any = 0.0, on_time: Any) -> EmitterTable:
    """Per-emitter ground truth from arrays (ids ``0 .. N-1``).

    Parameters
    ----------
    xyz : array_like (N, 3)
        x, y in ROI pixels (column, row; pixel centres at integers), z in µm (0 = focal plane,
        positive = away from the coverslip). Rounded to float32 numbers, as the truth files store them.
    intensity : array_like (N,) or float
        Photons per full frame while on.
    t0 : array_like (N,) or float, default 0
        Start of each emitter's single on-interval, in frames (frame ``k`` integrates ``[k, k + 1)``).
    on_time : array_like (N,) or float
        Length of the on-interval, in frames (``frames`` keeps an emitter with ``t0 = 0`` on throughout).

    Returns
    -------
    EmitterTable

    Raises
    ------
    ValueError
        ``xyz`` not of shape (N, 3), or a value not finite, a negative intensity or on-time.
    """
    from z2t_dask.physics.emitters import EmitterTable

    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    n = xyz.shape[0]
    cols = {
        name: np.broadcast_to(np.asarray(v, np.float64), (n,)).copy()
        for name, v in (("intensity", intensity), ("t0", t0), ("on_time", on_time))
    }
    for name, arr in (("xyz", xyz), *cols.items()):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
    for name in ("intensity", "on_time"):
        if np.any(cols[name] < 0):
            raise ValueError(f"{name} must be >= 0")
    return EmitterTable(
        xyz=xyz.astype(np.float32).astype(np.float64),
        intensity=cols["intensity"],
        t0=cols["t0"],
        on_time=cols["on_time"],
        id=np.arange(n, dtype=np.int64),
    )


def sample_from_arrays(
    config: SimulationConfig | Mapping[str, Any],
    emitters: EmitterTable,
    records: Records | None = None,
    phase: Any = None,
    mag: Any = None,
    *,
    seed: int = 0,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
    zmap_info: Mapping[str, Any] | None = None,
) -> Sample:
    """A lazy sample rendering ground truth given as arrays (held in memory).

    The frames are rendered exactly as :func:`z2t_dask.simulate` renders a drawn truth (same
    graph, same camera streams from ``seed``); only the truth comes from the caller.

    Parameters
    ----------
    config : SimulationConfig or mapping
        The sample's config (a mapping is validated with :func:`z2t_dask.load_config`);
        ``emitters.frames`` is the number of frames T and the ROI the image.
    emitters : EmitterTable
        Per-emitter truth, ids ``0 .. N-1`` (see :func:`emitter_table`).
    records : Records, optional
        Per-(emitter, frame) truth, ordered by emitter id then frame (the photons each record
        puts in its frame). Default: each emitter's on-interval ``[t0, t0 + on_time)`` binned
        into frames (:func:`z2t_dask.physics.emitters.make_records`).
    phase : array_like (N, psf.n_modes), optional
        Zernike phase per emitter, rad RMS, Noll (j = 1 .. n_modes). Default: zero (no
        aberration). Rounded to float32, the precision the truth files store.
    mag : array_like (N, psf.n_modes), optional
        Pupil-amplitude Zernike coefficients per emitter (dimensionless). Default: none.
    seed : int, default 0
        The sample's seed (its camera noise streams).
    chunk_frames, tile_size : int, optional
        Frames per dask chunk and side of the y/x tiles in px (defaults: the config's
        ``render`` section). The bytes do not depend on the chunking.
    zmap_info : mapping, optional
        Provenance of the coefficients, stored in the outputs' metadata.

    Returns
    -------
    Sample

    Raises
    ------
    ValueError
        ``phase`` / ``mag`` not of shape (N, psf.n_modes), or records naming an emitter or a
        frame that does not exist.
    """
    from z2t_dask.config import SimulationConfig, load_config
    from z2t_dask.physics.emitters import make_records
    from z2t_dask.sample import _sample_from_truth

    cfg = config if isinstance(config, SimulationConfig) else load_config(config)
    n, k, frames = len(emitters), int(cfg.psf.n_modes), int(cfg.emitters.frames)
    if records is None:
        intervals = (np.arange(n), emitters.t0, emitters.t0 + emitters.on_time)
        records = make_records(emitters, intervals, frames, cfg.image_shape)
    if len(records) and (records.id.min() < 0 or records.id.max() >= n):
        raise ValueError(
            f"records/id must lie in [0, {n}) (the emitters' ids), got [{records.id.min()}, {records.id.max()}]"
        )
    if len(records) and (records.frame_ix.min() < 0 or records.frame_ix.max() >= frames):
        raise ValueError(
            f"records/frame_ix must lie in [0, {frames}) (emitters.frames), got "
            f"[{records.frame_ix.min()}, {records.frame_ix.max()}]"
        )
    phase = np.zeros((n, k)) if phase is None else np.asarray(phase)
    for name, arr in (("phase", phase), ("mag", mag)):
        if arr is not None and np.shape(arr) != (n, k):
            raise ValueError(f"{name} must have shape (N, psf.n_modes) = ({n}, {k}), got {np.shape(arr)}")
    return _sample_from_truth(
        cfg,
        int(seed),
        emitters,
        records,
        phase,
        None if mag is None else np.asarray(mag),
        dict(zmap_info or {}),
        chunk_frames,
        tile_size=tile_size,
    )


# --------------------------------------------------------------------------- NGFF (re-export)


def __getattr__(name: str) -> Any:
    if name == "validate_ngff":  # imported on first use: keeps this module cheap to import
        from z2t_dask.io.ngff import validate_ngff

        return validate_ngff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"validate_ngff"})


# --------------------------------------------------------------------------- naive reference renderer


@dataclass(frozen=True)
class NaiveOptics:
    """Resolved optics and sampling of the naive renderer (copied from a PupilPSF: both share the window).

    Attributes
    ----------
    wavelength_nm : float
        Emission wavelength in vacuum (nm).
    na : float
        Numerical aperture.
    n_medium : float
        Refractive index of the sample medium (exact defocus phase).
    pixel_size_nm_x, pixel_size_nm_y : float
        Camera pixel pitch along x (columns) and y (rows), nm in sample space.
    patch_size : int
        Side of a PSF patch (camera px, odd).
    sampling : int
        Fine-grid oversampling (fine pitch = pixel / sampling).
    window : int
        Side of the periodic amplitude FFT window (camera px).
    intensity_window : int
        Side of the window the intensity is folded into (camera px).
    """

    wavelength_nm: float
    na: float
    n_medium: float
    pixel_size_nm_x: float
    pixel_size_nm_y: float
    patch_size: int
    sampling: int
    window: int
    intensity_window: int

    @classmethod
    def from_model(cls, model: Any) -> NaiveOptics:
        """The optics of a :class:`~z2t_dask.physics.optics.psf.PupilPSF` (e.g. ``sample.plan.psf``)."""
        return cls(
            wavelength_nm=model.wavelength_nm,
            na=model.na,
            n_medium=model.n_medium,
            pixel_size_nm_x=model.pixel_size_nm_x,
            pixel_size_nm_y=model.pixel_size_nm_y,
            patch_size=model.patch_size,
            sampling=model.sampling,
            window=model.window,
            intensity_window=model.intensity_window,
        )


def naive_psf(
    phase: np.ndarray, z_um: float, dx: float, dy: float, o: NaiveOptics, mag: np.ndarray | None = None
) -> np.ndarray:
    """One pixel-integrated PSF patch ``(p, p)`` float64, everything rebuilt from scratch.

    The same model as :class:`~z2t_dask.physics.optics.psf.PupilPSF` (scalar pupil, exact
    non-paraxial defocus, Fourier sub-pixel shift, pixel integration, Parseval normalisation,
    same FFT window and folding, so the same numbers to ~1e-6 of the peak), but every PSF builds
    its pupil grids, Zernike polynomials and defocus anew, in float64 / complex128, with full
    2-D ``numpy.fft`` transforms (as the original tool did).

    Parameters
    ----------
    phase : ndarray (K,)
        Zernike phase, rad RMS, Noll (index 0 = piston, ignored).
    z_um : float
        Axial position (µm, 0 = focal plane, positive = away from the coverslip).
    dx, dy : float
        Sub-pixel offsets (camera pixels) of the emitter from the patch centre, in [-0.5, 0.5).
    o : NaiveOptics
        Optics and sampling.
    mag : ndarray (K,), optional
        Zernike pupil-amplitude coefficients (dimensionless; amplitude ``1 + sum``, clipped at 0).

    Returns
    -------
    ndarray (p, p) float64
        Fraction of the emitted photons in each camera pixel; row = y, column = x; the emitter's
        reference pixel is ``p // 2``.
    """
    from z2t_dask.physics.optics.zernike import noll_to_nm, zernike_nm

    s = o.sampling
    n = o.window * s
    d_x, d_y = o.pixel_size_nm_x / s, o.pixel_size_nm_y / s
    kx = np.fft.fftfreq(n, d=d_x)
    ky = np.fft.fftfreq(n, d=d_y)
    kxx, kyy = np.meshgrid(kx, ky)  # rows = y, columns = x
    k_cut = o.na / o.wavelength_nm
    kr = np.hypot(kxx, kyy)
    inside = kr <= k_cut
    rho = kr / k_cut
    theta = np.arctan2(kyy, kxx)
    phi = np.zeros((n, n))
    for j in range(2, len(phase) + 1):
        if phase[j - 1] != 0.0:
            phi += phase[j - 1] * zernike_nm(*noll_to_nm(j), rho, theta)
    amp = inside.astype(np.float64)
    if mag is not None:
        a = np.ones((n, n))
        for j in range(2, len(mag) + 1):
            if mag[j - 1] != 0.0:
                a += mag[j - 1] * zernike_nm(*noll_to_nm(j), rho, theta)
        amp *= np.clip(a, 0.0, None)
    kn = o.n_medium / o.wavelength_nm
    arg = kn * kn - kr * kr
    phi += 2 * math.pi * z_um * 1e3 * (np.sqrt(np.clip(arg, 0, None)) - kn)
    amp *= np.exp(-2 * math.pi * abs(z_um) * 1e3 * np.sqrt(np.clip(-arg, 0, None)))
    phi += -2 * math.pi * (kxx * dx * o.pixel_size_nm_x + kyy * dy * o.pixel_size_nm_y)
    pupil = amp * np.exp(1j * phi)
    energy = float((amp * amp).sum())
    h = np.fft.ifft2(pupil, norm="ortho")
    inten = np.abs(h) ** 2
    m = o.intensity_window * s
    f = n // m
    inten = inten.reshape(f, m, f, m).sum(axis=(0, 2))
    otf = np.fft.fft2(inten)
    otf *= np.sinc(np.fft.fftfreq(m) * s)[:, None] * np.sinc(np.fft.fftfreq(m) * s)[None, :]
    img = np.fft.ifft2(otf).real
    c0 = o.patch_size // 2
    sel = ((np.arange(o.patch_size) - c0) % o.intensity_window) * s
    return img[np.ix_(sel, sel)] * (s * s / energy) if energy > 0 else np.zeros((o.patch_size,) * 2)


def naive_frames(
    o: NaiveOptics,
    shape: tuple[int, int],
    frames: int,
    rec_frame: np.ndarray,
    rec_id: np.ndarray,
    rec_phot: np.ndarray,
    em_xyz: np.ndarray,
    em_phase: np.ndarray,
    em_mag: np.ndarray | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Expected signal photons ``(frames, H, W)`` float64: one PSF per record, added in a Python loop.

    Parameters
    ----------
    o : NaiveOptics
        Optics and sampling.
    shape : (int, int)
        ``(H, W)`` of a frame in px.
    frames : int
        Number of frames T.
    rec_frame, rec_id, rec_phot : ndarray (R,)
        Each record's frame, emitter row (into ``em_*``) and photons in that frame.
    em_xyz : ndarray (N, 3)
        Emitter positions: x, y in ROI px, z in µm.
    em_phase, em_mag : ndarray (N, K)
        Zernike phase (rad RMS, Noll) and pupil-amplitude coefficients (or None) per emitter.
    limit : int, optional
        Render only the first ``limit`` records (for timing a subset).

    Returns
    -------
    ndarray (frames, H, W) float64
        Photons per pixel (no background); light falling outside the image is lost.
    """
    h, w = shape
    out = np.zeros((frames, h, w))
    p = o.patch_size
    c = p // 2
    n = len(rec_frame) if limit is None else min(limit, len(rec_frame))
    for r in range(n):
        e = rec_id[r]
        x, y, z = em_xyz[e]
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        patch = naive_psf(em_phase[e], z, x - cx, y - cy, o, None if em_mag is None else em_mag[e])
        for i in range(p):
            yy = cy - c + i
            if 0 <= yy < h:
                x0, x1 = max(cx - c, 0), min(cx - c + p, w)
                if x1 > x0:
                    out[rec_frame[r], yy, x0:x1] += rec_phot[r] * patch[i, x0 - (cx - c) : x1 - (cx - c)]
    return out


def naive_expected_photons(sample: Sample, *, background: bool = True) -> np.ndarray:
    """The naive renderer's expected photons of a whole sample, ``(T, H, W)`` float64.

    Renders every record of ``sample`` (its whole truth, in memory) with :func:`naive_frames`
    using the optics of the sample's exact PSF model (for ``psf.mode = "fast"``, the exact model
    its library was built from). With a noise-free camera (``camera.model = "none"``, or
    ``"ideal"`` with ``poisson = false``) the sample's frames equal this to float32 precision.

    Parameters
    ----------
    sample : Sample
        A sample from :func:`z2t_dask.simulate` or :func:`sample_from_arrays` (small: one PSF per
        record, a few ms each).
    background : bool, default True
        Add the config's uniform background (photons / px / frame).

    Returns
    -------
    ndarray (T, H, W) float64
        Photons per pixel and frame.
    """
    plan = sample.plan
    optics = NaiveOptics.from_model(getattr(plan.psf, "exact", plan.psf))
    part = sample.truth.materialize()
    rec = part.records
    out = naive_frames(
        optics,
        tuple(plan.image_shape),
        int(plan.frames),
        rec.frame_ix,
        rec.id - part.id0,
        rec.phot,
        part.emitters.xyz,
        part.phase,
        part.mag,
    )
    if background:
        out += float(plan.background)
    return out


def naive_emccd(
    photons: np.ndarray,
    rng: np.random.Generator,
    *,
    qe: float,
    em_gain: float,
    spurious_charge: float,
    read_noise_e: float,
    e_per_adu: float,
    baseline: float,
    bit_depth: int,
) -> np.ndarray:
    """One EMCCD frame the direct way: Poisson, Gamma (0 stays 0), Normal, rint, clip (uint16/32).

    Parameters
    ----------
    photons : ndarray (H, W)
        Expected photons per pixel (signal + background).
    rng : numpy.random.Generator
        The stream to draw from.
    qe : float
        Quantum efficiency (electrons per photon, 0..1).
    em_gain : float
        Mean electron-multiplying gain (> 1: Gamma-distributed output of each input electron).
    spurious_charge : float
        Clock-induced charge, electrons / px / frame.
    read_noise_e : float
        Read noise, electrons RMS.
    e_per_adu : float
        Electrons per ADU.
    baseline : float
        Offset, ADU.
    bit_depth : int
        ADC bits: output clipped to ``[0, 2**bit_depth - 1]``.

    Returns
    -------
    ndarray (H, W) uint16 (uint32 beyond 16 bits)
        ADU.
    """
    n = rng.poisson(photons * qe + spurious_charge)
    e = np.where(n > 0, rng.gamma(np.maximum(n, 1), em_gain), 0.0) if em_gain > 1 else n.astype(float)
    adu = e / e_per_adu + rng.normal(0.0, read_noise_e / e_per_adu, photons.shape) + baseline
    return np.clip(np.rint(adu), 0, 2**bit_depth - 1).astype(np.uint16 if bit_depth <= 16 else np.uint32)
