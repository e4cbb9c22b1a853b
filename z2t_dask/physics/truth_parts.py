"""Pieces of a sample's ground truth: a part (emitters, records, coefficients) and a frame window.

A :class:`TruthPart` is one time segment of a sample's truth (or all of it); a
:class:`RecordWindow` is what a frame block renders: the records of frames ``[t0, t1)`` with the
positions and coefficients of their emitters. Units: x, y in ROI pixels, z in µm, photons per
frame, Zernike coefficients in rad RMS (Noll order). :mod:`z2t_dask.physics.truth` draws them.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z2t_dask.physics.emitters import DIPOLE_COLUMNS, EmitterTable, Records

__all__ = [
    "RecordWindow",
    "TruthPart",
    "compact_records",
    "compact_window",
    "concat_parts",
    "join_windows",
    "private_copy",
    "unique_inverse",
]


def compact_records(records: Records) -> Records:
    """``records`` with float32 positions and photons and int32 frames and ids (values unchanged:
    positions and photons are float32 numbers, as stored in ``emitters.h5``); extra columns
    (``depth_um``, dipole angles) are kept."""
    n = len(records)
    for name, arr in (("frame_ix", records.frame_ix), ("id", records.id)):
        if n and (arr.min() < 0 or arr.max() >= 2**31):
            raise ValueError(f"records/{name} must lie in [0, 2**31), got [{arr.min()}, {arr.max()}]")
    return Records(
        xyz=np.asarray(records.xyz, np.float32),
        phot=np.asarray(records.phot, np.float32),
        frame_ix=np.asarray(records.frame_ix, np.int32),
        id=np.asarray(records.id, np.int32),
        inside=np.asarray(records.inside, bool),
        extra=dict(records.extra),
    )


def _dipoles(table: EmitterTable) -> np.ndarray | None:
    """``(N, 2)`` fixed-dipole angles (polar, azimuth; rad) of a table's emitters, or None (isotropic)."""
    if DIPOLE_COLUMNS[0] not in table.extra:
        return None
    return np.stack([np.asarray(table.extra[k], np.float64) for k in DIPOLE_COLUMNS], axis=1)


