"""The lazy ``(T, Y, X)`` dask array of one sample and its deterministic random streams.

This is the only module that builds a per-sample task graph. Frames are chunked along T with
:func:`dask.array.map_blocks`; each block

1. selects the ground-truth records of its frames,
2. computes the PSF of each emitter on in those frames (one PSF per emitter per block; the PSF
   code guarantees an emitter's PSF is bit-identical whatever batch it is computed in),
3. adds ``phot × PSF`` of every record into its frame (records of a frame are always added in
   the same order, so the sum does not depend on the chunking),
4. adds the background and applies the camera with the frame's own random stream
   ``SeedSequence(seed, spawn_key=(PURPOSE_NOISE, frame))``.

Hence the same seed gives the same bytes for any chunk size and any scheduler, and every frame
``0..T-1`` exists whether or not an emitter is on in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import camera as cam
from .config import CameraConfig, SimulationConfig
from .optics.psf import PupilPSF

__all__ = ["PURPOSE_EMITTERS", "PURPOSE_NOISE", "stream", "FramePlan", "build_camera", "build_psf_model",
           "render_block", "frames_array"]

PURPOSE_EMITTERS = 0
PURPOSE_NOISE = 1


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """The random stream of ``(seed, purpose, *keys)``: independent, O(1) to create, never global."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(purpose), *map(int, keys))))


def _load_map(value: Any, name: str) -> Any:
    if isinstance(value, str):
        p = Path(value)
        if not p.is_file():
            raise FileNotFoundError(f"camera.{name}: map file not found: {p}")
        return np.load(p).astype(np.float32)
    return float(value)


def build_camera(c: CameraConfig, *, noise_params=None, roi: tuple[int, int, int, int] | None = None):
    """Camera model of a config. ``roi = (y0, x0, height, width)`` crops sCMOS maps to the ROI."""
    if c.model == "emccd":
        return cam.EMCCD(qe=c.qe, em_gain=c.em_gain, spurious_charge=c.spurious_charge, read_noise_e=c.read_noise_e,
                         e_per_adu=c.e_per_adu, baseline=c.baseline, bit_depth=c.bit_depth)
    if c.model == "scmos":
        model = cam.SCMOS(qe=c.qe, offset=_load_map(c.scmos_offset, "scmos_offset"),
                          variance=_load_map(c.scmos_variance, "scmos_variance"),
                          gain=_load_map(c.scmos_gain, "scmos_gain"), bit_depth=c.bit_depth)
        if roi is not None and any(np.ndim(getattr(model, k)) == 2 for k in ("offset", "variance", "gain")):
            model = model.crop(*roi)
        return model
    if c.model == "ideal":
        return cam.Ideal(poisson=c.poisson)
    if c.model == "none":
        return cam.Ideal(poisson=False)
    if c.model == "original":
        return cam.OriginalFloat(readout_noise=noise_params.readout_noise, shot_noise=noise_params.shot_noise)
    raise ValueError(f"camera.model: unknown model {c.model!r}")


def build_psf_model(cfg: SimulationConfig) -> PupilPSF:
    """The pupil PSF model of a config."""
    o, p = cfg.optical, cfg.psf
    return PupilPSF(wavelength_nm=o.wavelength_nm, na=o.NA, n_medium=o.n_medium, n_immersion=o.n_immersion,
                    pixel_size_nm_x=o.pixel_size_nm_x, pixel_size_nm_y=o.pixel_size_nm_y,
                    patch_size=p.patch_size, oversampling=p.oversampling, n_modes=p.n_modes)


@dataclass
class FramePlan:
    """Everything a frame block needs (small; embedded once in the graph).

    Records are sorted by frame (then emitter id). Emitter arrays are indexed by emitter id.
    """

    seed: int
    frames: int
    image_shape: tuple[int, int]
    rec_frame: np.ndarray        # (M,) int64, sorted
    rec_id: np.ndarray           # (M,) int64
    rec_phot: np.ndarray         # (M,) float64 photons in the frame
    em_xyz: np.ndarray           # (N, 3) x, y px (ROI), z µm
    em_phase: np.ndarray         # (N, K) rad, Noll
    em_mag: np.ndarray | None    # (N, K) or None
    psf: PupilPSF
    camera: Any
    background: float            # photons / px / frame
    psf_batch: int = 256

    @classmethod
    def from_records(cls, *, seed: int, frames: int, image_shape: tuple[int, int], frame_ix: np.ndarray,
                     ids: np.ndarray, phot: np.ndarray, xyz: np.ndarray, phase: np.ndarray,
                     mag: np.ndarray | None, psf: PupilPSF, camera: Any, background: float,
                     psf_batch: int = 256) -> "FramePlan":
        """Sort records by frame (stable, so emitters keep their id order within a frame)."""
        frame_ix = np.asarray(frame_ix, np.int64)
        if frame_ix.size and (frame_ix.min() < 0 or frame_ix.max() >= frames):
            raise ValueError(f"records/frame_ix must lie in [0, {frames}), got [{frame_ix.min()}, {frame_ix.max()}]")
        order = np.argsort(frame_ix, kind="stable")
        return cls(seed=int(seed), frames=int(frames), image_shape=tuple(int(v) for v in image_shape),
                   rec_frame=frame_ix[order], rec_id=np.asarray(ids, np.int64)[order],
                   rec_phot=np.asarray(phot, np.float64)[order], em_xyz=np.asarray(xyz, np.float64),
                   em_phase=np.asarray(phase, np.float64),
                   em_mag=None if mag is None else np.asarray(mag, np.float64),
                   psf=psf, camera=camera, background=float(background), psf_batch=int(psf_batch))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(getattr(self.camera, "dtype", np.float32))


