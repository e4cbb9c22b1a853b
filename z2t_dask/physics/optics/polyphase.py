"""The exact PSF's element-wise passes around its FFTs, as compiled kernels equal bit for bit to NumPy.

Each kernel is a :class:`~z2t_dask.compiled.Kernel`: explicit loops (compiled by numba when it
is installed) and a NumPy definition that is the code :class:`~z2t_dask.physics.optics.psf.PupilPSF`
ran before the kernels existed, so the exact model's bytes do not depend on which one runs. The
loops fuse NumPy's passes (one read of each input instead of one per operation) but keep its
operations, their order and their float32 types:

- a float32 product ``a * b`` is computed as ``float32(float64(a) * float64(b))``: the float64
  product of two float32 values is exact, so its rounding to float32 is the correctly rounded
  float32 product NumPy computes, and no compiler can fuse it with a following addition into a
  multiply-add (the rounding to float32 sits between them);
- sums are float32 additions in NumPy's order (the fold adds row blocks first, then column
  blocks, then the real and imaginary parts).

:data:`defocus_phase`, :data:`masked_rows` and :data:`fold_intensity` serve the scalar model;
:data:`polyphase_scatter` and :data:`square_accumulate` the vectorial one (the ``f^2``
polyphase components of each pupil field).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = [
    "defocus_phase",
    "fold_intensity",
    "masked_rows",
    "polyphase_scatter",
    "pupil_energy",
    "square_accumulate",
]


# ---------------------------------------------------------------------- phase
def _defocus_phase_numpy(
    phi: np.ndarray, tmp: np.ndarray, defocus: np.ndarray, z_nm: np.ndarray, static: np.ndarray, add_static: bool
) -> None:
    """``phi += defocus * z_nm`` per emitter (float32 product, then sum), then ``phi += static``.

    Parameters
    ----------
    phi : ndarray, (b, n_r, n_c) float32, C-contiguous
        Pupil phase (rad) on the pupil rectangle; updated in place.
    tmp : ndarray, (b, n_r, n_c) float32
        Scratch (overwritten).
    defocus : ndarray, (n_r, n_c) float32
        Phase per nm of axial position (rad / nm).
    z_nm : ndarray, (b,) float32
        Axial position (nm) of each emitter (or depth above the coverslip, Gibson-Lanni).
    static : ndarray, (n_r, n_c) float32
        Depth-independent phase (rad), added when ``add_static``.
    add_static : bool
        Whether to add ``static``.
    """
    np.multiply(defocus[None], z_nm[:, None, None], out=tmp)
    phi += tmp
    if add_static:
        phi += static[None]


def _defocus_phase_loops(
    phi: np.ndarray, tmp: np.ndarray, defocus: np.ndarray, z_nm: np.ndarray, static: np.ndarray, add_static: bool
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, n_r, n_c = phi.shape
    for e in range(b):
        z = np.float64(z_nm[e])
        for r in range(n_r):
            p, d, s = phi[e, r], defocus[r], static[r]  # row views: the loops vectorise
            if add_static:
                for c in range(n_c):
                    p[c] = (p[c] + np.float32(np.float64(d[c]) * z)) + s[c]
            else:
                for c in range(n_c):
                    p[c] = p[c] + np.float32(np.float64(d[c]) * z)


def _defocus_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    a = np.zeros((1, 1), np.float32)
    cube = np.zeros((1, 1, 1), np.float32)
    return (cube, cube.copy(), a, np.zeros(1, np.float32), a.copy(), True)


#: Add the defocus (and static) phase to the pupil phase (see :func:`_defocus_phase_numpy`).
defocus_phase = Kernel(_defocus_phase_loops, _defocus_phase_numpy, _defocus_example)


# ---------------------------------------------------------------------- scalar FFT input
def _masked_rows_numpy(dst: np.ndarray, src: np.ndarray, mask2: np.ndarray) -> None:
    """The x-FFT input rows: ``src * mask2`` in their first ``2 n_c`` floats, zeros after.

    Only the first ``n_r`` rows of each emitter's window are written (the others stay zero).

    Parameters
    ----------
    dst : ndarray, (b, N, 2 N) float32, C-contiguous
        The float (re, im interleaved) view of the y-FFT input.
    src : ndarray, (b, n_r, 2 n_c) float32, C-contiguous
        The float view of the pupil field on the pupil rectangle.
    mask2 : ndarray, (n_r, 2 n_c) float32
        The pupil mask (0 or 1), repeated for the real and imaginary parts.
    """
    n_r, w = src.shape[1], src.shape[2]
    np.multiply(src, mask2[None], out=dst[:, :n_r, :w])
    dst[:, :n_r, w:] = 0


def _masked_rows_loops(
    dst: np.ndarray, src: np.ndarray, mask2: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, n_r, w = src.shape
    for e in range(b):
        for r in range(n_r):
            d, s, mk = dst[e, r], src[e, r], mask2[r]  # row views: the loops vectorise
            for c in range(w):
                d[c] = np.float32(np.float64(s[c]) * np.float64(mk[c]))
            d[w:] = 0.0


def _masked_rows_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    return (np.zeros((1, 2, 4), np.float32), np.zeros((1, 1, 2), np.float32), np.zeros((1, 2), np.float32))


#: Write the masked pupil field into the x-FFT input rows (see :func:`_masked_rows_numpy`).
masked_rows = Kernel(_masked_rows_loops, _masked_rows_numpy, _masked_rows_example)


# ---------------------------------------------------------------------- scalar fold
def _fold_intensity_numpy(inten: np.ndarray, hv: np.ndarray, xp: Any = np) -> None:
    """``|h|^2`` folded onto the ``m x m`` periodic grid: ``inten`` from the amplitude ``hv``.

    ``hv`` is squared in place; then its row blocks ``i m .. (i + 1) m`` are added to the first
    in order ``i = 1 .. f - 1``, then the column blocks likewise, then the squared real and
    imaginary parts (``f = N / m``).

    Parameters
    ----------
    inten : ndarray, (b, m, m) float32
        The folded intensity (written).
    hv : ndarray, (b, N, 2 N) float32, C-contiguous
        The float (re, im interleaved) view of the amplitude PSF; scratch (overwritten).
    xp : module
        Array module (NumPy; CuPy for the GPU path, which has no compiled loops).
    """
    m = inten.shape[1]
    f = hv.shape[1] // m
    xp.square(hv, out=hv)
    top = hv[:, :m]
    for i in range(1, f):
        xp.add(top, hv[:, i * m : (i + 1) * m], out=top)
    left = top[:, :, : 2 * m]
    for j in range(1, f):
        xp.add(left, top[:, :, 2 * j * m : 2 * (j + 1) * m], out=left)
    xp.add(left[:, :, 0::2], left[:, :, 1::2], out=inten)


def _fold_intensity_loops(
    inten: np.ndarray, hv: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, m = inten.shape[0], inten.shape[1]
    f = hv.shape[1] // m
    if f == 1:  # no fold: the squared pairs (a loop numba vectorises)
        for e in range(b):
            for y in range(m):
                for x in range(m):
                    a, d = np.float64(hv[e, y, 2 * x]), np.float64(hv[e, y, 2 * x + 1])
                    inten[e, y, x] = np.float32(a * a) + np.float32(d * d)
        return
    w = 2 * m
    top = np.empty(w, np.float32)
    left = np.empty(w, np.float32)
    for e in range(b):
        for y in range(m):
            for j in range(f):
                c0 = j * w
                for c in range(w):
                    v = np.float64(hv[e, y, c0 + c])
                    top[c] = np.float32(v * v)
                for i in range(1, f):
                    for c in range(w):
                        v = np.float64(hv[e, y + i * m, c0 + c])
                        top[c] = top[c] + np.float32(v * v)
                if j == 0:
                    for c in range(w):
                        left[c] = top[c]
                else:
                    for c in range(w):
                        left[c] = left[c] + top[c]
            for x in range(m):
                inten[e, y, x] = left[2 * x] + left[2 * x + 1]


def _fold_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._field_intensity` passes."""
    return (np.empty((1, 1, 1), np.float32), np.zeros((1, 2, 4), np.float32))


