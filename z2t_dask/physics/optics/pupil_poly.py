"""Zernike polynomials as bivariate monomial polynomials, for fast pupil-phase evaluation.

A Zernike mode of radial order ``n`` is a polynomial of total degree ``n`` in the normalised
pupil coordinates ``u = kx / k_cut`` and ``v = ky / k_cut`` (``rho^|m| cos(m theta) =
Re (u + i v)^|m|``, ``rho^2 = u^2 + v^2``).  A coefficient vector therefore collapses into one
bivariate polynomial: per pupil row, a polynomial in ``u`` of degree ``D`` (the highest radial order).
Its coefficients come from two small float64 sums per emitter (modes -> monomials -> per-row
coefficients) and it is evaluated on the separable grid as ``D + 1`` terms per pupil sample,
instead of ``2 K`` element-wise passes over the pupil for ``K`` modes accumulated one by one.

Same bytes on any machine: every sum here runs in a fixed order, term by term, with IEEE
operations only (no BLAS call: a BLAS kernel's order and its use of fused multiply-adds depend on
the CPU; measured, OpenBLAS's Haswell and Sandy Bridge kernels gave different pupil phases, hence
different PSFs).  Each step is a :class:`~z2t_dask.compiled.Kernel` (compiled loops and their
NumPy definition, equal bit for bit): :func:`combine_modes` and :func:`row_coefficients` add
float64 products term by term (their NumPy definitions are element-wise ufunc calls, which NumPy
never fuses; the compiled loops keep each product and sum apart, as numba compiles without
``fastmath``); :func:`eval_rows` sums the exact float64 products of float32 values in float64 and
rounds once to float32.  Nothing mixes emitters: an emitter's phase
is bit-identical whatever other emitters share the call.  :func:`powers` gives the powers of the
grid coordinates by repeated products (not ``pow``, whose last bit is the C library's).

Conventions are those of :mod:`z2t_dask.physics.optics.zernike` (RMS-normalised, ``theta`` counter-
clockwise from +x, Noll order by default).
"""

from __future__ import annotations

import importlib
import math
from functools import lru_cache
from typing import Any

import numpy as np

from z2t_dask.compiled import Kernel
from z2t_dask.physics.optics.zernike import noll_to_nm, osa_to_nm

__all__ = ["combine_modes", "eval_rows", "powers", "row_coefficients", "zernike_monomials"]

#: Emitters the NumPy definition of the power sums handles at a time (bounds its float64 temporaries).
_CHUNK = 32


def _polymul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of two bivariate polynomials ``P[i, j]`` = coefficient of ``u^i v^j``."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i, j in zip(*np.nonzero(a)):
        out[i : i + b.shape[0], j : j + b.shape[1]] += a[i, j] * b
    return out