def expected_signal(plan: FramePlan, t0: int, t1: int) -> np.ndarray:
    """Expected signal photons ``(t1 - t0, H, W)`` float32 of frames ``[t0, t1)`` (no background)."""
    h, w = plan.image_shape
    out = np.zeros((t1 - t0, h, w), np.float32)
    lo, hi = np.searchsorted(plan.rec_frame, [t0, t1])
    if hi <= lo:
        return out
    ids = plan.rec_id[lo:hi]
    uniq, inv = np.unique(ids, return_inverse=True)
    xy = plan.em_xyz[uniq, :2]
    centre = np.floor(xy + 0.5)
    d = xy - centre
    ps = plan.psf.patch_size
    c = ps // 2
    psfs = np.empty((uniq.size, ps, ps), np.float32)
    for b0 in range(0, uniq.size, plan.psf_batch):
        sl = slice(b0, b0 + plan.psf_batch)
        psfs[sl] = plan.psf.compute(plan.em_phase[uniq[sl]], plan.em_xyz[uniq[sl], 2], d[sl, 0], d[sl, 1],
                                    None if plan.em_mag is None else plan.em_mag[uniq[sl]])
    offs = np.arange(ps) - c
    frames_sel = plan.rec_frame[lo:hi]
    phot = plan.rec_phot[lo:hi]
    cx = centre[inv, 0].astype(np.int64)
    cy = centre[inv, 1].astype(np.int64)
    bounds = np.searchsorted(frames_sel, np.arange(t0, t1 + 1))
    for f in range(t1 - t0):
        a, b = bounds[f], bounds[f + 1]
        if b <= a:
            continue
        rows = cy[a:b, None] + offs[None, :]                     # (R, ps)
        cols = cx[a:b, None] + offs[None, :]
        rv = (rows >= 0) & (rows < h)
        cv = (cols >= 0) & (cols < w)
        valid = rv[:, :, None] & cv[:, None, :]                  # (R, ps, ps)
        flat = rows[:, :, None] * w + cols[:, None, :]
        weights = psfs[inv[a:b]].astype(np.float64) * phot[a:b, None, None]
        out[f] = np.bincount(flat[valid], weights=weights[valid], minlength=h * w).reshape(h, w)
    return out


def render_block(block_info: dict | None = None, *, plan: FramePlan) -> np.ndarray:
    """Render the frames of one dask block (task function; importable, not in ``__main__``)."""
    loc = block_info[None]["array-location"]
    t0, t1 = loc[0]
    signal = expected_signal(plan, t0, t1)
    out = np.empty(signal.shape, plan.dtype)
    for i, t in enumerate(range(t0, t1)):
        photons = signal[i]
        photons += np.float32(plan.background)
        out[i] = plan.camera(photons, stream(plan.seed, PURPOSE_NOISE, t))
    return out


def frames_array(plan: FramePlan, chunk_frames: int = 32):
    """The lazy ``(T, H, W)`` stack of a plan, chunked by ``chunk_frames`` frames."""
    import dask.array as da

    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    h, w = plan.image_shape
    chunks = da.core.normalize_chunks((int(chunk_frames), h, w), (plan.frames, h, w))
    return da.map_blocks(render_block, dtype=plan.dtype, chunks=chunks, meta=np.empty((0, 0, 0), plan.dtype),
                         plan=plan, name=f"z2t-frames-{_plan_token(plan)}")


def _plan_token(plan: FramePlan) -> str:
    from dask.base import tokenize

    return tokenize(plan.seed, plan.frames, plan.image_shape, plan.rec_frame, plan.rec_id, plan.rec_phot,
                    plan.em_xyz, plan.em_phase, plan.em_mag, repr(plan.psf), repr(plan.camera), plan.background)
