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

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = ["defocus_phase", "fold_intensity", "masked_rows", "polyphase_scatter", "square_accumulate"]


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
            for c in range(n_c):
                v = phi[e, r, c] + np.float32(np.float64(defocus[r, c]) * z)
                if add_static:
                    v = v + static[r, c]
                phi[e, r, c] = v


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
    wd = dst.shape[2]
    for e in range(b):
        for r in range(n_r):
            for c in range(w):
                dst[e, r, c] = np.float32(np.float64(src[e, r, c]) * np.float64(mask2[r, c]))
            for c in range(w, wd):
                dst[e, r, c] = 0.0


def _masked_rows_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    return (np.zeros((1, 2, 4), np.float32), np.zeros((1, 1, 2), np.float32), np.zeros((1, 2), np.float32))


#: Write the masked pupil field into the x-FFT input rows (see :func:`_masked_rows_numpy`).
masked_rows = Kernel(_masked_rows_loops, _masked_rows_numpy, _masked_rows_example)


# ---------------------------------------------------------------------- scalar fold
def _fold_intensity_numpy(inten: np.ndarray, hv: np.ndarray) -> None:
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
    """
    m = inten.shape[1]
    f = hv.shape[1] // m
    np.square(hv, out=hv)
    top = hv[:, :m]
    for i in range(1, f):
        np.add(top, hv[:, i * m : (i + 1) * m], out=top)
    left = top[:, :, : 2 * m]
    for j in range(1, f):
        np.add(left, top[:, :, 2 * j * m : 2 * (j + 1) * m], out=left)
    np.add(left[:, :, 0::2], left[:, :, 1::2], out=inten)


def _fold_intensity_loops(
    inten: np.ndarray, hv: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, m = inten.shape[0], inten.shape[1]
    f = hv.shape[1] // m
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
                j = p * f + q
                for k in range(sr):
                    r = f * k + p
                    if r < n_r:
                        for col in range(m):
                            c = f * col + q
                            if c < n_c:
                                pb[e, j, k, col] = field[e, r, c]
                            else:
                                pb[e, j, k, col] = 0
                    else:
                        for col in range(m):
                            pb[e, j, k, col] = 0


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
            for c in range(w):
                v = np.float64(hv[e, 0, y, c])
                s = np.float32(v * v)
                if accumulate:
                    s = acc[e, y, c] + s
                for j in range(1, ff):
                    v = np.float64(hv[e, j, y, c])
                    s = s + np.float32(v * v)
                acc[e, y, c] = s
            if final:
                for x in range(m):
                    inten[e, y, x] = acc[e, y, 2 * x] + acc[e, y, 2 * x + 1]


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
