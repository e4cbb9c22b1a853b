"""Zernike polynomials, index conventions and coefficient conversions.

Conventions
-----------
* **Normalisation**: RMS-unit ("orthonormal") over the unit disk,
  ``Z_n^m = N_n^m R_n^|m|(rho) T_m(theta)`` with
  ``N_n^m = sqrt(2 (n + 1) / (1 + delta_m0))`` so that
  ``(1/pi) * integral_disk Z_a Z_b = delta_ab``.  A coefficient of 1 rad therefore means
  1 rad RMS of wavefront phase over the pupil.
* **Angular part**: ``m > 0 -> cos(m theta)``, ``m < 0 -> sin(|m| theta)``, ``m = 0 -> 1``;
  ``theta`` is measured counter-clockwise from the +x axis (``theta = atan2(y, x)``).
* **Noll** (Noll 1976, JOSA 66:207): single index ``j >= 1``; even ``j`` <-> ``m > 0`` (cos),
  odd ``j`` <-> ``m < 0`` (sin), ``m = 0`` any parity.  j = 1 piston, 2/3 tip/tilt, 4 defocus
  (2, 0), 5/6 astigmatism, 7/8 coma, 11 primary spherical (4, 0).
* **OSA/ANSI** (ANSI Z80.28): single index ``j = (n (n + 2) + m) / 2 >= 0``; j = 0 piston,
  4 defocus, 12 primary spherical.
* **Coefficient vectors**: a Noll vector has index 0 <-> Noll j = 1 (piston); an OSA vector has
  index 0 <-> OSA j = 0 (piston).  :func:`convert_coefficients` reorders the last axis.
* **Legacy convention** (:data:`LEGACY_21_NM`): the original tool's home-made 21-mode ordering,
  see :func:`legacy_valid_modes`.

All functions are pure array code; functions evaluating polynomials take an array module ``xp``
(default :mod:`numpy`) so that CuPy arrays can be used.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

__all__ = [
    "LEGACY_21_NM",
    "convert_coefficients",
    "legacy_valid_modes",
    "nm_to_noll",
    "nm_to_osa",
    "noll_to_nm",
    "noll_to_osa",
    "osa_to_nm",
    "osa_to_noll",
    "radial_polynomial",
    "zernike_basis",
    "zernike_nm",
]

Order = Literal["noll", "osa"]


# --------------------------------------------------------------------------- index helpers
def _as_int(value: Any, name: str) -> int:
    """Return ``value`` as a Python int, raising ``ValueError`` naming it if not integral."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _check_nm(n: Any, m: Any) -> tuple[int, int]:
    n_i = _as_int(n, "n")
    m_i = _as_int(m, "m")
    if n_i < 0:
        raise ValueError(f"n must be >= 0, got n={n_i}")
    if abs(m_i) > n_i:
        raise ValueError(f"|m| must be <= n, got (n, m)=({n_i}, {m_i})")
    if (n_i - abs(m_i)) % 2:
        raise ValueError(f"n - |m| must be even, got (n, m)=({n_i}, {m_i})")
    return n_i, m_i


