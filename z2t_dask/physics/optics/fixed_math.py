"""Elementary functions of the exact PSF with the same bits on any machine: ``exp(i phi)`` and ``exp(-a)``.

:data:`phasors` (the pupil's ``exp(i phi)``) and :data:`decay` (the evanescent amplitude
``exp(-a)`` of an index-mismatched pupil) replace NumPy's float32 ``cos``, ``sin`` and ``exp``.

NumPy's float32 ``cos`` / ``sin`` run SIMD code chosen per CPU: measured on this project's
machine, its AVX2 + FMA code and its baseline (SSE4.2, ``NPY_DISABLE_CPU_FEATURES=X86_V3``) give
different bits, hence different exact PSFs; and 15 % of its values are one unit in the last place
from the correctly rounded result. :data:`phasors` computes them in float64 from a fixed sequence
of IEEE operations (no C library call) and rounds once to float32:

1. ``k = floor(x 2/pi + 1/2)``, ``r = (x - k P1) - k P2`` (Cody-Waite: ``P1`` holds the first 33
   bits of ``pi/2``, so ``k P1`` is exact for ``|k| < 2^20``; ``P2 = pi/2 - P1``), ``|r| <= pi/4``;
2. the Taylor polynomials of ``sin r`` (to ``r^15``) and ``cos r`` (to ``r^14``) by Horner's rule
   (truncation below 1e-16 of the value on ``|r| <= pi/4``);
3. the quadrant ``k mod 4`` swaps them and sets the signs by products with exact 0, 1 and +-1.

The float64 error (a few 1e-16) is far below float32's half unit (3e-8): the float32 result is the
correctly rounded ``cos`` / ``sin`` except when the exact value lies within ~1e-16 of a rounding
boundary (none in 10^6 random phases). A call whose phases are not all within ``|phi| <=``
:data:`MAX_PHASE` (or not finite) takes ``math.cos`` / ``math.sin`` (the C library; NaN for a
non-finite phase) for all of its values instead: pupil phases are tens to hundreds of radians, so that is only a guard.

:data:`phasors` is a :class:`~z2t_dask.compiled.Kernel`: compiled loops and a NumPy definition of
the same operations, equal bit for bit (the compiled loops keep every product and sum apart, as
numba compiles without ``fastmath``; the NumPy definition's ufunc calls are never fused). Measured
here, ~1.6x faster than NumPy's ``cos`` + ``sin`` into complex64 (7.4 vs 12-15 us per emitter of the
default vectorial pupil); :data:`decay` is slower than NumPy's float32 ``exp`` (12 vs 5.3 us per
emitter, ~2-3 % of a PSF with evanescent light).
"""

from __future__ import annotations

import math

import numpy as np

from z2t_dask.compiled import Kernel

__all__ = ["MAX_PHASE", "decay", "phasors"]

#: Largest ``|phi|`` (rad) the reduction serves (``|k| < 2^19``: ``k P1`` exact); beyond it, or
#: for non-finite phases, the call falls back to the C library's ``cos`` / ``sin``.
MAX_PHASE = 8.0e5

_TWO_OVER_PI = 0.6366197723675814
_P1 = 1.5707963267341256  # the first 33 bits of pi / 2
_P2 = 6.077100506506192e-11  # pi / 2 - _P1
# Taylor coefficients, sin: (-1)^j / (2j + 1)!, j = 1..7; cos: (-1)^j / (2j)!, j = 1..7
_S1, _S2, _S3, _S4, _S5, _S6, _S7 = (
    -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362880.0, -1.0 / 39916800.0, 1.0 / 6227020800.0,
    -1.0 / 1307674368000.0,
)  # fmt: skip
_C1, _C2, _C3, _C4, _C5, _C6, _C7 = (
    -0.5, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40320.0, -1.0 / 3628800.0, 1.0 / 479001600.0, -1.0 / 87178291200.0,
)  # fmt: skip


