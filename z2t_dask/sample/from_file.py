"""A sample rendering an existing ``emitters.h5`` (e.g. one the original tool wrote)."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from z2t_dask.config import SimulationConfig, load_config
from z2t_dask.engine.assembly import aberration_field
from z2t_dask.errors import FormatError
from z2t_dask.physics.emitters import EmitterTable, Records, inside_image
from z2t_dask.physics.zmap import legacy_to_noll
from z2t_dask.sample.core import Sample, sample_from_truth

__all__ = ["load_sample_h5", "render_emitters"]


def load_sample_h5(
    h5_path: str | os.PathLike,
    config=None,
    *,
    seed: int = 0,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
) -> Sample:
    """A :class:`Sample` rendering the emitters and records of an existing ``emitters.h5``.

    Files written by the original tool carry legacy 21-index coefficients (read through the
    ``legacy21`` convention); files written by z2t declare Noll/rad. Without ``zernike_coeffs``
    the coefficients come from the config's Zmap. Positions are ROI pixels; ``frames`` is
    ``emitters.frames`` of the config or, if larger, ``max(records/frame_ix) + 1``.
    """
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    cfg = config if isinstance(config, SimulationConfig) else load_config(config)
    f = read_emitters_h5(h5_path)
    em, rec = f.emitters, f.records
    xyz = np.asarray(em["xyz"], np.float64)
    n = xyz.shape[0]
    ids = np.asarray(em.get("id", np.arange(n)), np.int64)
    if not np.array_equal(ids, np.arange(n)):
        raise FormatError(f"{h5_path}: emitters/id must be 0..N-1 in order")
    frame_ix = np.asarray(rec["frame_ix"], np.int64)
    frames = max(int(cfg.emitters.frames), int(frame_ix.max()) + 1 if frame_ix.size else 0)
    if frames != cfg.emitters.frames:  # a new config: the caller's is never changed
        cfg = replace(cfg, emitters=replace(cfg.emitters, frames=frames))
    rec_xyz = np.asarray(rec["xyz"], np.float64)
    rec_ids = np.asarray(rec["id"], np.int64)
    if rec_ids.size and (rec_ids.min() < 0 or rec_ids.max() >= n):
        raise FormatError(f"{h5_path}: records/id out of range 0..{n - 1}")
    inside = inside_image(rec_xyz[:, :2], cfg.image_shape)
    records = Records(
        xyz=rec_xyz, phot=np.asarray(rec["phot"], np.float64), frame_ix=frame_ix, id=rec_ids, inside=inside
    )
    table = EmitterTable(
        xyz=xyz,
        intensity=np.asarray(em.get("intensity", np.zeros(n)), np.float64),
        t0=np.asarray(em.get("t0", np.zeros(n)), np.float64),
        on_time=np.asarray(em.get("on_time", np.zeros(n)), np.float64),
        id=ids,
    )
    zc = f.zernike_coeffs
    k = cfg.psf.n_modes
    declared = str(f.attrs.get("zernike_convention", "")) if f.attrs else ""
    if zc and "phase" in zc and zc["phase"].shape[0] == n:
        ph = np.asarray(zc["phase"], np.float64)
        mg = np.asarray(zc.get("mag", np.zeros_like(ph)), np.float64)
        if "z2t_version" in f.attrs or declared == "noll-rad":
            phase = np.zeros((n, k))
            phase[:, : min(k, ph.shape[1])] = ph[:, :k]
            mag = np.zeros((n, k))
            mag[:, : min(k, mg.shape[1])] = mg[:, :k]
            info = {"kind": "emitters.h5", "source_convention": "noll", "path": str(h5_path)}
        else:
            phase = legacy_to_noll(ph, k)
            mag = legacy_to_noll(mg, k, warn=False)
            mag[:, 0] = 0.0
            info = {"kind": "emitters.h5", "source_convention": "legacy21", "path": str(h5_path)}
        phase = phase * cfg.zernike.scale
        mag_or_none: np.ndarray | None = mag if np.any(np.abs(mag) > 1e-9) else None
    elif zc and "phase" in zc:
        raise FormatError(
            f"{h5_path}: zernike_coeffs/phase has {zc['phase'].shape[0]} rows for {n} emitters "
            "(the original's crop bug, D13); drop zernike_coeffs to recompute them from the Zmap"
        )
    else:
        field = aberration_field(cfg)
        phase, mag_or_none = field(xyz[:, :2])
        info = field.describe()
    return sample_from_truth(
        cfg,
        seed,
        table,
        records,
        phase,
        mag_or_none,
        info,
        chunk_frames,
        extra_attrs={"rendered_from": str(h5_path)},
        tile_size=tile_size,
    )


def render_emitters(h5_path: str | os.PathLike, config=None, *, seed: int = 0, chunk_frames: int | None = None):
    """Lazy frames ``(T, H, W)`` of an existing ``emitters.h5`` (e.g. one the original wrote)."""
    return load_sample_h5(h5_path, config, seed=seed, chunk_frames=chunk_frames).frames
