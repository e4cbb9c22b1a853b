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
different PSFs).  Both steps are :class:`~z2t_dask.compiled.Kernel` s (compiled loops and their
NumPy definition, equal bit for bit): :func:`row_polynomials` adds float64 products term by term
and rounds once to float32, :func:`eval_rows` adds float32 products term by term.  Their NumPy
definitions are element-wise ufunc calls, which NumPy never fuses into multiply-adds; the compiled
loops keep each product and sum apart too (numba compiles without ``fastmath``), and the tests
compare the two bit for bit.  Nothing mixes emitters: an emitter's phase
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

__all__ = ["combine_modes", "eval_rows", "powers", "row_polynomials", "zernike_monomials"]

#: Emitters the NumPy definitions handle at a time (bounds their temporaries).
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


def _check_mode_count(coeffs: Any, monomials: Any) -> None:
    """Raise ValueError if there are more coefficient columns than monomial modes."""
    if coeffs.shape[1] > monomials.shape[0]:
        n_k, n_m = coeffs.shape[1], monomials.shape[0]
        raise ValueError(f"{n_k} Zernike coefficients per emitter, but monomials of only {n_m} modes")


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
        The modes' terms added one by one, ``k = first, first + 1, ...``, from 0.0 (element-wise
        float64 products and sums, which NumPy never fuses: the same bits on any machine); row
        ``i`` depends only on ``coeffs[i]``.
    """
    _check_mode_count(coeffs, monomials)
    c = xp.asarray(coeffs, dtype=xp.float64)
    out = xp.zeros((c.shape[0],) + tuple(monomials.shape[1:]), dtype=xp.float64)
    for j in range(first, c.shape[1]):
        out += c[:, j, None, None] * monomials[j][None]
    return out


def _row_polys_numpy(
    out: np.ndarray, coeffs: np.ndarray, monomials: np.ndarray, first: int, linear: np.ndarray, v_pow: np.ndarray
) -> None:
    """Per-row coefficients in ``u`` of each emitter's polynomial (the definition of :func:`row_polynomials`).

    ``poly = combine_modes(coeffs)`` (float64, modes in order from 0.0), then ``poly[0, 0] +=
    linear[:, 0]``, ``poly[1, 0] += linear[:, 1]``, ``poly[0, 1] += linear[:, 2]``, then
    ``out[e, r, a] = float32(sum_b poly[e, a, b] * v_pow[b, r])``, ``b`` in order from 0.0 (float64).

    Parameters
    ----------
    out : ndarray, (B, R, D + 1) float32
    coeffs : ndarray, (B, K) float64
    monomials : ndarray, (n, D + 1, D + 1) float64
    first : int
    linear : ndarray, (B, 3) float64
        Terms added to the constant, ``u`` and ``v`` coefficients (0.0 adds nothing: a sum
        started from +0.0 is never -0.0).
    v_pow : ndarray, (D + 1, R) float64
    """
    xp = _namespace(out)
    for e0 in range(0, coeffs.shape[0], _CHUNK):
        sl = slice(e0, e0 + _CHUNK)
        poly = combine_modes(xp, coeffs[sl], monomials, first)
        poly[:, 0, 0] += linear[sl, 0]
        poly[:, 1, 0] += linear[sl, 1]
        poly[:, 0, 1] += linear[sl, 2]
        acc = xp.zeros(tuple(poly.shape[:2]) + (v_pow.shape[1],), dtype=xp.float64)
        for j in range(poly.shape[2]):
            acc += poly[:, :, j, None] * v_pow[j]
        out[sl] = acc.transpose(0, 2, 1)


def _row_polys_loops(
    out: np.ndarray, coeffs: np.ndarray, monomials: np.ndarray, first: int, linear: np.ndarray, v_pow: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    n_b, n_k = coeffs.shape
    n_a, n_r = v_pow.shape
    poly = np.empty((n_a, n_a), np.float64)
    acc = np.empty(n_r, np.float64)
    for e in range(n_b):
        for a in range(n_a):
            for b in range(n_a):
                poly[a, b] = 0.0
        for j in range(first, n_k):
            w = coeffs[e, j]
            m = monomials[j]
            for a in range(n_a):
                for b in range(n_a):
                    poly[a, b] += w * m[a, b]
        poly[0, 0] += linear[e, 0]
        poly[1, 0] += linear[e, 1]
        poly[0, 1] += linear[e, 2]
        for a in range(n_a):
            for r in range(n_r):
                acc[r] = 0.0
            for b in range(n_a):
                w = poly[a, b]
                v = v_pow[b]
                for r in range(n_r):
                    acc[r] += w * v[r]
            for r in range(n_r):
                out[e, r, a] = np.float32(acc[r])


def _row_polys_example() -> tuple:
    """Arguments of the types :func:`row_polynomials` passes (the monomials are read-only, as cached)."""
    mono = np.zeros((2, 2, 2))
    mono.setflags(write=False)
    return (np.empty((1, 1, 2), np.float32), np.zeros((1, 2)), mono, 1, np.zeros((1, 3)), np.zeros((2, 1)))


_row_polys = Kernel(_row_polys_loops, _row_polys_numpy, _row_polys_example)


def row_polynomials(xp: Any, coeffs: Any, monomials: Any, v_pow: Any, linear: Any, first: int = 1) -> Any:
    """Per-row coefficients in ``u`` of the pupil polynomial of each emitter (float32).

    Parameters
    ----------
    xp : module
        Array module.
    coeffs : array, shape (B, K)
        Zernike coefficients (any unit; the polynomial has the same unit).
    monomials : array, shape (n, D + 1, D + 1), n >= K
        From :func:`zernike_monomials`.
    v_pow : array, shape (D + 1, R), float64
        Powers ``v^b`` of the normalised ``ky / k_cut`` of the rows (:func:`powers`).
    linear : array, shape (B, 3), float64
        Terms added to the polynomial's constant, ``u`` and ``v`` coefficients (the pupil
        amplitude's 1, the sub-pixel shift's ramps).
    first : int
        First mode used (1 skips piston).

    Returns
    -------
    array, shape (B, R, D + 1), float32, C-contiguous
        ``out[e, r, a] = sum_b poly[e, a, b] v[r]^b`` with ``poly`` the modes' sum plus ``linear``:
        float64 terms added in a fixed order from 0.0, rounded once (:func:`_row_polys_numpy`:
        the same bits on any machine, whatever the other emitters of the call). The input of
        :func:`eval_rows`.
    """
    _check_mode_count(coeffs, monomials)
    c = xp.ascontiguousarray(coeffs, dtype=xp.float64)
    lin = xp.ascontiguousarray(linear, dtype=xp.float64)
    out = xp.empty((c.shape[0], v_pow.shape[1], monomials.shape[1]), dtype=xp.float32)
    (_row_polys if xp is np else _row_polys_numpy)(out, c, monomials, int(first), lin, v_pow)
    return out


def _eval_rows_numpy(out: np.ndarray, rows_t: np.ndarray, u_pow: np.ndarray) -> None:
    """``out[e, r, c] = sum_a rows_t[e, r, a] * u_pow[a, c]`` in float32, ``a`` in order, from 0.0.

    Each product is rounded to float32, then added (NumPy's two ufunc calls; the compiled loops
    keep them apart too, as numba compiles without ``fastmath``).

    Parameters
    ----------
    out : ndarray, (B, R, C) float32
        The pupil phase (or amplitude) on the pupil rectangle.
    rows_t : ndarray, (B, R, D + 1) float32
        Per-row coefficients in ``u``.
    u_pow : ndarray, (D + 1, C) float32
        Powers ``u^a`` of the normalised column coordinates.
    """
    xp = _namespace(out)
    for e0 in range(0, rows_t.shape[0], _CHUNK):
        r = rows_t[e0 : e0 + _CHUNK]
        acc = xp.zeros(tuple(r.shape[:2]) + (u_pow.shape[1],), dtype=xp.float32)
        for a in range(u_pow.shape[0]):
            acc += r[:, :, a, None] * u_pow[a]
        out[e0 : e0 + _CHUNK] = acc


def _eval_rows_loops(
    out: np.ndarray, rows_t: np.ndarray, u_pow: np.ndarray
) -> None:  # pragma: no cover - compiled by numba; the tests run it compiled and as Python
    n_b, n_r, n_a = rows_t.shape
    n_c = u_pow.shape[1]
    for e in range(n_b):
        for r in range(n_r):
            o = out[e, r]
            for c in range(n_c):
                o[c] = np.float32(0.0)
            for a in range(n_a):
                w = rows_t[e, r, a]
                ua = u_pow[a]
                for c in range(n_c):
                    o[c] = o[c] + w * ua[c]


def _eval_rows_example() -> tuple:
    """Arguments of the types :func:`eval_rows` passes."""
    return (np.empty((1, 1, 1), np.float32), np.zeros((1, 1, 2), np.float32), np.zeros((2, 1), np.float32))


_eval_rows = Kernel(_eval_rows_loops, _eval_rows_numpy, _eval_rows_example)


def eval_rows(xp: Any, rows_t: Any, u_pow: Any, out: Any) -> Any:
    """Evaluate ``sum_a rows_t[:, r, a] u[c]^a`` on the (R, C) grid into ``out``.

    float32 products and sums in the order ``a = 0, 1, ...`` from 0.0 (:func:`_eval_rows_numpy`):
    the same bits on any machine, compiled or not, and whatever the other emitters of the call.

    Parameters
    ----------
    rows_t : array, shape (B, R, D + 1), float32, C-contiguous
        Per-row coefficients in ``u`` (:func:`row_polynomials`).
    u_pow : array, shape (D + 1, C), float32
        Powers ``u^a`` of the normalised column coordinates.
    out : array, shape (B, R, C), float32

    Returns
    -------
    array
        ``out``.
    """
    (_eval_rows if xp is np else _eval_rows_numpy)(out, rows_t, u_pow)  # the definition is xp-generic
    return out