def noll_to_nm(j: int) -> tuple[int, int]:
    """Convert a Noll index to radial/azimuthal orders.

    Parameters
    ----------
    j : int
        Noll index, ``j >= 1`` (1 = piston).

    Returns
    -------
    (n, m) : tuple of int
        Radial order ``n`` and signed azimuthal frequency ``m`` (``m > 0`` cos, ``m < 0`` sin).

    Raises
    ------
    ValueError
        If ``j`` is not an integer ``>= 1``.
    """
    j_i = _as_int(j, "j")
    if j_i < 1:
        raise ValueError(f"Noll index j must be >= 1, got j={j_i}")
    n = (math.isqrt(8 * j_i - 7) - 1) // 2  # largest n with n(n+1)/2 < j
    k = j_i - n * (n + 1) // 2 - 1  # position inside radial row n, 0-based
    m_abs = 2 * ((k + 1) // 2) if n % 2 == 0 else 2 * (k // 2) + 1
    if m_abs == 0:
        return n, 0
    return n, (m_abs if j_i % 2 == 0 else -m_abs)


def nm_to_noll(n: int, m: int) -> int:
    """Convert ``(n, m)`` to the Noll index.

    Parameters
    ----------
    n : int
        Radial order, ``n >= 0``.
    m : int
        Signed azimuthal frequency, ``|m| <= n`` and ``n - |m|`` even.

    Returns
    -------
    int
        Noll index ``j >= 1``.

    Raises
    ------
    ValueError
        If ``(n, m)`` is not a valid Zernike pair.
    """
    n_i, m_i = _check_nm(n, m)
    j0 = n_i * (n_i + 1) // 2
    if m_i == 0:
        return j0 + 1
    j = j0 + abs(m_i)  # the two candidates are j and j + 1
    want_even = m_i > 0
    if (j % 2 == 0) != want_even:
        j += 1
    return j


def osa_to_nm(j: int) -> tuple[int, int]:
    """Convert an OSA/ANSI index to ``(n, m)``.

    Parameters
    ----------
    j : int
        OSA/ANSI index, ``j >= 0`` (0 = piston); ``j = (n (n + 2) + m) / 2``.

    Returns
    -------
    (n, m) : tuple of int

    Raises
    ------
    ValueError
        If ``j`` is not an integer ``>= 0``.
    """
    j_i = _as_int(j, "j")
    if j_i < 0:
        raise ValueError(f"OSA index j must be >= 0, got j={j_i}")
    n = (math.isqrt(8 * j_i + 1) - 1) // 2
    m = 2 * j_i - n * (n + 2)
    return n, m


def nm_to_osa(n: int, m: int) -> int:
    """Convert ``(n, m)`` to the OSA/ANSI index ``(n (n + 2) + m) / 2``.

    Raises
    ------
    ValueError
        If ``(n, m)`` is not a valid Zernike pair.
    """
    n_i, m_i = _check_nm(n, m)
    return (n_i * (n_i + 2) + m_i) // 2


def noll_to_osa(j: int) -> int:
    """Convert a Noll index (``>= 1``) to the OSA/ANSI index (``>= 0``)."""
    return nm_to_osa(*noll_to_nm(j))


def osa_to_noll(j: int) -> int:
    """Convert an OSA/ANSI index (``>= 0``) to the Noll index (``>= 1``)."""
    return nm_to_noll(*osa_to_nm(j))


def _check_order(order: str, name: str) -> Literal["noll", "osa"]:
    low = order.lower() if isinstance(order, str) else None
    if low == "noll":
        return "noll"
    if low == "osa":
        return "osa"
    raise ValueError(f"{name} must be 'noll' or 'osa', got {order!r}")


def _index_to_nm(k: int, order: str) -> tuple[int, int]:
    """Array position ``k`` (0-based) of an ``order`` coefficient vector -> ``(n, m)``."""
    return noll_to_nm(k + 1) if order == "noll" else osa_to_nm(k)


def _nm_to_index(n: int, m: int, order: str) -> int:
    """``(n, m)`` -> array position (0-based) in an ``order`` coefficient vector."""
    return nm_to_noll(n, m) - 1 if order == "noll" else nm_to_osa(n, m)


def convert_coefficients(coeffs: Any, src: Order, dst: Order, length: int | None = None, *, xp: Any = np) -> Any:
    """Reorder Zernike coefficient vectors between Noll and OSA/ANSI conventions.

    Parameters
    ----------
    coeffs : array_like, shape (..., K)
        Coefficients along the last axis in the ``src`` convention (any unit; values are copied
        unchanged).  Noll vectors: position 0 <-> Noll j = 1; OSA vectors: position 0 <-> OSA j = 0.
    src, dst : {"noll", "osa"}
        Source and target conventions.
    length : int, optional
        Length of the output last axis.  Default: the highest target position needed by any
        source position + 1 (missing modes are zero-filled).  A shorter ``length`` is allowed
        only if the dropped coefficients are all zero (else ``ValueError``); this makes round
        trips exact: ``convert_coefficients(convert_coefficients(c, a, b), b, a, c.shape[-1])``
        equals ``c`` bit for bit.
    xp : module, optional
        Array module (default numpy).

    Returns
    -------
    array, shape (..., L)
        Same dtype as ``coeffs``.
    """
    src = _check_order(src, "src")
    dst = _check_order(dst, "dst")
    c = xp.asarray(coeffs)
    if c.ndim == 0:
        raise ValueError("coeffs must have at least one axis (the mode axis)")
    k_src = c.shape[-1]
    targets = [_nm_to_index(*_index_to_nm(k, src), dst) for k in range(k_src)]
    natural = (max(targets) + 1) if targets else 0
    if length is None:
        n_out = natural
    else:
        n_out = _as_int(length, "length")
        if n_out < 0:
            raise ValueError(f"length must be >= 0, got length={n_out}")
    out = xp.zeros(c.shape[:-1] + (n_out,), dtype=c.dtype)
    keep_src = [k for k, t in enumerate(targets) if t < n_out]
    drop_src = [k for k, t in enumerate(targets) if t >= n_out]
    if drop_src and bool(xp.any(c[..., drop_src] != 0)):
        raise ValueError(f"length={n_out} would drop non-zero {src} coefficients at positions {drop_src}")
    if keep_src:
        out[..., [targets[k] for k in keep_src]] = c[..., keep_src]
    return out


# --------------------------------------------------------------------------- polynomials
def radial_polynomial(n: int, m: int, rho: Any, xp: Any = np) -> Any:
    """Zernike radial polynomial ``R_n^|m|(rho)`` (un-normalised, ``R(1) = 1``).

    Parameters
    ----------
    n, m : int
        Valid Zernike pair (sign of ``m`` ignored).
    rho : array
        Normalised radius (dimensionless, 1 = pupil edge).
    xp : module, optional
        Array module.

    Returns
    -------
    array
        Same shape and (floating) dtype as ``rho``.
    """
    n_i, m_i = _check_nm(n, m)
    m_abs = abs(m_i)
    rho = xp.asarray(rho)
    # Horner evaluation in rho^2: R = rho^|m| * sum_k c_k rho^(2k)   (exact integer coefficients)
    n_terms = (n_i - m_abs) // 2
    coeffs = []
    for s in range(n_terms + 1):  # power rho^(n - 2s)
        coeffs.append(
            (-1) ** s
            * math.factorial(n_i - s)
            // (math.factorial(s) * math.factorial((n_i + m_abs) // 2 - s) * math.factorial((n_i - m_abs) // 2 - s))
        )
    # coeffs[s] multiplies rho^(n-2s) = rho^|m| * (rho^2)^(n_terms - s)
    rho2 = rho * rho
    acc = xp.zeros_like(rho) + float(coeffs[0])
    for s in range(1, n_terms + 1):
        acc = acc * rho2 + float(coeffs[s])
    if m_abs:
        acc = acc * rho**m_abs
    return acc


def zernike_nm(n: int, m: int, rho: Any, theta: Any, xp: Any = np) -> Any:
    """RMS-normalised Zernike polynomial ``Z_n^m(rho, theta)``.

    Parameters
    ----------
    n : int
        Radial order ``n >= 0``.
    m : int
        Signed azimuthal frequency: ``m > 0 -> cos(m theta)``, ``m < 0 -> sin(|m| theta)``.
    rho : array
        Normalised radius (dimensionless).  Values are meaningful for ``rho <= 1``; the caller
        masks the outside of the pupil.
    theta : array
        Azimuth in radians, counter-clockwise from +x; broadcastable against ``rho``.
    xp : module, optional
        Array module (default numpy).

    Returns
    -------
    array
        ``sqrt(2 (n + 1) / (1 + delta_m0)) R_n^|m|(rho) T_m(theta)``, broadcast shape.

    Raises
    ------
    ValueError
        If ``(n, m)`` is invalid (``n - |m|`` odd, ``|m| > n``, ``n < 0``).
    """
    n_i, m_i = _check_nm(n, m)
    rho = xp.asarray(rho)
    if not np.issubdtype(rho.dtype, np.floating):
        rho = rho.astype(xp.float64)
    theta = xp.asarray(theta, dtype=rho.dtype)
    norm = math.sqrt(2.0 * (n_i + 1) / (2.0 if m_i == 0 else 1.0))
    radial = radial_polynomial(n_i, m_i, rho, xp=xp)
    if m_i > 0:
        ang = xp.cos(m_i * theta)
    elif m_i < 0:
        ang = xp.sin(-m_i * theta)
    else:
        return (norm * radial) + xp.zeros_like(theta)
    return (norm * radial) * ang


def zernike_basis(n_modes: int, rho: Any, theta: Any, order: Order = "noll", xp: Any = np) -> Any:
    """Stack of the first ``n_modes`` RMS-normalised Zernike polynomials.

    Parameters
    ----------
    n_modes : int
        Number of modes, ``>= 1``.
    rho, theta : array
        Normalised radius and azimuth (radians, counter-clockwise from +x), same shape.
    order : {"noll", "osa"}
        Mode ``k`` is Noll ``j = k + 1`` (``"noll"``) or OSA ``j = k`` (``"osa"``).
    xp : module, optional
        Array module.

    Returns
    -------
    array, shape (n_modes, *rho.shape)
    """
    n_m = _as_int(n_modes, "n_modes")
    if n_m < 1:
        raise ValueError(f"n_modes must be >= 1, got n_modes={n_m}")
    order = _check_order(order, "order")
    rho = xp.asarray(rho)
    if not np.issubdtype(rho.dtype, np.floating):
        rho = rho.astype(xp.float64)
    theta = xp.asarray(theta, dtype=rho.dtype)
    rho, theta = xp.broadcast_arrays(rho, theta)
    out = xp.empty((n_m,) + rho.shape, dtype=rho.dtype)
    for k in range(n_m):
        out[k] = zernike_nm(*_index_to_nm(k, order), rho, theta, xp=xp)
    return out


# --------------------------------------------------------------------------- legacy convention
#: The original tool's home-made 21-mode ordering ("legacy convention"), position l = 0..20 ->
#: (n, m), produced by ``n = floor(sqrt(l))``, ``|m| = ceil((2n - (l - n^2)) / 2)``, sign + for
#: even ``l - n^2``.  It is neither Noll, OSA/ANSI nor Fringe: 8 of the 21 pairs have ``n - |m|``
#: odd (their radial polynomial does not exist; the original's files for them are all zero),
#: and primary spherical (4, 0) is absent.  Read legacy Zmaps through :func:`legacy_valid_modes`.
LEGACY_21_NM: tuple[tuple[int, int], ...] = (
    (0, 0), (1, 1), (1, -1), (1, 0), (2, 2), (2, -2), (2, 1), (2, -1), (2, 0),
    (3, 3), (3, -3), (3, 2), (3, -2), (3, 1), (3, -1), (3, 0),
    (4, 4), (4, -4), (4, 3), (4, -3), (4, 2),
)  # fmt: skip


def legacy_valid_modes() -> tuple[tuple[int, int], ...]:
    """Parity-valid modes of the legacy 21-mode convention and their Noll indices.

    Returns
    -------
    tuple of (l, j)
        For each legacy position ``l`` (0..20) whose pair ``LEGACY_21_NM[l] = (n, m)`` has
        ``n - |m|`` even, the pair ``(l, j)`` with ``j`` the Noll index (>= 1) of ``(n, m)``,
        in increasing ``l``.  There are 13 of them; the other 8 legacy positions carry no mode.

    Notes
    -----
    The legacy basis images were additionally RMS-normalised over a *square* whose circumscribed
    circle is the unit disk, so a legacy coefficient is not exactly a Noll RMS coefficient; this
    function only maps indices.
    """
    return tuple((l, nm_to_noll(n, m)) for l, (n, m) in enumerate(LEGACY_21_NM) if (n - abs(m)) % 2 == 0)