def _phasors_numpy(out: np.ndarray, phi: np.ndarray) -> None:
    """``out[..., 2 c] = cos(phi[..., c])``, ``out[..., 2 c + 1] = sin(phi[..., c])`` (float32).

    Parameters
    ----------
    out : ndarray, (..., 2 C) float32
        A complex64 array viewed as float32 (real, imaginary pairs), C-contiguous.
    phi : ndarray, (..., C) float32
        Phases (rad).
    """
    x = phi.reshape(-1).astype(np.float64)
    o = out.reshape(-1)
    if not (x.size == 0 or float(np.max(np.abs(x))) <= MAX_PHASE):  # also NaN: not <=
        o[0::2] = [math.cos(v) if math.isfinite(v) else math.nan for v in x]
        o[1::2] = [math.sin(v) if math.isfinite(v) else math.nan for v in x]
        return
    k = np.floor(x * _TWO_OVER_PI + 0.5)
    r = (x - k * _P1) - k * _P2
    r2 = r * r
    s = r + r * r2 * (_S1 + r2 * (_S2 + r2 * (_S3 + r2 * (_S4 + r2 * (_S5 + r2 * (_S6 + r2 * _S7))))))
    c = 1.0 + r2 * (_C1 + r2 * (_C2 + r2 * (_C3 + r2 * (_C4 + r2 * (_C5 + r2 * (_C6 + r2 * _C7))))))
    q = k.astype(np.int32)
    odd = (q & 1).astype(np.float64)
    even = 1.0 - odd
    sign_c = (1 - 2 * (((q + 1) >> 1) & 1)).astype(np.float64)
    sign_s = (1 - 2 * ((q >> 1) & 1)).astype(np.float64)
    o[0::2] = (c * even + s * odd) * sign_c
    o[1::2] = (s * even + c * odd) * sign_s


def _phasors_loops(
    out: np.ndarray, phi: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    x_all = phi.reshape(-1)
    o = out.reshape(-1)
    n = x_all.size
    fallback = False
    for i in range(n):
        if not abs(np.float64(x_all[i])) <= MAX_PHASE:
            fallback = True
            break
    if fallback:
        for i in range(n):
            v = np.float64(x_all[i])
            o[2 * i] = np.float32(math.cos(v) if math.isfinite(v) else math.nan)
            o[2 * i + 1] = np.float32(math.sin(v) if math.isfinite(v) else math.nan)
        return
    for i in range(n):
        x = np.float64(x_all[i])
        k = np.floor(x * _TWO_OVER_PI + 0.5)
        r = (x - k * _P1) - k * _P2
        r2 = r * r
        s = r + r * r2 * (_S1 + r2 * (_S2 + r2 * (_S3 + r2 * (_S4 + r2 * (_S5 + r2 * (_S6 + r2 * _S7))))))
        c = 1.0 + r2 * (_C1 + r2 * (_C2 + r2 * (_C3 + r2 * (_C4 + r2 * (_C5 + r2 * (_C6 + r2 * _C7))))))
        q = np.int32(k)
        odd = np.float64(q & 1)
        even = 1.0 - odd
        sign_c = np.float64(1 - 2 * (((q + 1) >> 1) & 1))
        sign_s = np.float64(1 - 2 * ((q >> 1) & 1))
        o[2 * i] = np.float32((c * even + s * odd) * sign_c)
        o[2 * i + 1] = np.float32((s * even + c * odd) * sign_s)


def _example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    return (np.empty((1, 1, 2), np.float32), np.zeros((1, 1, 1), np.float32))


#: ``exp(i phi)`` into a complex64 array viewed as float32 (see :func:`_phasors_numpy`).
phasors = Kernel(_phasors_loops, _phasors_numpy, _example)


# ---------------------------------------------------------------------- exp(-a)
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # the first 32 bits of ln 2
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI
#: Taylor coefficients 1 / j!, j = 2..13 (|r| <= ln(2) / 2: truncation below 1e-17 of the value)
_E = tuple(1.0 / math.factorial(j) for j in range(2, 14))
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = _E


#: ``exp(x)`` is evaluated for ``x`` clipped to this range: float32 gives 0 below (``exp(-200)`` ~
#: 1e-87) and inf above (``exp(90)`` ~ 1e39) either way, and every ``2^k`` on it is a normal float64.
_X_LO, _X_HI = -200.0, 90.0
_K_OFFSET = 300
#: ``2^(j - _K_OFFSET)``, exact powers of two (``k = floor(x / ln 2 + 1/2)`` lies in [-289, 130]).
_POW2 = np.ldexp(1.0, np.arange(-_K_OFFSET, 151))


def _decay_numpy(out: np.ndarray, att: np.ndarray, mask: np.ndarray) -> None:
    """``out = float32(exp(-float64(att)) * mask)`` (float32, broadcast over the leading axis).

    ``exp(x)``, ``x = -att`` clipped to ``[-200, 90]``: ``k = floor(x / ln 2 + 1/2)``, ``r = (x - k L1)
    - k L2`` (``L1``: 32 bits of ``ln 2``, so ``k L1`` is exact), the Taylor polynomial of ``exp r`` to
    ``r^13`` by Horner's rule, times the exact power of two ``2^k`` (one rounding), times the mask (0
    or 1), rounded to float32. A call with a NaN exponent returns NaN there and computes every value
    with ``math.exp`` instead (the C library; exponents are finite in practice).

    Parameters
    ----------
    out : ndarray, (B, R, C) float32
    att : ndarray, (B, R, C) float32
        Exponents (>= 0 for a decay).
    mask : ndarray, (R, C) float32
        The pupil (1 inside, 0 outside).
    """
    x = -att.astype(np.float64)
    if np.isnan(x).any():
        m = np.broadcast_to(mask, att.shape).reshape(-1)
        o = out.reshape(-1)
        o[:] = [math.exp(min(v, _X_HI)) * float(w) if v == v else math.nan for v, w in zip(x.reshape(-1), m)]
        return
    x = np.clip(x, _X_LO, _X_HI)
    k = np.floor(x * _INV_LN2 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * (_E6 + r * (_E7 + r * (_E8 + r * (
        _E9 + r * (_E10 + r * (_E11 + r * (_E12 + r * _E13))))))))))))  # fmt: skip
    out[...] = (p * _POW2[k.astype(np.int32) + _K_OFFSET]) * mask


