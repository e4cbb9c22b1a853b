"""The ground truth of one sample: drawn in time segments, regenerated on demand, streamed.

A long full-chip sample (10,000 frames at ~40 emitters per frame) has ~10^5 emitters, ~4·10^5
records and ~10^5 × 21 Zernike coefficients. Holding them all made the memory of a write grow
with the number of frames. Here the truth of a long sample is a pure function of
``(config, seed, Zmap, segment)`` that is drawn one *time segment* at a time:

* the emitters are split by their first-on (activation) time into segments of
  :data:`TRUTH_SEGMENT_FRAMES` frames (the first and last segments also take the activation
  padding before frame 0 and after frame T - 1, see :func:`~z2t_dask.physics.emitters.activation_window`);
* the number of emitters of each segment is one multinomial draw over the segments with
  probabilities proportional to their activation windows (stream ``(PURPOSE_EMITTERS,)``), and
  segment ``k`` draws its emitters from its own stream ``(PURPOSE_EMITTERS, 1, k)`` with
  activation times uniform in its window. A multinomial split of i.i.d. uniform draws, each part
  uniform on its sub-window, is the same distribution as one draw over the whole movie;
* emitter ids run on from segment to segment, so the concatenated truth is ordered by id (then
  frame) like a single draw;
* a sample of at most :data:`TRUTH_SEGMENT_FRAMES` frames is one segment drawn from
  ``(PURPOSE_EMITTERS,)`` exactly as before segments existed (the same bytes).

Frame blocks ask for the records of their frames (:meth:`Truth.window`): only the segments whose
records reach those frames are generated, and a few are kept in a small per-process cache.
Writers stream the truth segment by segment (:meth:`Truth.parts`). Memory is then bounded by a
few segments, whatever the number of frames.

Every emitter and record also carries its depth above the coverslip (``depth_um``) and, with
``emitters.dipole = "fixed"``, its dipole orientation (``dipole_polar_rad``,
``dipole_azimuth_rad``; drawn from the emitter-id keyed stream ``PURPOSE_DIPOLE``, see
:func:`~z2t_dask.physics.emitters.dipole_angles`) as extra columns; the columns of isotropic
samples are drawn exactly as before.

A sample rendered from an existing ``emitters.h5`` holds its truth in memory
(:class:`InMemoryTruth`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from z2t_dask.caching import BuildOnceCache
from z2t_dask.config import SimulationConfig
from z2t_dask.physics.aberrations import AberrationField
from z2t_dask.physics.emitters import (
    EmitterTable,
    Records,
    activation_window,
    dipole_angles,
    make_records,
    sample_emitters,
    truth_columns,
)
from z2t_dask.physics.random_streams import PURPOSE_EMITTERS, stream
from z2t_dask.physics.species import emitter_species
from z2t_dask.physics.truth_parts import (
    RecordWindow,
    TruthPart,
    compact_records,
    concat_parts,
    join_windows,
    private_copy,
)

__all__ = [
    "TRUTH_SEGMENT_FRAMES",
    "SEGMENT_CACHE",
    "TruthPart",
    "RecordWindow",
    "Truth",
    "InMemoryTruth",
    "SegmentedTruth",
    "compact_records",
]

#: Frames of activation time per segment. Part of the random-stream definition (changing it
#: changes the emitters of samples longer than it), so it is not a setting.
TRUTH_SEGMENT_FRAMES = 1000
#: Segments kept per process (a frame block needs one or two; the writers walk them in order).
SEGMENT_CACHE = 3


class Truth:
    """The ground truth of a sample, as parts of consecutive emitters.

    Attributes
    ----------
    frames : int
        Frames T of the sample.
    n_emitters, n_records : int
        Totals over all parts.
    n_modes : int
        Zernike modes K per emitter.
    """

    frames: int
    n_emitters: int
    n_records: int
    n_modes: int

    def parts(self) -> Iterator[TruthPart]:
        """The parts in id order (generated one at a time where the truth is segmented)."""
        raise NotImplementedError

    def window(self, t0: int, t1: int) -> RecordWindow:
        """Records of frames ``[t0, t1)`` in render order (by frame, then emitter id)."""
        raise NotImplementedError

    def materialize(self) -> TruthPart:
        """The whole truth in memory (kept: later calls return the same part)."""
        raise NotImplementedError

    def token(self) -> str:
        """A deterministic identifier of the truth (for dask keys)."""
        raise NotImplementedError


class InMemoryTruth(Truth):
    """A truth given as arrays (e.g. an existing ``emitters.h5``): one part, records in any order."""

    def __init__(self, part: TruthPart, frames: int):
        fix = part.records.frame_ix
        if fix.size and (fix.min() < 0 or fix.max() >= frames):
            raise ValueError(f"records/frame_ix must lie in [0, {frames}), got [{fix.min()}, {fix.max()}]")
        if len(part.emitters) >= 2**31 or frames >= 2**31:
            raise ValueError("more than 2**31 - 1 emitters or frames are not supported")
        self.part = part
        self.frames = int(frames)
        self.n_emitters = len(part.emitters)
        self.n_records = len(part.records)
        self.n_modes = int(part.phase.shape[1])

    def parts(self) -> Iterator[TruthPart]:
        yield self.part

    def window(self, t0: int, t1: int) -> RecordWindow:
        return self.part.window(t0, t1, self.frames)

    def materialize(self) -> TruthPart:
        return self.part

    def token(self) -> str:
        from dask.base import tokenize

        p = self.part
        return tokenize(self.frames, *vars(p.emitters).values(), *vars(p.records).values(), p.phase, p.mag)


def _json_default(obj: Any) -> Any:
    """JSON stand-in of a non-JSON value of a token document (arrays by content, the rest by repr)."""
    if isinstance(obj, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return ["ndarray", obj.dtype.str, list(obj.shape), digest]
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


def _content_token(doc: Any) -> str:
    """Hash of a document of plain data (a config as a dict, numbers, lists; ~10x cheaper than dask's tokenize).

    Falls back to :func:`dask.base.tokenize` for documents JSON cannot order (mixed-type dict keys).
    """
    try:
        text = json.dumps(doc, sort_keys=True, default=_json_default)
    except (TypeError, ValueError):
        from dask.base import tokenize

        return str(tokenize(doc))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Segment:
    """Summary of one time segment (what is known without holding it)."""

    index: int
    window: tuple[float, float]  # activation times [lo, hi), frames
    n_emitters: int
    id0: int
    n_records: int
    first_frame: int  # frames of its records: [first_frame, last_frame]; empty: T, -1
    last_frame: int


class SegmentedTruth(Truth):
    """The truth of a simulated sample, drawn per time segment and regenerated on demand.

    Parameters
    ----------
    cfg : SimulationConfig
        The resolved config (emitters, image, Zmap scaling and fixed coefficients).
    seed : int
        The sample seed.
    field : AberrationField
        The per-emitter Zernike coefficients of a position
        (:func:`z2t_dask.engine.assembly.aberration_field`).
    segment_frames : int
        Frames of activation time per segment (default :data:`TRUTH_SEGMENT_FRAMES`; part of
        the random-stream definition).
    cache_segments : int
        Segments kept in memory per process (LRU).

    Notes
    -----
    Construction draws every segment once (without its aberrations) to learn its size and the
    frames its records reach, keeping nothing but that summary (a one-segment truth is kept).
    The object pickles without its cache, so each worker regenerates what it needs.
    """

    def __init__(
        self,
        cfg: SimulationConfig,
        seed: int,
        field: AberrationField,
        *,
        segment_frames: int = TRUTH_SEGMENT_FRAMES,
        cache_segments: int = SEGMENT_CACHE,
    ):
        self.cfg = cfg
        self.seed = int(seed)
        self.field = field
        self.segment_frames = int(segment_frames)
        self.cache_segments = max(1, int(cache_segments))
        self.frames = int(cfg.emitters.frames)
        self.n_modes = int(cfg.psf.n_modes)
        self._init_cache()
        self._pinned: TruthPart | None = None
        self._full: TruthPart | None = None
        windows = self._windows()
        self.n_segments = len(windows)
        if len(windows) == 1:
            counts = [int(cfg.emitters.num_emitters)]
        else:  # the segment sizes: one multinomial draw over the activation windows
            lengths = np.array([hi - lo for lo, hi in windows])
            counts = (
                stream(self.seed, PURPOSE_EMITTERS)
                .multinomial(int(cfg.emitters.num_emitters), lengths / lengths.sum())
                .tolist()
            )
        segments, id0 = [], 0
        for k, (win, n) in enumerate(zip(windows, counts)):
            table, records = self._draw(k, win, int(n), id0)
            fix = records.frame_ix
            segments.append(
                _Segment(
                    index=k,
                    window=win,
                    n_emitters=int(n),
                    id0=id0,
                    n_records=len(records),
                    first_frame=int(fix.min()) if fix.size else self.frames,
                    last_frame=int(fix.max()) if fix.size else -1,
                )
            )
            if len(windows) == 1:
                self._pinned = self._with_phase(table, records, id0)
            id0 += int(n)
        self.segments: tuple[_Segment, ...] = tuple(segments)
        self.n_emitters = id0
        self.n_records = sum(s.n_records for s in segments)

    # -- segments ---------------------------------------------------------------------------

    def _windows(self) -> list[tuple[float, float]]:
        """Activation windows of the segments: edges at multiples of ``segment_frames``."""
        lo, hi = activation_window(self.cfg.emitters)
        k = max(1, -(-self.frames // self.segment_frames))
        edges = [lo] + [float(i * self.segment_frames) for i in range(1, k)] + [hi]
        return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a] or [(lo, hi)]

    def _draw(self, index: int, window: tuple[float, float], n: int, id0: int) -> tuple[EmitterTable, Records]:
        """The ``n`` emitters of segment ``index`` (ids from ``id0``) and their records, without aberrations."""
        cfg = self.cfg
        # species kinetics overrides: each emitter's species by its id (None: the section's rates)
        species = emitter_species(self.seed, cfg, id0 + np.arange(n, dtype=np.int64))
        if self.n_segments == 1:
            rng = stream(self.seed, PURPOSE_EMITTERS)
            table, intervals = sample_emitters(cfg.emitters, rng, area_xy=cfg.area_xy, species=species)
        else:
            rng = stream(self.seed, PURPOSE_EMITTERS, 1, index)
            table, intervals = sample_emitters(
                cfg.emitters, rng, area_xy=cfg.area_xy, n=n, window=window, species=species
            )
        records = compact_records(make_records(table, intervals, self.frames, cfg.image_shape))
        if id0:
            table.id = table.id + id0
            records.id = records.id + np.int32(id0)
        dipole = dipole_angles(self.seed, table.id, cfg.emitters) if cfg.emitters.dipole == "fixed" else None
        truth_columns(table, records, focus_depth_um=cfg.focus_depth_um, dipole=dipole)
        return table, records

    def _draw_segment(self, seg: _Segment) -> TruthPart:
        """Segment ``seg`` with its aberrations."""
        return self._with_phase(*self._draw(seg.index, seg.window, seg.n_emitters, seg.id0), seg.id0)

    def _with_phase(self, table: EmitterTable, records: Records, id0: int) -> TruthPart:
        phase, mag = self.field(table.xyz[:, :2])
        return TruthPart(
            emitters=table,
            records=records,
            phase=np.ascontiguousarray(phase, np.float32),
            mag=None if mag is None else np.ascontiguousarray(mag, np.float32),
            id0=id0,
        )

    def segment(self, k: int) -> TruthPart:
        """The truth of segment ``k`` (from the cache, or drawn again: the same values)."""
        if self._pinned is not None:
            return self._pinned
        return self._cache.get(k, lambda: private_copy(self._draw_segment(self.segments[k]), self.frames))

    @property
    def cached_segments(self) -> int:
        """Segments held in this process's cache (0 after unpickling)."""
        return len(self._cache)

    @property
    def is_materialized(self) -> bool:
        """Whether the whole truth has been drawn and kept (:meth:`materialize`)."""
        return self._full is not None

    def cached_bytes(self) -> int:
        """Bytes held by the cached segments (0 for a pinned one-segment truth)."""
        return self._cache.nbytes

    # -- Truth ------------------------------------------------------------------------------

    def parts(self) -> Iterator[TruthPart]:
        if self._full is not None:
            yield self._full
            return
        for s in self.segments:
            yield self.segment(s.index)

    def window(self, t0: int, t1: int) -> RecordWindow:
        if self._pinned is not None:
            return self._pinned.window(t0, t1, self.frames)
        hit = [s for s in self.segments if s.first_frame < t1 and s.last_frame >= t0]
        if not hit:
            k = self.n_modes
            none = np.zeros(0, np.int32)
            return RecordWindow(
                frame_ix=none,
                ids=none,
                em=none,
                phot=np.zeros(0, np.float32),
                em_xyz=np.zeros((0, 3)),
                em_phase=np.zeros((0, k), np.float32),
                em_mag=None,
            )
        wins = [self.segment(s.index).window(t0, t1, self.frames) for s in hit]
        return wins[0] if len(wins) == 1 else join_windows(wins)

    def materialize(self) -> TruthPart:
        if self._pinned is not None:
            return self._pinned
        if self._full is None:
            parts = [self._draw_segment(s) for s in self.segments]
            self._full = concat_parts(parts, self.n_modes)
        return self._full

    def token(self) -> str:
        from z2t_dask.config import config_to_dict

        return _content_token(
            [
                config_to_dict(self.cfg),
                self.seed,
                self.field.describe(),
                self.segment_frames,
                [vars(s) for s in self.segments],
            ]
        )

    # -- pickling (no cache, no lock) -------------------------------------------------------

    def _init_cache(self) -> None:
        self._cache: BuildOnceCache[TruthPart] = BuildOnceCache(self.cache_segments)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_cache", "_full"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._full = None
        self._init_cache()
