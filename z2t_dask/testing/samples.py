"""Small configs and samples built from arrays, for tests (see :mod:`z2t_dask.testing`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from z2t_dask.config import SimulationConfig
    from z2t_dask.physics.emitters import EmitterTable, Records
    from z2t_dask.sample import Sample

__all__ = ["TINY_CONFIG", "emitter_table", "sample_from_arrays", "tiny_config", "tiny_config_dict"]


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
    from z2t_dask.sample.core import sample_from_truth

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
    return sample_from_truth(
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