#: Square and fold the scalar amplitude PSF (see :func:`_fold_intensity_numpy`).
fold_intensity = Kernel(_fold_intensity_loops, _fold_intensity_numpy, _fold_example)


# ---------------------------------------------------------------------- vectorial polyphase
def _polyphase_scatter_numpy(pb: np.ndarray, field: np.ndarray, sr: int) -> None:
    """The ``f^2`` polyphase components of ``field`` into the first ``sr`` rows of ``pb``.

    ``pb[:, p f + q, k, l] = field[:, f k + p, f l + q]`` where that exists, else 0, for
    ``k < sr`` and every ``l``; rows ``sr ..`` of ``pb`` are not touched.

    Parameters
    ----------
    pb : ndarray, (b, f^2, m, m) complex64
        Polyphase buffer (``f = pb.shape[1] ** 0.5``).
    field : ndarray, (b, n_r, n_c) complex64
        Pupil field on the pupil rectangle.
    sr : int
        ``ceil(n_r / f)``: rows written.
    """
    f = int(round(pb.shape[1] ** 0.5))
    n_c = field.shape[2]
    sc = -(-n_c // f)
    for p in range(f):
        for q in range(f):
            sub = field[:, p::f, q::f]
            dest = pb[:, p * f + q, :sr, :sc]
            dest[:, : sub.shape[1], : sub.shape[2]] = sub
            dest[:, sub.shape[1] :, :] = 0
            dest[:, :, sub.shape[2] :] = 0
    pb[:, :, :sr, sc:] = 0


def _polyphase_scatter_loops(
    pb: np.ndarray, field: np.ndarray, sr: int
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, ff, _, m = pb.shape
    f = 1
    while f * f < ff:
        f += 1
    _, n_r, n_c = field.shape
    for e in range(b):
        for p in range(f):
            for q in range(f):
                nq = (n_c - q + f - 1) // f  # columns q, q + f, ... of the field
                for k in range(sr):
                    d = pb[e, p * f + q, k]  # row views: the loops vectorise
                    r = f * k + p
                    if r < n_r:
                        s = field[e, r]
                        for col in range(nq):
                            d[col] = s[f * col + q]
                        d[nq:] = 0
                    else:
                        d[:] = 0


def _scatter_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._polyphase_intensity` passes."""
    return (np.zeros((1, 4, 2, 2), np.complex64), np.zeros((1, 3, 3), np.complex64), 2)


#: Split a pupil field into its polyphase components (see :func:`_polyphase_scatter_numpy`).
polyphase_scatter = Kernel(_polyphase_scatter_loops, _polyphase_scatter_numpy, _scatter_example)


def _square_accumulate_numpy(acc: np.ndarray, hv: np.ndarray, accumulate: bool, inten: np.ndarray, final: bool) -> None:
    """``acc (+)= sum_j hv[:, j]^2`` in order ``j = 0 .. f^2 - 1``; with ``final``, ``inten = re + im``.

    Parameters
    ----------
    acc : ndarray, (b, m, 2 m) float32
        Squared (re, im) pairs summed over components: written (``accumulate`` false: the sum
        starts from the first component) or added to.
    hv : ndarray, (b, f^2, m, 2 m) float32, C-contiguous
        The float view of the components' amplitudes; scratch (overwritten).
    accumulate : bool
        Add to ``acc`` instead of overwriting it.
    inten : ndarray, (b, m, m) float32
        With ``final``: ``acc[..., 0::2] + acc[..., 1::2]`` (written).
    final : bool
        Whether to write ``inten``.
    """
    np.square(hv, out=hv)
    for j in range(hv.shape[1]):
        if j == 0 and not accumulate:
            acc[...] = hv[:, 0]
        else:
            acc += hv[:, j]
    if final:
        np.add(acc[:, :, 0::2], acc[:, :, 1::2], out=inten)


def _square_accumulate_loops(
    acc: np.ndarray, hv: np.ndarray, accumulate: bool, inten: np.ndarray, final: bool
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, ff, m, w = hv.shape
    for e in range(b):
        for y in range(m):
            a = acc[e, y]  # row views, components outside: the loops vectorise
            h = hv[e, 0, y]
            if accumulate:
                for c in range(w):
                    v = np.float64(h[c])
                    a[c] = a[c] + np.float32(v * v)
            else:
                for c in range(w):
                    v = np.float64(h[c])
                    a[c] = np.float32(v * v)
            for j in range(1, ff):
                h = hv[e, j, y]
                for c in range(w):
                    v = np.float64(h[c])
                    a[c] = a[c] + np.float32(v * v)
            if final:
                out = inten[e, y]
                for x in range(m):
                    out[x] = a[2 * x] + a[2 * x + 1]


def _accumulate_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._polyphase_intensity` passes."""
    return (
        np.zeros((1, 1, 2), np.float32),
        np.zeros((1, 4, 1, 2), np.float32),
        False,
        np.empty((1, 1, 1), np.float32),
        True,
    )


#: Square the polyphase amplitudes and add them up (see :func:`_square_accumulate_numpy`).
square_accumulate = Kernel(_square_accumulate_loops, _square_accumulate_numpy, _accumulate_example)


# ---------------------------------------------------------------------- pupil energy
def _pupil_energy_numpy(
    energy: np.ndarray, field: np.ndarray, weights: np.ndarray, weighted: bool, accumulate: bool
) -> None:
    """Per emitter ``sum_k (re_k^2 + im_k^2) [* weights_k]`` in float64 (NumPy's pairwise ``sum``).

    Parameters
    ----------
    energy : ndarray, (b,) float64
        Written (``accumulate`` false) or added to.
    field : ndarray, (b, n_r, n_c) complex64, C-contiguous
        Pupil field on the pupil rectangle.
    weights : ndarray, (n_r * n_c,) float64
        Per-sample weights (the summed squared moduli of the vectorial components).
    weighted : bool
        Whether to multiply by ``weights`` before summing.
    accumulate : bool
        Add the sums to ``energy`` instead of overwriting it.
    """
    v = field.reshape(field.shape[0], -1)
    if weighted:
        p64 = v.real.astype(np.float64) ** 2
        p64 += v.imag.astype(np.float64) ** 2
        p64 *= weights[None]
        s = np.sum(p64, axis=1)
    else:
        s = np.sum(v.real.astype(np.float64) ** 2 + v.imag.astype(np.float64) ** 2, axis=1)
    if accumulate:
        energy += s
    else:
        energy[...] = s


def _pupil_energy_loops(
    energy: np.ndarray, field: np.ndarray, weights: np.ndarray, weighted: bool, accumulate: bool
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, n_r, n_c = field.shape
    n = n_r * n_c
    p = np.empty(n, np.float64)
    stack = np.zeros((64, 3), np.int64)  # pairwise summation without recursion: (start, length, state)
    part = np.zeros(64, np.float64)  # finished partial sums
    for e in range(b):
        for r in range(n_r):
            row = field[e, r]
            for c in range(n_c):
                re, im = np.float64(row[c].real), np.float64(row[c].imag)
                v = re * re + im * im  # exact squares: one rounding, fused or not
                p[r * n_c + c] = v * weights[r * n_c + c] if weighted else v
        # NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src): below 8 terms a
        # plain loop from -0.0; up to 128 terms eight interleaved partial sums combined as
        # ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the remainder; above that the
        # sum of the two halves (the first a multiple of 8 long), each summed the same way.
        top, done = 0, 0
        stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 0
        while top >= 0:
            lo, m = stack[top, 0], stack[top, 1]
            if m <= 128:
                if m < 8:
                    res = -0.0
                    for i in range(m):
                        res = res + p[lo + i]
                else:
                    r0, r1, r2, r3 = p[lo], p[lo + 1], p[lo + 2], p[lo + 3]
                    r4, r5, r6, r7 = p[lo + 4], p[lo + 5], p[lo + 6], p[lo + 7]
                    i = 8
                    while i < m - (m % 8):
                        r0 += p[lo + i]
                        r1 += p[lo + i + 1]
                        r2 += p[lo + i + 2]
                        r3 += p[lo + i + 3]
                        r4 += p[lo + i + 4]
                        r5 += p[lo + i + 5]
                        r6 += p[lo + i + 6]
                        r7 += p[lo + i + 7]
                        i += 8
                    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                    while i < m:
                        res += p[lo + i]
                        i += 1
                part[done] = res
                done += 1
                top -= 1
                continue
            m2 = m // 2
            m2 -= m2 % 8
            state = stack[top, 2]
            stack[top, 2] = state + 1
            if state < 2:  # the first half, then the second
                stack[top + 1, 0] = lo if state == 0 else lo + m2
                stack[top + 1, 1] = m2 if state == 0 else m - m2
                stack[top + 1, 2] = 0
                top += 1
            else:  # both halves done: their sum
                part[done - 2] = part[done - 2] + part[done - 1]
                done -= 1
                top -= 1
        s = 0.0 + part[0]  # NumPy's add.reduce starts from its identity
        energy[e] = energy[e] + s if accumulate else s


def _energy_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    return (np.zeros(1), np.zeros((1, 1, 1), np.complex64), np.zeros(1), True, False)


#: The pupil energy (Parseval normaliser) of a vectorial field (see :func:`_pupil_energy_numpy`).
pupil_energy = Kernel(_pupil_energy_loops, _pupil_energy_numpy, _energy_example)
