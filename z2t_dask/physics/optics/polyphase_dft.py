"""The exact PSF's transforms: inverse DFTs of a pupil field's polyphase parts, squared and summed.

:meth:`~z2t_dask.physics.optics.psf.PupilPSF._polyphase_intensity` needs, per emitter and pupil
field component, ``sum_j |DFT2(part_j)|^2`` over the ``f^2`` polyphase parts of the field (each
an ``m x m`` grid whose first ``ceil(n / f)`` rows and columns are non-zero). For ``m`` a power of
two (64 by default) :data:`polyphase_dft` does that in one pass per part: form and gather the part,
inverse DFT along its columns, transpose, inverse DFT along the other axis, square and add. The
compiled loops run each butterfly across 16-64 lines at once (SIMD) and keep the part in two small
buffers; measured against ``scipy.fft`` plus the gather and squaring passes it replaces, one part
costs ~9-13 us instead of ~17-23 us here (``python -m benchmarks.fft_probe``).

The field ``vals * comp`` (``exp(i phi)`` times the amplitude, times a dipole field component) is
formed in the gather, as four float32 products and two float32 sums (:func:`complex_product`),
never NumPy's complex multiply (which fuses a multiply-add on some CPUs and not on others).

The DFT is a fixed sequence of float32 operations, which defines the bits (the NumPy definition
runs the same sequence on whole arrays, so results do not depend on numba):

- decimation in time over the stages :func:`dft_plan` lists (radix 4; one radix-2 stage first
  when ``log2 m`` is odd), inputs in the matching digit-reversed order;
- at a stage of span ``L > 1`` the ``t``-th input of each butterfly is multiplied by the float32
  twiddle ``w^(j t)``, ``w = exp(2 pi i / (r L))``: ``re = wr br - wi bi``, ``im = wr bi + wi br``
  (each product a correctly rounded float32 product, then one float32 addition or subtraction);
- the radix-4 butterfly: ``s02 = a0 + a2``, ``d02 = a0 - a2``, ``s13 = a1 + a3``, ``d13 = a1 -
  a3``; ``y0 = s02 + s13``, ``y2 = s02 - s13``, ``y1 = d02 + i d13``, ``y3 = d02 - i d13``
  (radix 2: ``y0 = a0 + a1``, ``y1 = a0 - a1``);
- no normalisation (the ``m^2`` factor of the intensity goes into the PSF's normaliser);
- ``acc += float32(re^2) + float32(im^2)`` per part, parts in order ``j = p f + q``.

Products are written ``float32(float64(a) * float64(b))`` in the loops: the float64 product of
two float32 values is exact, so its rounding is NumPy's float32 product and no compiler may fuse
it with the following addition (the rule of :mod:`z2t_dask.physics.optics.polyphase`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = ["DftPlan", "complex_product", "dft_plan", "multiply_spectra", "polyphase_dft", "scratch", "supported"]


@dataclass(frozen=True)
class DftPlan:
    """Stages, input order and twiddles of the ``m``-point inverse DFT (see the module notes).

    Attributes
    ----------
    m : int
        Transform length (a power of two >= 2).
    perm : ndarray, (m,) intp
        Input order: stage 0 reads ``x[perm[r]]`` at position ``r``.
    radix, span : ndarray, (S,) intp
        Radix (2 or 4) and span ``L`` of each stage, first stage first.
    wr, wi : ndarray, (S, 3, max L) float32
        Twiddles ``w^(j t)`` (``t = 1..radix-1`` in row ``t - 1``, ``j < L``); unused at ``L = 1``.
    """

    m: int
    perm: np.ndarray
    radix: np.ndarray
    span: np.ndarray
    wr: np.ndarray
    wi: np.ndarray


def supported(m: int) -> bool:
    """Whether :data:`polyphase_dft` serves an ``m``-point grid (a power of two >= 2)."""
    return m >= 2 and m & (m - 1) == 0


def scratch(m: int, n_c: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The compiled loops' buffers ``(x1r, x1i, x2r, x2i)``: ``m``-point grid, ``n_c`` columns split ``f`` ways.

    The first pass's ``(m, w1)``: its lines are the parts' ``ceil(n_c / f)`` columns, rounded up to 16
    (whole SIMD vectors); the second pass's ``(m, m)``.
    """
    w1 = 16 * math.ceil(math.ceil(n_c / f) / 16)
    return tuple(np.empty((m, w), np.float32) for w in (w1, w1, m, m))  # type: ignore[return-value]


