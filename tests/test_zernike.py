"""Tests for z2t_dask.physics.optics.zernike: index conventions, normalisation, legacy table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from z2t_dask.physics.optics.zernike import (
    LEGACY_21_NM,
    convert_coefficients,
    legacy_valid_modes,
    nm_to_noll,
    nm_to_osa,
    noll_to_nm,
    noll_to_osa,
    osa_to_nm,
    osa_to_noll,
    zernike_basis,
    zernike_nm,
)

# Noll (1976) table 1, j = 1..22.
NOLL_TABLE = [
    (0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2), (3, -1), (3, 1), (3, -3), (3, 3),
    (4, 0), (4, 2), (4, -2), (4, 4), (4, -4), (5, 1), (5, -1), (5, 3), (5, -3), (5, 5),
    (5, -5), (6, 0),
]  # fmt: skip


def _polar_quadrature(n_r: int = 24, n_t: int = 64) -> tuple[np.ndarray, ...]:
    """Exact quadrature for polynomials on the unit disk: Gauss-Legendre in r, uniform in theta."""
    x, w = np.polynomial.legendre.leggauss(n_r)
    r = 0.5 * (x + 1.0)
    wr = 0.5 * w * r  # includes the Jacobian r
    t = 2 * np.pi * np.arange(n_t) / n_t
    rr, tt = np.meshgrid(r, t, indexing="ij")
    ww = np.outer(wr, np.full(n_t, 2 * np.pi / n_t))
    return rr, tt, ww


def test_noll_table_and_known_values() -> None:
    assert [noll_to_nm(j) for j in range(1, 23)] == NOLL_TABLE
    assert noll_to_nm(4) == (2, 0)  # defocus
    assert noll_to_nm(11) == (4, 0)  # primary spherical
    assert osa_to_nm(12) == (4, 0)
    assert osa_to_nm(4) == (2, 0)
    assert noll_to_osa(11) == 12
    assert osa_to_noll(0) == 1
    # even Noll j <-> m > 0 (cos), odd j <-> m < 0 (sin)
    for j in range(2, 200):
        n, m = noll_to_nm(j)
        if m:
            assert (m > 0) == (j % 2 == 0), j


def test_index_round_trips() -> None:
    for j in range(1, 101):
        assert nm_to_noll(*noll_to_nm(j)) == j
        assert osa_to_noll(noll_to_osa(j)) == j
    for j in range(0, 101):
        n, m = osa_to_nm(j)
        assert j == (n * (n + 2) + m) // 2
        assert nm_to_osa(n, m) == j
        assert noll_to_osa(osa_to_noll(j)) == j
    # bijection on full radial orders n = 0..12 (91 modes)
    nms = [(n, m) for n in range(13) for m in range(-n, n + 1, 2)]
    assert sorted(nm_to_noll(n, m) for n, m in nms) == list(range(1, 92))
    assert sorted(nm_to_osa(n, m) for n, m in nms) == list(range(0, 91))


def test_coefficient_vector_round_trips() -> None:
    rng = np.random.default_rng(0)
    for length in range(1, 46):
        c = rng.normal(size=(3, 2, length))
        for a, b in (("noll", "osa"), ("osa", "noll")):
            there = convert_coefficients(c, a, b)
            back = convert_coefficients(there, b, a, length=length)
            assert back.shape == c.shape
            assert np.array_equal(back, c)
            # default length keeps every coefficient, extra entries are zero
            back_full = convert_coefficients(there, b, a)
            assert np.array_equal(back_full[..., :length], c)
            assert not np.any(back_full[..., length:])
    # mapping itself: Noll j=11 (4,0) -> OSA 12; OSA j=3 (2,-2) -> Noll 5
    c = np.zeros(11)
    c[10] = 2.5
    o = convert_coefficients(c, "noll", "osa")
    assert o.shape == (13,) and o[12] == 2.5 and np.count_nonzero(o) == 1
    o = np.zeros(4)
    o[3] = -1.0
    n_ = convert_coefficients(o, "osa", "noll")
    assert n_[4] == -1.0 and np.count_nonzero(n_) == 1
    # full rows map onto full rows: 21 Noll <-> 21 OSA
    assert convert_coefficients(np.ones(21), "noll", "osa").shape == (21,)


def test_convert_coefficients_rejects() -> None:
    with pytest.raises(ValueError, match="fringe"):
        convert_coefficients(np.ones(3), "fringe", "noll")
    with pytest.raises(ValueError, match="length=2"):
        convert_coefficients(np.ones(5), "noll", "osa", length=2)


def test_orthonormality_noll_and_osa() -> None:
    rr, tt, ww = _polar_quadrature()
    for order in ("noll", "osa"):
        z = zernike_basis(21, rr, tt, order=order).reshape(21, -1)
        gram = (z * ww.ravel()) @ z.T / np.pi
        assert np.abs(gram - np.eye(21)).max() < 1e-10, order
    # coarse Cartesian midpoint grid (independent of the quadrature above)
    n = 601
    g = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(g, g, indexing="ij")
    inside = xx**2 + yy**2 <= 1
    z = zernike_basis(21, np.hypot(xx, yy)[inside], np.arctan2(yy, xx)[inside])
    gram = z @ z.T * (2 / n) ** 2 / np.pi
    assert np.abs(gram - np.eye(21)).max() < 3e-3


def test_closed_forms() -> None:
    rng = np.random.default_rng(1)
    rho = rng.uniform(0, 1, 50)
    th = rng.uniform(-np.pi, np.pi, 50)
    np.testing.assert_allclose(zernike_nm(2, 0, rho, th), math.sqrt(3) * (2 * rho**2 - 1))
    np.testing.assert_allclose(zernike_nm(4, 0, rho, th), math.sqrt(5) * (6 * rho**4 - 6 * rho**2 + 1), atol=1e-12)
    np.testing.assert_allclose(zernike_nm(2, 2, rho, th), math.sqrt(6) * rho**2 * np.cos(2 * th))
    np.testing.assert_allclose(zernike_nm(2, -2, rho, th), math.sqrt(6) * rho**2 * np.sin(2 * th))
    np.testing.assert_allclose(
        zernike_nm(3, -1, rho, th), math.sqrt(8) * (3 * rho**3 - 2 * rho) * np.sin(th), atol=1e-12
    )
    np.testing.assert_allclose(zernike_nm(1, 1, rho, th), 2 * rho * np.cos(th))
    np.testing.assert_allclose(zernike_nm(0, 0, rho, th), np.ones(50))
    # basis order: OSA mode k equals Noll mode osa_to_noll(k) - 1
    b_noll = zernike_basis(28, rho, th, order="noll")
    b_osa = zernike_basis(28, rho, th, order="osa")
    for k in range(28):
        j = osa_to_noll(k)
        if j <= 28:
            assert np.array_equal(b_osa[k], b_noll[j - 1])
    assert b_noll.shape == (28, 50)


@pytest.mark.parametrize(
    ("func", "args", "needle"),
    [
        (noll_to_nm, (0,), "j=0"),
        (noll_to_nm, (-3,), "j=-3"),
        (noll_to_nm, (2.5,), "2.5"),
        (noll_to_nm, (True,), "True"),
        (osa_to_nm, (-1,), "j=-1"),
        (nm_to_noll, (3, 0), "(3, 0)"),
        (nm_to_noll, (2, 4), "(2, 4)"),
        (nm_to_osa, (-1, 1), "n=-1"),
        (nm_to_osa, (4, 1), "(4, 1)"),
    ],
)
def test_invalid_indices_raise(func, args, needle) -> None:
    with pytest.raises(ValueError) as exc:
        func(*args)
    assert needle in str(exc.value)


def test_invalid_polynomials_raise() -> None:
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        zernike_nm(3, 2, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="n_modes"):
        zernike_basis(0, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="order"):
        zernike_basis(3, np.zeros(3), np.zeros(3), order="wyant")


def test_legacy_convention() -> None:
    assert len(LEGACY_21_NM) == 21
    valid = legacy_valid_modes()
    assert len(valid) == 13
    assert [l for l, _ in valid] == [0, 1, 2, 4, 5, 8, 9, 10, 13, 14, 16, 17, 20]
    assert (4, 0) not in LEGACY_21_NM
    nolls = [j for _, j in valid]
    assert 11 not in nolls  # spherical missing
    assert dict(valid)[8] == 4  # legacy l = 8 is defocus (2, 0)
    for l, j in valid:
        assert noll_to_nm(j) == LEGACY_21_NM[l]
    # the 8 invalid legacy pairs are exactly those with n - |m| odd
    invalid = [l for l, (n, m) in enumerate(LEGACY_21_NM) if (n - abs(m)) % 2]
    assert invalid == [3, 6, 7, 11, 12, 15, 18, 19]
