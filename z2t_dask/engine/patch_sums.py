"""The photons of one frame region: every record's ``photons × PSF`` patch summed into the region.

:data:`add_patches` is a :class:`~z2t_dask.compiled.Kernel`: explicit loops (compiled by numba
when it is installed) and their NumPy definition, equal bit for bit. Contributions to a pixel
are summed in float64 in record order starting from ``0.0`` (each one the exact float64 product
of a float32 PSF value and float32 photons), then rounded to float32 and added to the float32
background. The order does not depend on the region, so a tile equals the same rectangle of the
whole frame bit for bit, and it does not depend on which of the three implementations ran.
"""

from __future__ import annotations

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = ["SMALL_REGION_PX", "add_patches"]

#: Regions (px) up to this size take one ``bincount`` over a padded canvas in the NumPy
#: definition; larger ones add patch by patch into the float64 scratch.
SMALL_REGION_PX = 256 * 256


def _add_patches_numpy(
    out: np.ndarray,
    acc: np.ndarray,
    psfs: np.ndarray,
    inv: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    phot: np.ndarray,
    a: int,
    b: int,
    y0: int,
    x0: int,
    bg: np.float32,
) -> None:
    """Write ``float32(Σ photons × PSF) + bg`` of records ``[a, b)`` into ``out`` (region ``(h, w)`` at ``(y0, x0)``).

    Parameters
    ----------
    out : ndarray, (h, w) float32, C-contiguous
        The region's photons (overwritten).
    acc : ndarray, (h, w) float64
        All-zero scratch; handed back all zero.
    psfs : ndarray, (U, ps, ps) float32
        PSF patches (fraction of the photons per px); ``ps`` odd or even, centre ``ps // 2``.
    inv : ndarray, (R,) int
        Row of ``psfs`` of each record.
    cy, cx : ndarray, (R,) int64
        Centre pixel of each record's patch (image px); a kept record's centre lies within
        ``ps // 2`` px of the region (so its patch overlaps it or touches its margin).
    phot : ndarray, (R,) float32
        Photons of each record.
    a, b : int
        The records of this frame, ``[a, b)``.
    y0, x0 : int
        Image coordinates of the region's first row and column (px).
    bg : float32
        Background photons per px.
    """
    h, w = out.shape
    out[...] = bg
    if b <= a:
        return
    ps = psfs.shape[-1]
    c = ps // 2
    if h * w <= SMALL_REGION_PX:  # one bincount over a canvas padded by 2c: every contribution lands in a bin
        m = 2 * c
        hp, wp = h + 2 * m, w + 2 * m
        offs = (np.arange(ps)[:, None] * wp + np.arange(ps)[None, :]).reshape(-1)
        base = (cy[a:b] - y0 + c) * wp + (cx[a:b] - x0 + c)  # patch corner on the canvas
        flat = base[:, None] + offs[None, :]
        weights = np.multiply(psfs[inv[a:b]].reshape(b - a, -1), phot[a:b, None], dtype=np.float64)
        # bincount adds each bin's contributions sequentially in input order, from 0.0
        canvas = np.bincount(flat.reshape(-1), weights=weights.reshape(-1), minlength=hp * wp).reshape(hp, wp)
        np.add(canvas[m : m + h, m : m + w], bg, out=out, dtype=np.float32, casting="same_kind")
        return
    boxes = []
    for r in range(a, b):
        ry, rx = int(cy[r]) - c - y0, int(cx[r]) - c - x0  # patch corner, region coordinates
        py0, px0, py1, px1 = max(0, -ry), max(0, -rx), min(ps, h - ry), min(ps, w - rx)
        if py1 <= py0 or px1 <= px0:
            continue
        dst = (slice(ry + py0, ry + py1), slice(rx + px0, rx + px1))
        acc[dst] += psfs[inv[r], py0:py1, px0:px1] * np.float64(phot[r])
        boxes.append(dst)
    for dst in boxes:  # overlapping boxes copy the same sums twice
        np.add(acc[dst], bg, out=out[dst], dtype=np.float32, casting="same_kind")
    for dst in boxes:
        acc[dst] = 0.0


def _add_patches_loops(
    out: np.ndarray,
    acc: np.ndarray,
    psfs: np.ndarray,
    inv: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    phot: np.ndarray,
    a: int,
    b: int,
    y0: int,
    x0: int,
    bg: np.float32,
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    h, w = out.shape
    ps = psfs.shape[1]
    c = ps // 2
    for y in range(h):
        for x in range(w):
            out[y, x] = bg
    touched = 0
    for r in range(a, b):
        k = inv[r]
        ry = cy[r] - c - y0
        rx = cx[r] - c - x0
        py0, px0 = max(0, -ry), max(0, -rx)
        py1, px1 = min(ps, h - ry), min(ps, w - rx)
        if py1 <= py0 or px1 <= px0:
            continue
        p = np.float64(phot[r])
        for i in range(py0, py1):
            for j in range(px0, px1):
                acc[ry + i, rx + j] += np.float64(psfs[k, i, j]) * p
        touched += (py1 - py0) * (px1 - px0)
    if touched >= h * w:  # dense: one pass over the region
        for y in range(h):
            for x in range(w):
                out[y, x] = np.float32(acc[y, x]) + bg
                acc[y, x] = 0.0
        return
    for r in range(a, b):  # sparse: the boxes only (overlaps copy the same sums twice)
        ry = cy[r] - c - y0
        rx = cx[r] - c - x0
        py0, px0 = max(0, -ry), max(0, -rx)
        py1, px1 = min(ps, h - ry), min(ps, w - rx)
        for i in range(py0, py1):
            for j in range(px0, px1):
                out[ry + i, rx + j] = np.float32(acc[ry + i, rx + j]) + bg
    for r in range(a, b):
        ry = cy[r] - c - y0
        rx = cx[r] - c - x0
        py0, px0 = max(0, -ry), max(0, -rx)
        py1, px1 = min(ps, h - ry), min(ps, w - rx)
        for i in range(py0, py1):
            for j in range(px0, px1):
                acc[ry + i, rx + j] = 0.0


def _example() -> tuple:
    """Arguments of the types :func:`z2t_dask.engine.render._frame_signal` passes (one record)."""
    i64 = np.zeros(1, np.int64)
    return (
        np.empty((2, 2), np.float32),
        np.zeros((2, 2), np.float64),
        np.zeros((1, 1, 1), np.float32),
        i64,
        i64,
        i64.copy(),
        np.zeros(1, np.float32),
        0,
        1,
        0,
        0,
        np.float32(0.0),
    )


#: Sum a frame's patches into its region (see :func:`_add_patches_numpy` for the arguments).
add_patches = Kernel(_add_patches_loops, _add_patches_numpy, _example)