def _decay_loops(
    out: np.ndarray, att: np.ndarray, mask: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    n_b, n_r, n_c = att.shape
    pow2 = _POW2
    nan = False
    for e in range(n_b):
        for i in range(n_r):
            for j in range(n_c):
                if att[e, i, j] != att[e, i, j]:
                    nan = True
    if nan:
        for e in range(n_b):
            for i in range(n_r):
                for j in range(n_c):
                    v = -np.float64(att[e, i, j])
                    out[e, i, j] = np.float32(math.exp(min(v, _X_HI)) * np.float64(mask[i, j]) if v == v else math.nan)
        return
    pbuf = np.empty(n_c, np.float64)  # two passes per row: the polynomial (vectorises), then the scaling
    kbuf = np.empty(n_c, np.int32)
    for e in range(n_b):
        for i in range(n_r):
            oi, ai, mi = out[e, i], att[e, i], mask[i]
            for j in range(n_c):
                x = min(max(-np.float64(ai[j]), _X_LO), _X_HI)
                k = np.floor(x * _INV_LN2 + 0.5)
                r = (x - k * _LN2_HI) - k * _LN2_LO
                pbuf[j] = 1.0 + r * (1.0 + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * (_E6 + r * (_E7 + r * (
                    _E8 + r * (_E9 + r * (_E10 + r * (_E11 + r * (_E12 + r * _E13))))))))))))  # fmt: skip
                kbuf[j] = np.int32(k) + _K_OFFSET
            for j in range(n_c):
                oi[j] = np.float32((pbuf[j] * pow2[kbuf[j]]) * np.float64(mi[j]))


def _decay_example() -> tuple:
    """Arguments of the types :meth:`PupilPSF._intensity` passes."""
    cube = np.zeros((1, 1, 1), np.float32)
    return (cube, cube.copy(), np.ones((1, 1), np.float32))


#: ``exp(-att) * mask`` in float32 (see :func:`_decay_numpy`).
decay = Kernel(_decay_loops, _decay_numpy, _decay_example)
