"""The fast library's interpolation: each emitter's PSF as a weighted sum of table rows.

:data:`weighted_rows` is a :class:`~z2t_dask.compiled.Kernel` (loops compiled by numba when
it is installed, and their NumPy definition; equal bit for bit). An emitter's taps are summed in
float64 in tap order, starting from ``0.0``; each term is the exact float64 product of a float32
weight and a float32 table value, so the sum rounds the same way on any CPU, with or without
fused multiply-adds, and whatever other emitters are interpolated with it. The result is
rounded once to float32.
"""

from __future__ import annotations

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = ["weighted_rows"]

#: Emitters the NumPy definition sums at a time (bounds its float64 temporaries to ~2 MiB).
_CHUNK = 256


def _weighted_rows_numpy(out: np.ndarray, idx: np.ndarray, rows: np.ndarray, w: np.ndarray, tab: np.ndarray) -> None:
    """``out[idx[e]] = float32(Σ_k float64(w[e, k]) · float64(tab[rows[e, k]]))``, k in order, from 0.0.

    Parameters
    ----------
    out : ndarray, (N, P) float32
        Flattened PSF patches; rows ``idx`` are written.
    idx : ndarray, (M,) int
        Output row of each emitter.
    rows : ndarray, (M, taps) int
        Table rows of each emitter's taps.
    w : ndarray, (M, taps) float32
        The taps' weights.
    tab : ndarray, (R, P) float32
        The table (flattened PSF patches).
    """
    for e0 in range(0, idx.size, _CHUNK):
        sl = slice(e0, e0 + _CHUNK)
        r, wk = rows[sl], w[sl].astype(np.float64)
        acc = np.zeros((r.shape[0], tab.shape[1]), np.float64)
        for k in range(r.shape[1]):
            acc += np.multiply(wk[:, k, None], tab[r[:, k]], dtype=np.float64)
        out[idx[sl]] = acc


def _weighted_rows_loops(
    out: np.ndarray, idx: np.ndarray, rows: np.ndarray, w: np.ndarray, tab: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    p = tab.shape[1]
    acc = np.empty(p, np.float64)
    for e in range(idx.shape[0]):
        for q in range(p):
            acc[q] = 0.0
        for k in range(rows.shape[1]):
            row = rows[e, k]
            wk = np.float64(w[e, k])
            for q in range(p):
                acc[q] += wk * np.float64(tab[row, q])
        o = idx[e]
        for q in range(p):
            out[o, q] = np.float32(acc[q])


def _example() -> tuple:
    """Arguments of the types :meth:`PSFLibrary._fast_patches` passes (one emitter, one tap)."""
    return (
        np.empty((1, 1), np.float32),
        np.zeros(1, np.intp),
        np.zeros((1, 1), np.intp),
        np.zeros((1, 1), np.float32),
        np.zeros((1, 1), np.float32),
    )


#: Interpolate emitters from table rows (see :func:`_weighted_rows_numpy` for the arguments).
weighted_rows = Kernel(_weighted_rows_loops, _weighted_rows_numpy, _example)