def _angular(m: int) -> np.ndarray:
    """``rho^|m| cos(|m| theta)`` (m >= 0) or ``rho^|m| sin(|m| theta)`` (m < 0) in (u, v)."""
    ma = abs(m)
    out = np.zeros((ma + 1, ma + 1))
    for k in range(ma + 1):  # (u + i v)^ma = sum_k C(ma, k) u^(ma-k) i^k v^k
        if (k % 2 == 0) == (m >= 0):
            sign = (-1) ** (k // 2)
            out[ma - k, k] = sign * math.comb(ma, k)
    return out


def _rho2_power(p: int) -> np.ndarray:
    """``(u^2 + v^2)^p``."""
    out = np.zeros((2 * p + 1, 2 * p + 1))
    for q in range(p + 1):
        out[2 * q, 2 * (p - q)] = math.comb(p, q)
    return out


@lru_cache(maxsize=16)
def _monomials(n_modes: int, order: str) -> np.ndarray:
    nm = [noll_to_nm(k + 1) if order == "noll" else osa_to_nm(k) for k in range(n_modes)]
    deg = max(n for n, _ in nm)
    out = np.zeros((n_modes, deg + 1, deg + 1))
    for k, (n, m) in enumerate(nm):
        ma = abs(m)
        norm = math.sqrt(2.0 * (n + 1) / (2.0 if m == 0 else 1.0))
        radial = np.zeros((n + 1, n + 1))
        for s in range((n - ma) // 2 + 1):  # R = sum_s c_s rho^ma (rho^2)^((n - ma)/2 - s)
            c_s = (
                (-1) ** s
                * math.factorial(n - s)
                // (math.factorial(s) * math.factorial((n + ma) // 2 - s) * math.factorial((n - ma) // 2 - s))
            )
            term = c_s * _rho2_power((n - ma) // 2 - s)
            radial[: term.shape[0], : term.shape[1]] += term
        poly = norm * _polymul(radial, _angular(m))
        out[k, : poly.shape[0], : poly.shape[1]] = poly[: deg + 1, : deg + 1]
    out.setflags(write=False)
    return out


def zernike_monomials(n_modes: int, order: str = "noll") -> np.ndarray:
    """Monomial coefficients of the first ``n_modes`` RMS-normalised Zernike polynomials.

    Parameters
    ----------
    n_modes : int
        Number of modes (``>= 1``).
    order : {"noll", "osa"}
        Mode ``k`` is Noll ``j = k + 1`` or OSA ``j = k``.

    Returns
    -------
    ndarray, shape (n_modes, D + 1, D + 1), float64, read-only
        ``out[k, a, b]`` is the coefficient of ``u^a v^b`` in mode ``k``, with ``u = rho cos
        theta``, ``v = rho sin theta`` (dimensionless) and ``D`` the highest radial order.
        Coefficients are exact integers times the RMS normalisation.
    """
    if not isinstance(n_modes, (int, np.integer)) or isinstance(n_modes, bool) or n_modes < 1:
        raise ValueError(f"n_modes must be an integer >= 1, got {n_modes!r}")
    if order not in ("noll", "osa"):
        raise ValueError(f"order must be 'noll' or 'osa', got {order!r}")
    return _monomials(int(n_modes), order)


def powers(x: np.ndarray, degree: int) -> np.ndarray:
    """``x^0 .. x^degree`` (float64, shape ``(degree + 1,) + x.shape``) by repeated products.

    ``x^a = x^(a-1) * x``: IEEE products in a fixed order, so the values are the same on any
    machine (``x ** a`` calls the C library's ``pow``, whose last bit may differ between libraries
    and CPUs).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((degree + 1,) + x.shape)
    out[0] = 1.0
    for a in range(1, degree + 1):
        np.multiply(out[a - 1], x, out=out[a])
    return out


def _namespace(a: Any) -> Any:
    """The array module of ``a``: NumPy, or the package of its type (``cupy`` for the GPU path's arrays)."""
    if isinstance(a, np.ndarray):
        return np
    return importlib.import_module(type(a).__module__.split(".")[0])


def _combine_numpy(out: np.ndarray, coeffs: np.ndarray, monomials: np.ndarray, first: int) -> None:
    """``out[e] = sum_k coeffs[e, k] * monomials[k]``, k = ``first``, ``first + 1``, ... in order, from 0.0 (float64).

    Parameters
    ----------
    out : ndarray, (B, P) float64
        The polynomials, flattened (``P = (D + 1)^2``).
    coeffs : ndarray, (B, K) float64
    monomials : ndarray, (n, P) float64
    first : int
    """
    out[...] = 0.0
    for j in range(first, coeffs.shape[1]):
        out += coeffs[:, j, None] * monomials[j]


def _combine_loops(
    out: np.ndarray, coeffs: np.ndarray, monomials: np.ndarray, first: int
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    n_b, n_k = coeffs.shape
    n_p = monomials.shape[1]
    for e in range(n_b):
        o = out[e]
        for q in range(n_p):
            o[q] = 0.0
        for j in range(first, n_k):
            w = coeffs[e, j]
            m = monomials[j]
            for q in range(n_p):
                o[q] += w * m[q]


def _combine_example() -> tuple:
    """Arguments of the types :func:`combine_modes` passes (polynomials flattened)."""
    return (np.empty((1, 4)), np.zeros((1, 2)), np.zeros((2, 4)), 1)


_combine = Kernel(_combine_loops, _combine_numpy, _combine_example)


def combine_modes(xp: Any, coeffs: Any, monomials: Any, first: int = 1) -> Any:
    """Per-emitter polynomial ``sum_k coeffs[:, k] * monomials[k]`` (float64).

    Parameters
    ----------
    xp : module
        Array module.
    coeffs : array, shape (B, K)
        Zernike coefficients (any unit; the polynomial has the same unit).
    monomials : array, shape (n, D + 1, D + 1), n >= K
        From :func:`zernike_monomials`; missing coefficient columns count as zeros.
    first : int
        First mode used (1 skips piston).

    Returns
    -------
    array, shape (B, D + 1, D + 1), float64
        The modes' terms added one by one, ``k = first, first + 1, ...``, from 0.0
        (:func:`_combine_numpy`: float64 products and sums, the same bits on any machine); row
        ``i`` depends only on ``coeffs[i]``.
    """
    if coeffs.shape[1] > monomials.shape[0]:
        n_k, n_m = coeffs.shape[1], monomials.shape[0]
        raise ValueError(f"{n_k} Zernike coefficients per emitter, but monomials of only {n_m} modes")
    c = xp.ascontiguousarray(coeffs, dtype=xp.float64)
    shape = (c.shape[0],) + tuple(monomials.shape[1:])
    out = xp.empty((c.shape[0], math.prod(monomials.shape[1:])), dtype=xp.float64)
    flat = monomials.reshape(monomials.shape[0], -1)
    if xp is np:
        _combine(out, c, np.ascontiguousarray(flat), int(first))
    else:
        _combine_numpy(out, c, flat, int(first))  # array-module generic
    return out.reshape(shape)


def row_coefficients(xp: Any, poly: Any, v_pow: Any) -> Any:
    """Coefficients in ``u`` of each pupil row: ``out[:, r, a] = sum_b poly[:, a, b] v[r]^b`` (float32).

    Parameters
    ----------
    poly : array, shape (B, D + 1, D + 1), float64
    v_pow : array, shape (D + 1, R), float64
        Powers ``v^b`` of the normalised ``ky / k_cut`` of the rows (:func:`powers`).

    Returns
    -------
    array, shape (B, R, D + 1), float32, C-contiguous
        The float64 terms added in the order ``b = 0, 1, ...`` from 0.0, rounded once
        (:func:`_power_sums_numpy`: the same bits on any machine); the input of :func:`eval_rows`.
    """
    out = xp.empty((poly.shape[0], v_pow.shape[1], poly.shape[1]), dtype=xp.float32)
    (_power_sums if xp is np else _power_sums_numpy)(out.transpose(0, 2, 1), poly, v_pow)
    return out


def _power_sums_numpy(out: np.ndarray, coef: np.ndarray, pw: np.ndarray) -> None:
    """``out[e, i, c] = float32(sum_j float64(coef[e, i, j]) * float64(pw[j, c]))``, j in order, from 0.0.

    The one sum of this module's two polynomial evaluations: a row's coefficients in ``v``
    against the powers of ``v`` (:func:`row_coefficients`, float64 inputs, ``out`` a transposed
    view) and a row's coefficients in ``u`` against the powers of ``u`` (:func:`eval_rows`,
    float32 inputs, whose float64 products are exact).

    Parameters
    ----------
    out : ndarray, (B, I, C) float32
        Written (any strides).
    coef : ndarray, (B, I, J) float32 or float64
    pw : ndarray, (J, C) float32 or float64
    """
    xp = _namespace(out)
    p64 = pw.astype(xp.float64)
    for e0 in range(0, coef.shape[0], _CHUNK):
        c64 = coef[e0 : e0 + _CHUNK].astype(xp.float64)
        acc = xp.zeros(tuple(c64.shape[:2]) + (p64.shape[1],), dtype=xp.float64)
        for j in range(p64.shape[0]):
            acc += c64[:, :, j, None] * p64[j]
        out[e0 : e0 + _CHUNK] = acc


def _power_sums_loops(
    out: np.ndarray, coef: np.ndarray, pw: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    n_b, n_i, n_j = coef.shape
    n_c = pw.shape[1]
    p64 = np.empty((n_j, n_c), np.float64)
    for j in range(n_j):
        for c in range(n_c):
            p64[j, c] = np.float64(pw[j, c])
    acc = np.empty(n_c, np.float64)
    for e in range(n_b):
        for i in range(n_i):
            for c in range(n_c):
                acc[c] = 0.0
            for j in range(n_j):
                w = np.float64(coef[e, i, j])
                pj = p64[j]
                for c in range(n_c):
                    acc[c] += w * pj[c]
            o = out[e, i]
            for c in range(n_c):
                o[c] = np.float32(acc[c])


def _power_sums_example() -> tuple:
    """Arguments of the types :func:`eval_rows` passes (the hottest call)."""
    return (np.empty((1, 1, 1), np.float32), np.zeros((1, 1, 2), np.float32), np.zeros((2, 1), np.float32))


_power_sums = Kernel(_power_sums_loops, _power_sums_numpy, _power_sums_example)


def eval_rows(xp: Any, rows_t: Any, u_pow: Any, out: Any) -> Any:
    """Evaluate ``sum_a rows_t[:, r, a] u[c]^a`` on the (R, C) grid into ``out``.

    Each value is the float64 sum, in the order ``a = 0, 1, ...`` from 0.0, of the exact float64
    products of the float32 inputs, rounded once to float32 (:func:`_power_sums_numpy`): the same
    bits on any machine, compiled or not, and whatever the other emitters of the call.

    Parameters
    ----------
    rows_t : array, shape (B, R, D + 1), float32, C-contiguous
        Per-row coefficients in ``u`` (:func:`row_coefficients`, transposed).
    u_pow : array, shape (D + 1, C), float32
        Powers ``u^a`` of the normalised column coordinates.
    out : array, shape (B, R, C), float32

    Returns
    -------
    array
        ``out``.
    """
    (_power_sums if xp is np else _power_sums_numpy)(out, rows_t, u_pow)  # the definition is xp-generic
    return out
