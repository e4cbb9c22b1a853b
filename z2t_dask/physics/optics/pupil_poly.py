"""Zernike polynomials as bivariate monomial polynomials, for fast pupil-phase evaluation.

A Zernike mode of radial order ``n`` is a polynomial of total degree ``n`` in the normalised
pupil coordinates ``u = kx / k_cut`` and ``v = ky / k_cut`` (``rho^|m| cos(m theta) =
Re (u + i v)^|m|``, ``rho^2 = u^2 + v^2``).  A coefficient vector therefore collapses into one
bivariate polynomial: per pupil row, a polynomial in ``u`` of degree ``D`` (the highest radial order).
Its coefficients come from two small float64 products per emitter (modes -> monomials ->
per-row coefficients) and it is evaluated on the separable grid as one float32
``(R, D + 1) @ (D + 1, C)`` product per emitter, instead of ``2 K`` element-wise passes over the
pupil for ``K`` modes accumulated one by one.

Nothing mixes emitters: NumPy's stacked ``matmul`` makes one BLAS call per emitter, always with
the same shapes, so the kernel and its reduction order are the same for every emitter whatever
the batch (the earlier ``(B, K) @ (K, P)`` form let the batch size pick the kernel tiles).  An
emitter's phase is therefore bit-identical whatever other emitters share the call (tested
across batch sizes and BLAS thread counts in ``tests/test_psf.py``).

Conventions are those of :mod:`z2t_dask.physics.optics.zernike` (RMS-normalised, ``theta`` counter-
clockwise from +x, Noll order by default).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from z2t_dask.physics.optics.zernike import noll_to_nm, osa_to_nm

__all__ = ["zernike_monomials", "combine_modes", "row_coefficients", "eval_rows"]


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
        One ``(1, K) @ (K, (D + 1)^2)`` product per emitter (a BLAS call of fixed shape):
        row ``i`` depends only on ``coeffs[i]``.
    """
    b, k = coeffs.shape
    n = monomials.shape[0]  # always the full mode count: the product's shape never varies
    c = xp.zeros((b, 1, n), dtype=xp.float64)
    c[:, 0, first:k] = coeffs[:, first:]
    return xp.matmul(c, monomials.reshape(n, -1)).reshape((b,) + tuple(monomials.shape[1:]))


def row_coefficients(xp: Any, poly: Any, v_pow: Any) -> Any:
    """Coefficients in ``u`` of each pupil row: ``out[:, a, r] = sum_b poly[:, a, b] v[r]^b``.

    Parameters
    ----------
    poly : array, shape (B, D + 1, D + 1), float64
    v_pow : array, shape (D + 1, R), float64
        Powers ``v^b`` of the normalised ``ky / k_cut`` of the rows.

    Returns
    -------
    array, shape (B, D + 1, R), float64
        One ``(D + 1, D + 1) @ (D + 1, R)`` product per emitter.
    """
    return xp.matmul(poly, v_pow)


def eval_rows(xp: Any, rows_t: Any, u_pow: Any, out: Any) -> Any:
    """Evaluate ``sum_a rows_t[:, r, a] u[c]^a`` on the (R, C) grid into ``out``.

    One small matrix product per emitter, ``(R, D + 1) @ (D + 1, C)``: NumPy's stacked
    ``matmul`` makes one BLAS call per emitter with the same shapes, so an emitter's values do
    not depend on the other emitters of the batch (the shapes, hence the kernel and its
    reduction order, are fixed; tested across batch sizes and BLAS thread counts).

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
    return xp.matmul(rows_t, u_pow, out=out)