def unique_inverse(em: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(em, return_inverse=True)`` of row indices ``0 <= em < n_rows`` (the same arrays).

    A block's records refer to a few thousand rows: marking them in a table of ``n_rows`` flags
    costs a fraction of :func:`numpy.unique`'s sort. Larger tables (a long sample's segment read
    by a short block) take the sort.
    """
    if n_rows > 4 * em.size + 4096:
        uniq, inv = np.unique(em, return_inverse=True)
        return uniq, inv.reshape(-1)
    seen = np.zeros(n_rows, bool)
    seen[em] = True
    uniq = np.flatnonzero(seen)
    rank = np.cumsum(seen) - 1  # row -> its position in uniq
    return uniq.astype(em.dtype, copy=False), rank[em]


@dataclass
class RecordWindow:
    """The records of frames ``[t0, t1)`` in render order, with the emitters they refer to.

    Records are ordered by frame, then by their order in the truth (emitter id for simulated
    samples): the order a pixel's contributions are summed in, whatever the chunking.
    """

    frame_ix: np.ndarray  # (R,) int32, non-decreasing
    ids: np.ndarray  # (R,) emitter id of each record
    em: np.ndarray  # (R,) row of em_* of each record
    phot: np.ndarray  # (R,) float32 photons in the frame
    em_xyz: np.ndarray  # (U, 3) x, y px (ROI), z µm
    em_phase: np.ndarray  # (U, K) rad, Noll
    em_mag: np.ndarray | None  # (U, K) or None
    em_dipole: np.ndarray | None = None  # (U, 2) fixed-dipole (polar, azimuth) rad, or None: isotropic


@dataclass
class TruthPart:
    """The truth of a run of consecutive emitters (one time segment, or a whole sample).

    Attributes
    ----------
    emitters : EmitterTable
        Per-emitter truth; ``id`` are the sample's ids (``id0 .. id0 + n - 1``).
    records : Records
        Per-(emitter, frame) truth, compact dtypes, ``id`` the sample's ids.
    phase, mag : ndarray (n, K) float32, mag or None
        Per-emitter Zernike coefficients (Noll, rad RMS).
    id0 : int
        Id of the first emitter.
    """

    emitters: EmitterTable
    records: Records
    phase: np.ndarray
    mag: np.ndarray | None
    id0: int = 0
    _index: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def frame_index(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """``(order, offsets)``: records by frame (stable) and frame ``t``'s slice ``offsets[t]:offsets[t+1]``."""
        if self._index is None:
            fix = self.records.frame_ix
            order = np.argsort(fix, kind="stable").astype(np.int32)
            offsets = np.concatenate([[0], np.cumsum(np.bincount(fix, minlength=frames))]).astype(np.int64)
            self._index = (order, offsets)
        return self._index

    def window(self, t0: int, t1: int, frames: int) -> RecordWindow:
        """Records of frames ``[t0, t1)``; ``em`` indexes this part's own emitter arrays (no copies)."""
        order, offsets = self.frame_index(frames)
        sel = order[offsets[t0] : offsets[t1]]
        ids = self.records.id[sel]
        em = ids - np.int32(self.id0) if self.id0 else ids
        return RecordWindow(
            frame_ix=self.records.frame_ix[sel],
            ids=ids,
            em=em,
            phot=self.records.phot[sel],
            em_xyz=self.emitters.xyz,
            em_phase=self.phase,
            em_mag=self.mag,
            em_dipole=_dipoles(self.emitters),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays of this part."""
        arrays = [*vars(self.emitters).values(), *vars(self.records).values(), self.phase, self.mag]
        arrays += [*self.emitters.extra.values(), *self.records.extra.values()]
        if self._index is not None:
            arrays += list(self._index)
        return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))


def private_copy(part: TruthPart, frames: int) -> TruthPart:
    """``part`` (with its frame index) copied into one anonymous memory mapping of its own.

    Segments are drawn inside render tasks, between the tasks' large temporaries; left in the
    malloc heap, each long-lived segment sits among freed blocks and keeps the heap from
    shrinking, so the resident memory of a long write rose by ~20 MiB per new segment until the
    cache was full (measured: W3 at 10,000 frames). In a mapping of its own, a segment is
    returned to the OS whole when it leaves the cache.
    """
    order, offsets = part.frame_index(frames)
    arrays = {
        "e": vars(part.emitters),
        "r": vars(part.records),
        "ee": part.emitters.extra,
        "re": part.records.extra,
        "x": {"phase": part.phase, "mag": part.mag, "order": order, "offsets": offsets},
    }
    flat = [(g, k, a) for g, cols in arrays.items() for k, a in cols.items() if isinstance(a, np.ndarray)]
    sizes = [-(-a.nbytes // 64) * 64 for _, _, a in flat]
    buf = np.frombuffer(mmap.mmap(-1, max(1, sum(sizes))), np.uint8)
    copies: dict[str, dict[str, Any]] = {g: dict(cols) for g, cols in arrays.items()}
    off = 0
    for (g, k, a), size in zip(flat, sizes):
        view = buf[off : off + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        copies[g][k] = view
        off += size
    x = copies["x"]
    return TruthPart(
        emitters=EmitterTable(**{**copies["e"], "extra": copies["ee"]}),
        records=Records(**{**copies["r"], "extra": copies["re"]}),
        phase=x["phase"],
        mag=x["mag"],
        id0=part.id0,
        _index=(x["order"], x["offsets"]),
    )


def compact_window(win: RecordWindow) -> RecordWindow:
    """``win`` with only the emitters its records refer to (rows in id order)."""
    uniq, inv = np.unique(win.em, return_inverse=True)
    return RecordWindow(
        frame_ix=win.frame_ix,
        ids=win.ids,
        em=inv.reshape(-1),
        phot=win.phot,
        em_xyz=win.em_xyz[uniq],
        em_phase=win.em_phase[uniq],
        em_mag=None if win.em_mag is None else win.em_mag[uniq],
        em_dipole=None if win.em_dipole is None else win.em_dipole[uniq],
    )


def _concat_mags(mags: list[tuple[np.ndarray | None, int]], n_modes: int) -> np.ndarray | None:
    """Magnitude coefficients of consecutive parts ``(mag or None, rows)``: None if all are None,
    else one array with zeros for the parts without."""
    if all(m is None for m, _ in mags):
        return None
    return np.concatenate([np.zeros((n, n_modes), np.float32) if m is None else m for m, n in mags])


def join_windows(wins: list[RecordWindow]) -> RecordWindow:
    """One window of the windows of consecutive parts: by frame, then part (id) order."""
    wins = [compact_window(w) for w in wins]
    base = np.cumsum([0] + [w.em_xyz.shape[0] for w in wins])
    frame_ix = np.concatenate([w.frame_ix for w in wins])
    ids = np.concatenate([w.ids for w in wins])
    em = np.concatenate([w.em + b for w, b in zip(wins, base)])
    phot = np.concatenate([w.phot for w in wins])
    order = np.argsort(frame_ix, kind="stable")
    mag = _concat_mags([(w.em_mag, w.em_xyz.shape[0]) for w in wins], wins[0].em_phase.shape[1])
    return RecordWindow(
        frame_ix=frame_ix[order],
        ids=ids[order],
        em=em[order],
        phot=phot[order],
        em_xyz=np.concatenate([w.em_xyz for w in wins]),
        em_phase=np.concatenate([w.em_phase for w in wins]),
        em_mag=mag,
        em_dipole=None if wins[0].em_dipole is None else np.concatenate([w.em_dipole for w in wins]),
    )


def concat_parts(parts: list[TruthPart], n_modes: int) -> TruthPart:
    """One part holding all of ``parts`` (consecutive ids) in order."""
    if len(parts) == 1:
        return parts[0]
    e = [p.emitters for p in parts]
    r = [p.records for p in parts]
    em_cols: dict[str, Any] = {k: np.concatenate([getattr(t, k) for t in e]) for k in EmitterTable.column_names()}
    rec_cols: dict[str, Any] = {k: np.concatenate([getattr(t, k) for t in r]) for k in Records.column_names()}
    em_extra = {k: np.concatenate([t.extra[k] for t in e]) for k in e[0].extra}
    rec_extra = {k: np.concatenate([t.extra[k] for t in r]) for k in r[0].extra}
    table = EmitterTable(**em_cols, extra=em_extra)
    records = Records(**rec_cols, extra=rec_extra)
    mag = _concat_mags([(p.mag, len(p.emitters)) for p in parts], n_modes)
    return TruthPart(
        emitters=table, records=records, phase=np.concatenate([p.phase for p in parts]), mag=mag, id0=parts[0].id0
    )
