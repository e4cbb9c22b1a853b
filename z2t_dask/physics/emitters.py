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
* Depth: ``depth_um`` = ``focus_depth_um + z``, the emitter's height above the coverslip in µm
  (``optical.focus_depth_um``, resolved: :attr:`~z2t_dask.config.SimulationConfig.focus_depth_um`).
* Fixed dipoles (``emitters.dipole = "fixed"``): ``dipole_polar_rad`` is the polar angle ``theta``
  from +z (the optical axis, away from the objective), folded to ``[0, pi/2]`` (a dipole is axial:
  ``mu`` and ``-mu`` are the same); ``dipole_azimuth_rad`` is the azimuth ``phi`` from +x (columns)
  towards +y (rows) in ``[0, 2 pi)``; the unit vector is ``(sin t cos p, sin t sin p, cos t)``
  (:func:`dipole_vectors`). Drawn uniformly on the sphere (:func:`dipole_angles`) unless the
  config gives the angles. Both are extra columns of the emitter table and the records (float32
  values), like ``depth_um``.

Two photophysics models:

``single`` (the original tool's model and parameters)
    one on-interval ``[t0, t0 + on_time)`` per emitter, ``t0 ~ U[-3τ, T - 1 + 3τ)``,
    ``on_time ~ Exp(τ)``.
``blinking``
    activation at ``t0 ~ U[-pad, T - 1 + pad)`` with ``pad`` three mean emitter lifetimes
    (steady-state start: emitters already cycling when the movie starts), then alternating on /
    dark periods with exponential durations; while
    on, the emitter goes dark at rate ``1/t_on`` or bleaches at rate ``1/t_bleach`` (competing
    exponentials); bleached is final. On-time is integrated exactly within each frame, including
    several transitions inside one frame.

All randomness comes from the passed :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from z2t_dask.config import EmittersConfig
from z2t_dask.physics.random_streams import PURPOSE_DIPOLE, stream
from z2t_dask.physics.species import species_kinetics

__all__ = [
    "DEPTH_COLUMN",
    "DIPOLE_BLOCK",
    "DIPOLE_COLUMNS",
    "EmitterTable",
    "Records",
    "activation_window",
    "dipole_angles",
    "dipole_vectors",
    "truth_columns",
    "sample_emitters",
    "on_intervals",
    "bin_intervals",
    "inside_image",
    "make_records",
]


#: Extra column of the emitter table and the records: depth above the coverslip (µm, float32 values).
DEPTH_COLUMN = "depth_um"
#: Extra columns of fixed dipoles: polar and azimuth angle (rad, float32 values).
DIPOLE_COLUMNS = ("dipole_polar_rad", "dipole_azimuth_rad")
#: Emitter ids per dipole-orientation stream ``(PURPOSE_DIPOLE, block)``; part of the stream definition.
DIPOLE_BLOCK = 4096


class _Columns:
    """Column access by attribute and by key (``table.xyz`` is ``table["xyz"]``), as a dict of arrays.

    ``len(table)`` is the number of rows. Columns beyond the standard ones (``depth_um``, dipole
    angles, those a file holds) are in ``extra`` and reachable by key and by attribute.
    """

    extra: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        extra = self.__dict__.get("extra")  # absent while unpickling: no recursion
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        """The standard columns of this table type (without ``extra``)."""
        return tuple(f.name for f in fields(cls) if f.name != "extra")  # type: ignore[arg-type]

    def keys(self) -> list[str]:
        """Column names: the standard ones, then any extra ones."""
        return [*self.column_names(), *self.extra]

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self.column_names():
            return getattr(self, key)
        try:
            return self.extra[key]
        except KeyError:
            raise KeyError(f"no column {key!r}; columns: {', '.join(self.keys())}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.column_names() or key in self.extra

    def get(self, key: str, default: Any = None) -> Any:
        """The column ``key``, or ``default``."""
        return self[key] if key in self else default

    def items(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` of every column."""
        return [(k, self[k]) for k in self.keys()]

    def as_dict(self) -> dict[str, np.ndarray]:
        """Column name -> array (standard columns, then extra ones)."""
        return dict(self.items())

    @classmethod
    def _split(cls, data: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        names = set(cls.column_names())
        known = {k: np.asarray(v) for k, v in data.items() if k in names}
        extra = {k: np.asarray(v) for k, v in data.items() if k not in names}
        return known, extra


@dataclass(eq=False)
class EmitterTable(_Columns):
    """Per-emitter ground truth (the original ``emitters/*`` group).

    The same type for a simulated sample (``simulate(...).emitters``) and a sample folder read
    back (``open_sample(...).emitters``); columns by attribute or key.

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
    extra : dict of str -> ndarray
        Further columns of a file (none for simulated emitters).
    """

    xyz: np.ndarray
    intensity: np.ndarray
    t0: np.ndarray
    on_time: np.ndarray
    id: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EmitterTable:
        """A table from columns read from a file; ``id`` defaults to ``0..N-1``, the others to zeros."""
        known, extra = cls._split(data)
        if "xyz" not in known:
            raise KeyError("emitters: no 'xyz' column")
        n = known["xyz"].shape[0]
        return cls(
            xyz=known["xyz"],
            intensity=known.get("intensity", np.zeros(n)),
            t0=known.get("t0", np.zeros(n)),
            on_time=known.get("on_time", np.zeros(n)),
            id=known.get("id", np.arange(n)),
            extra=extra,
        )


@dataclass(eq=False)
class Records(_Columns):
    """Per-(emitter, frame) ground truth (the original ``records/*`` group).

    The same type for a simulated sample (``simulate(...).records``) and a sample folder read
    back (``open_sample(...).records``); columns by attribute or key.

    Ordered by emitter id, then frame (the original order). ``inside`` says whether the emitter
    centre lies inside the image (:func:`inside_image`). Simulated records are compact: ``xyz``
    (M, 3) and ``phot`` (M,) float32 (the values ``emitters.h5`` stores), ``frame_ix`` and
    ``id`` (M,) int32 (stored as int64), ``inside`` bool.
    """

    xyz: np.ndarray
    phot: np.ndarray
    frame_ix: np.ndarray
    id: np.ndarray
    inside: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], image_shape: tuple[int, int] | None = None) -> Records:
        """Records from columns read from a file.

        ``inside`` is computed with :func:`inside_image` when the file lacks it (the original
        tool's files), or all True when ``image_shape`` is unknown.
        """
        known, extra = cls._split(data)
        missing = [k for k in ("xyz", "phot", "frame_ix", "id") if k not in known]
        if missing:
            raise KeyError(f"records: missing column(s) {', '.join(missing)}")
        inside = known.get("inside")
        if inside is None:
            inside = (
                inside_image(known["xyz"][:, :2], image_shape)
                if image_shape is not None
                else np.ones(len(known["frame_ix"]), bool)
            )
        return cls(
            xyz=known["xyz"],
            phot=known["phot"],
            frame_ix=known["frame_ix"],
            id=known["id"],
            inside=np.asarray(inside, bool),
            extra=extra,
        )

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
    raise ValueError(
        f"emitters.intensity_mu={mu}, intensity_sigma={sigma}: almost no draws reach intensity_min={lo} photons"
    )


def activation_window(cfg: EmittersConfig) -> tuple[float, float]:
    """Range ``[lo, hi)`` (frames) of the uniform first-on / activation time of an emitter.

    ``single``: ``[-3τ, T - 1 + 3τ)``; ``blinking``: ``[-pad, T - 1 + pad)`` with ``pad`` three
    mean activation-to-bleach lifetimes (emitters already cycling when the movie starts).
    Species kinetics overrides widen the padding to the longest-lived species (steady state at frame 0).
    """
    subs = species_kinetics(cfg)
    frames = int(cfg.frames)
    if cfg.model == "single":
        pad = 3.0 * max(float(c.lifetime_avg) for c in (cfg, *(subs or ())))
    else:
        pad = 3.0 * max(_blinking_rates(c)[3] for c in (cfg, *(subs or ())))
    return -pad, frames - 1 + pad


def _blinking_rates(cfg: EmittersConfig) -> tuple[float, float, float, float]:
    """``(mean_on, p_bleach, t_dark, lifetime)`` of the blinking model, frames."""
    k_dark, k_bleach = 1.0 / cfg.t_on, 1.0 / cfg.t_bleach
    mean_on = 1.0 / (k_dark + k_bleach)
    p_bleach = k_bleach / (k_dark + k_bleach)
    lifetime = (mean_on + cfg.t_dark) / p_bleach - cfg.t_dark  # mean activation-to-bleach time, frames
    return mean_on, p_bleach, float(cfg.t_dark), lifetime


def sample_emitters(
    cfg: EmittersConfig,
    rng: np.random.Generator,
    *,
    area_xy: tuple[float, float],
    n: int | None = None,
    window: tuple[float, float] | None = None,
    species: np.ndarray | None = None,
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
    species
        Species index (n,) of each emitter when species override the kinetics (see :func:`on_intervals`).

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
    idx, start, end = on_intervals(cfg, rng, n, window=window, species=species)
    on_time = np.bincount(idx, weights=end - start, minlength=n)
    first = np.full(n, np.inf)
    np.minimum.at(first, idx, start)
    if cfg.model == "single":
        t0 = start.copy()  # one interval per emitter, in id order
    else:
        t0 = np.where(np.isfinite(first), first, 0.0)
    table = EmitterTable(
        xyz=xyz,
        intensity=intensity,
        t0=t0.astype(np.float32).astype(np.float64),
        on_time=on_time.astype(np.float32).astype(np.float64),
        id=np.arange(n, dtype=np.int64),
    )
    return table, (idx, start, end)


def on_intervals(
    cfg: EmittersConfig,
    rng: np.random.Generator,
    n: int,
    *,
    window: tuple[float, float] | None = None,
    species: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """On-intervals ``[start, end)`` in frames for ``n`` emitters, sorted by emitter then time.

    First-on (activation) times are uniform in ``window`` (default :func:`activation_window`).
    ``species`` (n,) gives each emitter's species where species override the kinetics: the rates
    are then per-emitter arrays (the same stream draws as scalar rates); without it, or without
    overrides, the section's scalar rates.
    """
    frames = int(cfg.frames)
    lo, hi = activation_window(cfg) if window is None else window
    subs = None if species is None else species_kinetics(cfg)
    sp = np.asarray(species if subs is not None else [], np.int64)
    if cfg.model == "single":
        tau: Any = float(cfg.lifetime_avg) if subs is None else np.array([c.lifetime_avg for c in subs], float)[sp]
        t0 = rng.uniform(lo, hi, n)
        on = rng.exponential(tau, n)
        # float32 round trip: the intervals written to emitters.h5 are the ones binned
        t0 = t0.astype(np.float32).astype(np.float64)
        on = on.astype(np.float32).astype(np.float64)
        return np.arange(n, dtype=np.int64), t0, t0 + on
    # blinking: competing exits from ON (dark at 1/t_on, bleach at 1/t_bleach); activations start
    # early enough (activation_window) that emitters are cycling when the movie starts
    rates: Any = [_blinking_rates(c)[:3] for c in (subs or (cfg,))]  # per species: (mean_on, p_bleach, t_dark)
    mean_on, p_bleach, t_dark = rates[0] if subs is None else [np.array(v, float)[sp] for v in zip(*rates)]
    t = rng.uniform(lo, hi, n)
    alive = np.arange(n, dtype=np.int64)
    idx_parts, s_parts, e_parts = [], [], []
    while alive.size:
        on = rng.exponential(_at(mean_on, alive), alive.size)
        bleach = rng.random(alive.size) < _at(p_bleach, alive)
        dark = rng.exponential(_at(t_dark, alive), alive.size)
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


def _at(rate: Any, alive: np.ndarray) -> Any:
    """A scalar rate as is, a per-emitter array at the rows ``alive``."""
    return rate if np.ndim(rate) == 0 else rate[alive]


def bin_intervals(
    idx: np.ndarray, start: np.ndarray, end: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def dipole_angles(seed: int, ids: np.ndarray, cfg: EmittersConfig) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-dipole orientations ``(polar, azimuth)`` in rad (float64 arrays of float32 values) of emitters ``ids``.

    Uniform on the sphere: ``cos(theta)`` folded to ``[0, 1]`` is uniform (so ``theta`` lies in
    ``[0, pi/2]``, mean ``|cos theta|`` = 1/2) and ``phi`` uniform in ``[0, 2 pi)``. Emitter ``i``
    takes entry ``i mod DIPOLE_BLOCK`` of the stream ``(seed, PURPOSE_DIPOLE, i // DIPOLE_BLOCK)``
    (``DIPOLE_BLOCK`` values of ``cos theta``, then as many of ``phi / 2 pi``): an emitter's
    orientation depends on the seed and its id only, never on segments, chunks or other emitters.
    ``cfg.dipole_polar_deg`` / ``dipole_azimuth_deg`` (degrees), when given, replace the draws
    (the azimuth taken modulo 360).
    """
    ids = np.asarray(ids, np.int64).reshape(-1)
    polar = np.empty(ids.size)
    azimuth = np.empty(ids.size)
    block = ids // DIPOLE_BLOCK
    for b in np.unique(block):
        rng = stream(seed, PURPOSE_DIPOLE, int(b))
        cos_t = rng.random(DIPOLE_BLOCK)
        turn = rng.random(DIPOLE_BLOCK)
        sel = np.flatnonzero(block == b)
        k = ids[sel] - int(b) * DIPOLE_BLOCK
        polar[sel] = np.arccos(cos_t[k])
        azimuth[sel] = 2.0 * np.pi * turn[k]
    if cfg.dipole_polar_deg is not None:
        polar[:] = np.deg2rad(float(cfg.dipole_polar_deg))
    if cfg.dipole_azimuth_deg is not None:
        azimuth[:] = np.deg2rad(float(cfg.dipole_azimuth_deg) % 360.0)
    return polar.astype(np.float32).astype(np.float64), azimuth.astype(np.float32).astype(np.float64)


def dipole_vectors(polar: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Unit dipole vectors ``(N, 3)`` float64 ``(sin t cos p, sin t sin p, cos t)`` of angles in rad."""
    t = np.asarray(polar, np.float64)
    p = np.asarray(azimuth, np.float64)
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)


def truth_columns(
    table: EmitterTable, records: Records, *, focus_depth_um: float, dipole: tuple[np.ndarray, np.ndarray] | None
) -> None:
    """Add the depth (and fixed-dipole angles) as extra columns of ``table`` and ``records``, in place.

    ``depth_um`` = ``focus_depth_um + z`` (µm above the coverslip), float32 values (float64 in the
    table, as ``xyz``); ``dipole`` = ``(polar, azimuth)`` rad per emitter (row of ``table``), copied
    to each record of the emitter. Records refer to emitters by ``id``, ``table.id`` being
    consecutive from ``table.id[0]``.
    """
    f = np.float64(focus_depth_um)
    table.extra[DEPTH_COLUMN] = (f + table.xyz[:, 2]).astype(np.float32).astype(np.float64)
    records.extra[DEPTH_COLUMN] = (f + np.asarray(records.xyz[:, 2], np.float64)).astype(np.float32)
    if dipole is None:
        return
    row = np.asarray(records.id, np.int64) - (int(table.id[0]) if len(table) else 0)
    for name, values in zip(DIPOLE_COLUMNS, dipole):
        table.extra[name] = np.asarray(values, np.float64)
        records.extra[name] = np.asarray(values, np.float64)[row].astype(np.float32)


def make_records(
    table: EmitterTable, intervals: tuple[np.ndarray, np.ndarray, np.ndarray], frames: int, image_shape: tuple[int, int]
) -> Records:
    """Per-frame records (ordered by emitter, then frame)."""
    em, k, frac = bin_intervals(*intervals, frames)
    phot = (table.intensity[em] * frac).astype(np.float32)
    xyz = table.xyz[em].astype(np.float32)  # float32 numbers already: exact
    return Records(
        xyz=xyz,
        phot=phot,
        frame_ix=k.astype(np.int32),
        id=em.astype(np.int32),
        inside=inside_image(xyz[:, :2], image_shape),
    )
