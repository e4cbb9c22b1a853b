"""Emitter sampling, photophysics and binning into per-frame ground-truth records.

Conventions
-----------
* x is the column, y the row, in camera pixels of the ROI; pixel ``(r, c)`` has its centre at
  ``(y=r, x=c)``. An emitter is *inside* the image when ``-0.5 <= x < width - 0.5`` and
  ``-0.5 <= y < height - 0.5``; emitters drawn in the margin outside still light the edge.
* z in µm, 0 = focal plane, positive = away from the coverslip.
* Times in frames: frame ``k`` integrates the interval ``[k, k + 1)``.
* Photons: ``intensity`` is photons per full frame while on; a record's ``phot`` is the photons
  collected in that frame (intensity × on-time inside the frame).

Two photophysics models:

``single`` (the original tool's model and parameters)
    one on-interval ``[t0, t0 + on_time)`` per emitter, ``t0 ~ U[-3τ, T - 1 + 3τ)``,
    ``on_time ~ Exp(τ)``.
``blinking``
    activation at ``t0 ~ U[-pad, T - 1 + pad)`` with ``pad`` three mean emitter lifetimes
    (steady-state start: emitters already cycling when the movie starts), then alternating on / dark periods with exponential durations; while
    on, the emitter goes dark at rate ``1/t_on`` or bleaches at rate ``1/t_bleach`` (competing
    exponentials); bleached is final. On-time is integrated exactly within each frame, including
    several transitions inside one frame.

All randomness comes from the passed :class:`numpy.random.Generator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from z2t_dask.config import EmittersConfig

__all__ = ["EmitterTable", "Records", "activation_window", "sample_emitters", "on_intervals", "bin_intervals",
           "inside_image", "make_records"]


@dataclass
class EmitterTable:
    """Per-emitter ground truth (the original ``emitters/*`` group).

    Attributes
    ----------
    xyz : ndarray (N, 3) float64
        x, y in ROI pixels, z in µm (values exactly representable in float32).
    intensity : ndarray (N,)
        Photons per full frame while on.
    t0 : ndarray (N,)
        First on time, frames.
    on_time : ndarray (N,)
        Total on time, frames (sum over blinks for the blinking model).
    id : ndarray (N,) int64
    """

    xyz: np.ndarray
    intensity: np.ndarray
    t0: np.ndarray
    on_time: np.ndarray
    id: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])


@dataclass
class Records:
    """Per-(emitter, frame) ground truth (the original ``records/*`` group).

    Ordered by emitter id, then frame (the original order). ``inside`` says whether the emitter
    centre lies inside the image. Simulated records are compact: ``xyz`` (M, 3) and ``phot``
    (M,) float32 (the values ``emitters.h5`` stores), ``frame_ix`` and ``id`` (M,) int32
    (stored as int64), ``inside`` bool.
    """

    xyz: np.ndarray
    phot: np.ndarray
    frame_ix: np.ndarray
    id: np.ndarray
    inside: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        """Column name → array."""
        return {"xyz": self.xyz, "phot": self.phot, "frame_ix": self.frame_ix, "id": self.id,
                "inside": self.inside}

    def per_frame_counts(self, frames: int) -> np.ndarray:
        """Number of records in each frame ``0..frames-1``."""
        return np.bincount(self.frame_ix, minlength=frames)[:frames]


def _truncated_normal(rng: np.random.Generator, mu: float, sigma: float, lo: float, n: int) -> np.ndarray:
    """Normal(mu, sigma) draws redrawn until >= lo (no invisible labelled emitters)."""
    out = rng.normal(mu, sigma, n) if sigma > 0 else np.full(n, float(mu))
    if sigma == 0:
        if mu < lo:
            raise ValueError(f"emitters.intensity_mu={mu} is below emitters.intensity_min={lo} with sigma 0")
        return out
    bad = out < lo
    for _ in range(1000):
        k = int(bad.sum())
        if k == 0:
            return out
        out[bad] = rng.normal(mu, sigma, k)
        bad = out < lo
    raise ValueError(f"emitters.intensity_mu={mu}, intensity_sigma={sigma}: almost no draws reach "
                     f"intensity_min={lo} photons")


def activation_window(cfg: EmittersConfig) -> tuple[float, float]:
    """Range ``[lo, hi)`` (frames) of the uniform first-on / activation time of an emitter.

    ``single``: ``[-3τ, T - 1 + 3τ)``; ``blinking``: ``[-pad, T - 1 + pad)`` with ``pad`` three
    mean activation-to-bleach lifetimes (emitters already cycling when the movie starts).
    """
    frames = int(cfg.frames)
    if cfg.model == "single":
        tau = float(cfg.lifetime_avg)
        return -3 * tau, frames - 1 + 3 * tau
    pad = 3.0 * _blinking_rates(cfg)[3]
    return -pad, frames - 1 + pad


def _blinking_rates(cfg: EmittersConfig) -> tuple[float, float, float, float]:
    """``(mean_on, p_bleach, t_dark, lifetime)`` of the blinking model, frames."""
    k_dark, k_bleach = 1.0 / cfg.t_on, 1.0 / cfg.t_bleach
    mean_on = 1.0 / (k_dark + k_bleach)
    p_bleach = k_bleach / (k_dark + k_bleach)
    lifetime = (mean_on + cfg.t_dark) / p_bleach - cfg.t_dark   # mean activation-to-bleach time, frames
    return mean_on, p_bleach, float(cfg.t_dark), lifetime


def sample_emitters(cfg: EmittersConfig, rng: np.random.Generator, *, area_xy: tuple[float, float],
                    n: int | None = None, window: tuple[float, float] | None = None,
                    ) -> tuple[EmitterTable, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Draw emitters and their on-intervals.

    Parameters
    ----------
    cfg
        Emitter parameters (``num_emitters`` per movie, ``frames``, intensities in photons,
        ``lifetime_avg`` / ``t_on`` / ``t_dark`` / ``t_bleach`` in frames, ``z_range_um``).
    rng
        The sample's emitter stream.
    area_xy
        ``(width, height)`` of the sampling area in px; ``cfg.margin_px`` extends it on every side.
    n
        Number of emitters (default ``cfg.num_emitters``).
    window
        ``[lo, hi)`` of the first-on / activation times in frames (default
        :func:`activation_window`: the whole movie); a time segment of a long sample draws its
        own part of it.

    Returns
    -------
    table, (emitter_index, start, end)
        The emitter table and every on-interval in frames.
    """
    n = int(cfg.num_emitters) if n is None else int(n)
    w, h = area_xy
    m = float(cfg.margin_px)
    x = rng.uniform(-m, w + m, n)
    y = rng.uniform(-m, h + m, n)
    z = rng.uniform(-cfg.z_range_um, cfg.z_range_um, n) if cfg.z_range_um > 0 else np.zeros(n)
    intensity = _truncated_normal(rng, cfg.intensity_mu, cfg.intensity_sigma, cfg.intensity_min, n)
    xyz = np.stack([x, y, z], axis=1).astype(np.float32).astype(np.float64)
    intensity = intensity.astype(np.float32).astype(np.float64)
    idx, start, end = on_intervals(cfg, rng, n, window=window)
    on_time = np.bincount(idx, weights=end - start, minlength=n)
    first = np.full(n, np.inf)
    np.minimum.at(first, idx, start)
    if cfg.model == "single":
        t0 = start.copy()  # one interval per emitter, in id order
    else:
        t0 = np.where(np.isfinite(first), first, 0.0)
    table = EmitterTable(xyz=xyz, intensity=intensity, t0=t0.astype(np.float32).astype(np.float64),
                         on_time=on_time.astype(np.float32).astype(np.float64), id=np.arange(n, dtype=np.int64))
    return table, (idx, start, end)


def on_intervals(cfg: EmittersConfig, rng: np.random.Generator, n: int, *,
                 window: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On-intervals ``[start, end)`` in frames for ``n`` emitters, sorted by emitter then time.

    First-on (activation) times are uniform in ``window`` (default :func:`activation_window`).
    """
    frames = int(cfg.frames)
    lo, hi = activation_window(cfg) if window is None else window
    if cfg.model == "single":
        tau = float(cfg.lifetime_avg)
        t0 = rng.uniform(lo, hi, n)
        on = rng.exponential(tau, n)
        # float32 round trip: the intervals written to emitters.h5 are the ones binned
        t0 = t0.astype(np.float32).astype(np.float64)
        on = on.astype(np.float32).astype(np.float64)
        return np.arange(n, dtype=np.int64), t0, t0 + on
    # blinking: competing exits from ON (dark at 1/t_on, bleach at 1/t_bleach); activations start
    # early enough (activation_window) that emitters are cycling when the movie starts
    mean_on, p_bleach, _, _ = _blinking_rates(cfg)
    t = rng.uniform(lo, hi, n)
    alive = np.arange(n, dtype=np.int64)
    idx_parts, s_parts, e_parts = [], [], []
    while alive.size:
        on = rng.exponential(mean_on, alive.size)
        bleach = rng.random(alive.size) < p_bleach
        dark = rng.exponential(cfg.t_dark, alive.size)
        idx_parts.append(alive)
        s_parts.append(t)
        e_parts.append(t + on)
        t = t + on + dark
        keep = ~bleach & (t < frames)
        alive, t = alive[keep], t[keep]
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    start = np.concatenate(s_parts) if s_parts else np.zeros(0)
    end = np.concatenate(e_parts) if e_parts else np.zeros(0)
    order = np.lexsort((start, idx))
    return idx[order], start[order], end[order]


def bin_intervals(idx: np.ndarray, start: np.ndarray, end: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap-based frame binning of on-intervals (vectorised, exact sub-frame integration).

    Returns ``(emitter_index, frame, on_fraction)`` for every (emitter, frame) pair with a
    positive overlap, ordered by emitter then frame; several intervals of one emitter in the
    same frame are summed.
    """
    lo = np.clip(np.floor(start), 0, frames).astype(np.int64)
    hi = np.clip(np.ceil(end), 0, frames).astype(np.int64)
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    rep = np.repeat(np.arange(idx.size), counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    k = lo[rep] + offs
    overlap = np.minimum(end[rep], k + 1.0) - np.maximum(start[rep], k.astype(np.float64))
    ok = overlap > 0
    em, k, overlap = idx[rep][ok], k[ok], overlap[ok]
    key = em * np.int64(frames) + k
    uniq, inv = np.unique(key, return_inverse=True)
    frac = np.bincount(inv, weights=overlap, minlength=uniq.size)
    return uniq // frames, uniq % frames, np.minimum(frac, 1.0)


def inside_image(xy: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Whether the points ``xy`` (…, 2) lie inside an image of ``(height, width)`` pixels."""
    h, w = image_shape
    x, y = xy[..., 0], xy[..., 1]
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


def make_records(table: EmitterTable, intervals: tuple[np.ndarray, np.ndarray, np.ndarray], frames: int,
                 image_shape: tuple[int, int]) -> Records:
    """Per-frame records (ordered by emitter, then frame)."""
    em, k, frac = bin_intervals(*intervals, frames)
    phot = (table.intensity[em] * frac).astype(np.float32)
    xyz = table.xyz[em].astype(np.float32)  # float32 numbers already: exact
    return Records(xyz=xyz, phot=phot, frame_ix=k.astype(np.int32), id=em.astype(np.int32),
                   inside=inside_image(xyz[:, :2], image_shape))