def _dit_order(radices: list[int]) -> list[int]:
    """Input order of a decimation-in-time DFT whose stages have ``radices`` (first stage first)."""
    if not radices:
        return [0]
    r = radices[-1]
    inner = _dit_order(radices[:-1])
    return [t + r * k for t in range(r) for k in inner]


def dft_plan(m: int) -> DftPlan:
    """The plan of the ``m``-point inverse DFT (``m`` a power of two >= 2).

    Twiddles are computed with Python's ``math.cos`` / ``math.sin`` in float64 and rounded to
    float32 (a few dozen numbers per plan).
    """
    if not supported(m):
        raise ValueError(f"m must be a power of two >= 2, got {m!r}")
    log2 = m.bit_length() - 1
    radices = ([2] if log2 % 2 else []) + [4] * (log2 // 2)
    spans, span = [], 1
    for r in radices:
        spans.append(span)
        span *= r
    width = max(1, max(spans))
    wr = np.zeros((len(radices), 3, width), np.float32)
    wi = np.zeros((len(radices), 3, width), np.float32)
    for s, (r, span) in enumerate(zip(radices, spans)):
        for t in range(1, r):
            for j in range(span):
                angle = 2.0 * math.pi * (j * t) / (r * span)
                wr[s, t - 1, j] = math.cos(angle)
                wi[s, t - 1, j] = math.sin(angle)
    return DftPlan(
        m=m,
        perm=np.asarray(_dit_order(radices), np.intp),
        radix=np.asarray(radices, np.intp),
        span=np.asarray(spans, np.intp),
        wr=wr,
        wi=wi,
    )


# ---------------------------------------------------------------------- NumPy definition
def complex_product(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a * b`` (complex64, broadcast) as ``(ar br - ai bi, ar bi + ai br)`` in float32 operations.

    Not NumPy's complex64 multiply: that one may fuse a product into a multiply-add, depending on
    the CPU's SIMD dispatch (NumPy 2.4 on an AVX2 + FMA machine gives the fused form), so its
    bits can differ from machine to machine; four float32 products and two float32 sums cannot.
    ``out`` (complex64, the broadcast shape) may be ``a`` or ``b``.
    """
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    rr, ii, ri, ir = ar * br, ai * bi, ar * bi, ai * br
    if out is None:
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.complex64)
    np.subtract(rr, ii, out=out.real)
    np.add(ri, ir, out=out.imag)
    return out


def _twiddled(wr: np.ndarray, wi: np.ndarray, br: np.ndarray, bi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w * b`` as float32 ``(wr br - wi bi, wr bi + wi br)``."""
    return wr * br - wi * bi, wr * bi + wi * br


def _dft_numpy(re: np.ndarray, im: np.ndarray, radix: np.ndarray, span: np.ndarray, wr: np.ndarray, wi: np.ndarray):
    """The plan's stages along axis 1 of ``(b, m, lines)`` float32 arrays (inputs already in order)."""
    b, m, w = re.shape
    for s in range(radix.shape[0]):
        r, L = int(radix[s]), int(span[s])
        xr = re.reshape(b, m // (r * L), r, L, w)
        xi = im.reshape(b, m // (r * L), r, L, w)
        ar = [xr[:, :, t] for t in range(r)]
        ai = [xi[:, :, t] for t in range(r)]
        if L > 1:
            for t in range(1, r):
                ar[t], ai[t] = _twiddled(wr[s, t - 1, :L, None], wi[s, t - 1, :L, None], ar[t], ai[t])
        yr, yi = np.empty_like(xr), np.empty_like(xi)
        if r == 2:
            yr[:, :, 0], yi[:, :, 0] = ar[0] + ar[1], ai[0] + ai[1]
            yr[:, :, 1], yi[:, :, 1] = ar[0] - ar[1], ai[0] - ai[1]
        else:
            s02r, s02i, d02r, d02i = ar[0] + ar[2], ai[0] + ai[2], ar[0] - ar[2], ai[0] - ai[2]
            s13r, s13i, d13r, d13i = ar[1] + ar[3], ai[1] + ai[3], ar[1] - ar[3], ai[1] - ai[3]
            yr[:, :, 0], yi[:, :, 0] = s02r + s13r, s02i + s13i
            yr[:, :, 2], yi[:, :, 2] = s02r - s13r, s02i - s13i
            yr[:, :, 1], yi[:, :, 1] = d02r - d13i, d02i + d13r
            yr[:, :, 3], yi[:, :, 3] = d02r + d13i, d02i - d13r
        re, im = yr.reshape(b, m, w), yi.reshape(b, m, w)
    return re, im


def _polyphase_dft_numpy(
    acc: np.ndarray,
    vals: np.ndarray,
    comp: np.ndarray,
    f: int,
    perm: np.ndarray,
    radix: np.ndarray,
    span: np.ndarray,
    wr: np.ndarray,
    wi: np.ndarray,
    x1r: np.ndarray,
    x1i: np.ndarray,
    x2r: np.ndarray,
    x2i: np.ndarray,
) -> None:
    """``acc[e, kx, ky] += sum_j |DFT2(part_j)[ky, kx]|^2`` (see the module notes for the bits).

    Parameters
    ----------
    acc : ndarray, (b, m, m) float32
        Sums, transposed (``acc[e, kx, ky]``); added to.
    vals : ndarray, (b, n_r, n_c) complex64
        ``exp(i phi)`` times the amplitude on the pupil rectangle, per emitter.
    comp : ndarray, (1 or b, n_r, n_c) complex64
        The field component (shared, or per emitter). The field is ``vals * comp``, computed as
        ``(vr cr - vi ci, vr ci + vi cr)`` in float32 operations (see :func:`complex_product`);
        part ``j = p f + q`` is ``field[:, f k + p, f l + q]`` (zero beyond the rectangle),
        ``ceil(n_r / f) <= m`` and ``ceil(n_c / f) <= x1r.shape[1]``.
    f : int
        Polyphase factor.
    perm, radix, span, wr, wi : ndarray
        The :class:`DftPlan` of ``m``.
    x1r, x1i : ndarray, (m, w1) float32
        Scratch of the compiled loops (``w1 >= ceil(n_c / f)``; unused here).
    x2r, x2i : ndarray, (m, m) float32
        Scratch of the compiled loops (unused here).
    """
    b, n_r, n_c = vals.shape
    field = complex_product(vals, comp)
    m = perm.shape[0]
    sc = -(-n_c // f)
    # all parts at once: (b, f^2, m, sc), part j = p f + q, zeros beyond the rectangle
    g1r = np.zeros((b, f * f, m, sc), np.float32)
    g1i = np.zeros((b, f * f, m, sc), np.float32)
    nq = np.empty(f * f, np.intp)
    for p in range(f):
        for q in range(f):
            sub = field[:, p::f, q::f]
            nq[p * f + q] = sub.shape[2]
            g1r[:, p * f + q, : sub.shape[1], : sub.shape[2]] = sub.real
            g1i[:, p * f + q, : sub.shape[1], : sub.shape[2]] = sub.imag
    y1r, y1i = _dft_numpy(g1r[:, :, perm].reshape(-1, m, sc), g1i[:, :, perm].reshape(-1, m, sc), radix, span, wr, wi)
    # transpose, the part's columns in input order (zero lines beyond each part's columns)
    keep = (perm[None, :] < nq[:, None])[None, :, :, None]  # (1, f^2, m, 1)
    src = np.minimum(perm, sc - 1)
    zero = np.float32(0.0)
    g2r = np.where(keep, y1r.reshape(b, f * f, m, sc)[:, :, :, src].transpose(0, 1, 3, 2), zero)
    g2i = np.where(keep, y1i.reshape(b, f * f, m, sc)[:, :, :, src].transpose(0, 1, 3, 2), zero)
    y2r, y2i = _dft_numpy(g2r.reshape(-1, m, m), g2i.reshape(-1, m, m), radix, span, wr, wi)
    sq = (y2r * y2r + y2i * y2i).reshape(b, f * f, m, m)  # (b, f^2, kx, ky)
    for j in range(f * f):
        acc += sq[:, j]


# ---------------------------------------------------------------------- compiled loops
def _polyphase_dft_loops(
    acc: np.ndarray,
    vals: np.ndarray,
    comp: np.ndarray,
    f: int,
    perm: np.ndarray,
    radix: np.ndarray,
    span: np.ndarray,
    wr: np.ndarray,
    wi: np.ndarray,
    x1r: np.ndarray,
    x1i: np.ndarray,
    x2r: np.ndarray,
    x2i: np.ndarray,
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, n_r, n_c = vals.shape
    m = perm.shape[0]
    w1 = x1r.shape[1]
    shared = comp.shape[0] == 1
    for e in range(b):
        ce = 0 if shared else e
        for p in range(f):
            for q in range(f):
                nq = (n_c - q + f - 1) // f
                for ps in range(2):
                    if ps == 0:  # gather the part's rows in input order; lines = its columns
                        re, im, lines = x1r, x1i, w1
                        for r in range(m):
                            row = f * perm[r] + p
                            dr, di = x1r[r], x1i[r]
                            if row < n_r:
                                src, cmp = vals[e, row], comp[ce, row]
                                for c in range(nq):
                                    v, w = src[f * c + q], cmp[f * c + q]
                                    vr, vi = np.float64(v.real), np.float64(v.imag)
                                    wr_, wi_ = np.float64(w.real), np.float64(w.imag)
                                    dr[c] = np.float32(vr * wr_) - np.float32(vi * wi_)
                                    di[c] = np.float32(vr * wi_) + np.float32(vi * wr_)
                                for c in range(nq, w1):
                                    dr[c] = 0.0
                                    di[c] = 0.0
                            else:
                                for c in range(w1):
                                    dr[c] = 0.0
                                    di[c] = 0.0
                    else:  # transpose: lines = the first pass's outputs, points = the part's columns
                        re, im, lines = x2r, x2i, m
                        for r in range(m):
                            col = perm[r]
                            dr, di = x2r[r], x2i[r]
                            if col < nq:
                                for k in range(m):
                                    dr[k] = x1r[k, col]
                                    di[k] = x1i[k, col]
                            else:
                                for k in range(m):
                                    dr[k] = 0.0
                                    di[k] = 0.0
                    for s in range(radix.shape[0]):
                        L = span[s]
                        if radix[s] == 2:  # always the first stage: L = 1, no twiddles
                            for k0 in range(0, m, 2):
                                r0, i0, r1, i1 = re[k0], im[k0], re[k0 + 1], im[k0 + 1]
                                for c in range(lines):
                                    ar, ai, br, bi = r0[c], i0[c], r1[c], i1[c]
                                    r0[c] = ar + br
                                    i0[c] = ai + bi
                                    r1[c] = ar - br
                                    i1[c] = ai - bi
                            continue
                        for k0 in range(0, m, 4 * L):
                            for j in range(L):
                                q0 = k0 + j
                                r0, i0, r1, i1 = re[q0], im[q0], re[q0 + L], im[q0 + L]
                                r2, i2, r3, i3 = re[q0 + 2 * L], im[q0 + 2 * L], re[q0 + 3 * L], im[q0 + 3 * L]
                                if L == 1:
                                    for c in range(lines):
                                        a0r, a0i, a1r, a1i = r0[c], i0[c], r1[c], i1[c]
                                        a2r, a2i, a3r, a3i = r2[c], i2[c], r3[c], i3[c]
                                        s02r, s02i, d02r, d02i = a0r + a2r, a0i + a2i, a0r - a2r, a0i - a2i
                                        s13r, s13i, d13r, d13i = a1r + a3r, a1i + a3i, a1r - a3r, a1i - a3i
                                        r0[c], i0[c] = s02r + s13r, s02i + s13i
                                        r2[c], i2[c] = s02r - s13r, s02i - s13i
                                        r1[c], i1[c] = d02r - d13i, d02i + d13r
                                        r3[c], i3[c] = d02r + d13i, d02i - d13r
                                    continue
                                w1r, w1i = np.float64(wr[s, 0, j]), np.float64(wi[s, 0, j])
                                w2r, w2i = np.float64(wr[s, 1, j]), np.float64(wi[s, 1, j])
                                w3r, w3i = np.float64(wr[s, 2, j]), np.float64(wi[s, 2, j])
                                for c in range(lines):
                                    a0r, a0i = r0[c], i0[c]
                                    br, bi = np.float64(r1[c]), np.float64(i1[c])
                                    a1r = np.float32(w1r * br) - np.float32(w1i * bi)
                                    a1i = np.float32(w1r * bi) + np.float32(w1i * br)
                                    br, bi = np.float64(r2[c]), np.float64(i2[c])
                                    a2r = np.float32(w2r * br) - np.float32(w2i * bi)
                                    a2i = np.float32(w2r * bi) + np.float32(w2i * br)
                                    br, bi = np.float64(r3[c]), np.float64(i3[c])
                                    a3r = np.float32(w3r * br) - np.float32(w3i * bi)
                                    a3i = np.float32(w3r * bi) + np.float32(w3i * br)
                                    s02r, s02i, d02r, d02i = a0r + a2r, a0i + a2i, a0r - a2r, a0i - a2i
                                    s13r, s13i, d13r, d13i = a1r + a3r, a1i + a3i, a1r - a3r, a1i - a3i
                                    r0[c], i0[c] = s02r + s13r, s02i + s13i
                                    r2[c], i2[c] = s02r - s13r, s02i - s13i
                                    r1[c], i1[c] = d02r - d13i, d02i + d13r
                                    r3[c], i3[c] = d02r + d13i, d02i - d13r
                a = acc[e]
                for kx in range(m):
                    ar_, ai_, out = x2r[kx], x2i[kx], a[kx]
                    for ky in range(m):
                        vr, vi = np.float64(ar_[ky]), np.float64(ai_[ky])
                        out[ky] = out[ky] + (np.float32(vr * vr) + np.float32(vi * vi))


def _polyphase_dft_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._polyphase_intensity` passes."""
    plan = dft_plan(8)
    return (
        np.zeros((1, 8, 8), np.float32),
        np.zeros((1, 5, 5), np.complex64),
        np.zeros((1, 5, 5), np.complex64),
        2,
        plan.perm,
        plan.radix,
        plan.span,
        plan.wr,
        plan.wi,
        np.empty((8, 8), np.float32),
        np.empty((8, 8), np.float32),
        np.empty((8, 8), np.float32),
        np.empty((8, 8), np.float32),
    )


#: ``acc += sum_j |DFT2(part_j)|^2`` over a pupil field's polyphase parts (see :func:`_polyphase_dft_numpy`).
polyphase_dft = Kernel(_polyphase_dft_loops, _polyphase_dft_numpy, _polyphase_dft_example)


# ---------------------------------------------------------------------- spectra times a shared factor
def _multiply_spectra_numpy(spec: np.ndarray, factor: np.ndarray) -> None:
    """``spec[e] *= factor`` for every ``e``, as :func:`complex_product` (float32 operations).

    Parameters
    ----------
    spec : ndarray, (b, r, c) complex64
        Spectra, updated in place.
    factor : ndarray, (r, c) complex64
        The factor shared by all of them (the pixel transfer function times a shift).
    """
    complex_product(spec, factor[None], out=spec)


def _multiply_spectra_loops(
    spec: np.ndarray, factor: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    b, r, c = spec.shape
    for e in range(b):
        for i in range(r):
            row, fac = spec[e, i], factor[i]
            for j in range(c):
                v, w = row[j], fac[j]
                vr, vi = np.float64(v.real), np.float64(v.imag)
                wr_, wi_ = np.float64(w.real), np.float64(w.imag)
                re = np.float32(vr * wr_) - np.float32(vi * wi_)
                im = np.float32(vr * wi_) + np.float32(vi * wr_)
                row[j] = complex(re, im)


def _multiply_spectra_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._to_patches` passes."""
    return (np.zeros((1, 4, 3), np.complex64), np.zeros((4, 3), np.complex64))


#: ``spec *= factor`` in float32 operations, not NumPy's complex multiply (see :func:`_multiply_spectra_numpy`).
multiply_spectra = Kernel(_multiply_spectra_loops, _multiply_spectra_numpy, _multiply_spectra_example)
