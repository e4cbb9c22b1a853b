"""Exact camera-chain pmfs and the lookup sampler: moments, independent quadrature, chi-square, routing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from z2t_dask.physics.camera import EMCCD, SCMOS
from z2t_dask.physics.camera.pmf import (
    DiscreteSampler,
    emccd_adu_pmf,
    emccd_sampler,
    linear_adu_pmf,
    linear_sampler,
    poisson_pmf,
)


def chi2_pvalue(draws: np.ndarray, values: np.ndarray, pmf: np.ndarray) -> float:
    """Chi-square p-value of integer draws against ``pmf`` over ``values`` (bins with >= 5 expected; rest pooled)."""
    draws = np.ravel(draws)
    counts = np.bincount(np.searchsorted(values, draws), minlength=values.size)
    assert counts.sum() == draws.size and np.all(np.isin(np.unique(draws), values))
    expected = pmf * draws.size
    keep = expected >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1]
        obs[-1] += counts[~keep].sum()
        exp[-1] += expected[~keep].sum()
    return float(stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), obs.size - 1))


# --------------------------------------------------------------------------- pmfs


@pytest.mark.parametrize(
    ("lam", "gain", "sigma", "s", "b"),
    [(45.002, 100.0, 74.4, 45.0, 100.0), (0.3, 300.0, 20.0, 10.0, 50.0), (8.0, 5.0, 3.0, 1.0, 20.0)],
)
def test_emccd_pmf_has_the_chain_moments(lam, gain, sigma, s, b):
    k, p = emccd_adu_pmf(lam, gain, sigma, s, b, 2**16 - 1)
    assert p.sum() == pytest.approx(1.0, abs=1e-12) and np.all(p >= 0)
    assert p[0] < 1e-12 and p[-1] < 1e-12  # no clipping: the moments are those of the unclipped chain
    mean = (k * p).sum()
    var = ((k - mean) ** 2 * p).sum()
    # E = lam g / s + b; Var = (2 lam g² + sigma²) / s² (compound Poisson-exponential + read noise) + 1/12 (rounding)
    assert mean == pytest.approx(lam * gain / s + b, rel=1e-9)
    assert var == pytest.approx((2 * lam * gain**2 + sigma**2) / s**2 + 1 / 12, rel=2e-4)


def test_emccd_pmf_converged_and_equal_to_independent_quadrature():
    lam, gain, sigma, s, b = 3.0, 100.0, 50.0, 20.0, 100.0
    k, p = emccd_adu_pmf(lam, gain, sigma, s, b, 2**16 - 1)
    k2, p2 = emccd_adu_pmf(lam, gain, sigma, s, b, 2**16 - 1, refine=3)
    assert np.array_equal(k, k2) and np.abs(np.cumsum(p) - np.cumsum(p2)).max() < 1e-12
    cdf = np.cumsum(p)

    def cdf_quad(t: float) -> float:
        # P(Gamma(N, g) + e <= t) = e^-lam Phi(t/sigma) + sum_n Pois(n) int phi(e) P(Gamma(n, g) <= t - e) de
        def integrand(e: float) -> float:
            n = np.arange(1, 40)
            return (
                stats.norm.pdf(e, scale=sigma) * (stats.poisson.pmf(n, lam) * special.gammainc(n, (t - e) / gain)).sum()
            )

        lo, hi = -12 * sigma, min(t, 12 * sigma)  # the kink of P(Gamma <= t - e) at e = t is an endpoint
        cont = integrate.quad(integrand, lo, hi, limit=400, epsabs=1e-14, epsrel=1e-12)[0] if hi > lo else 0.0
        return math.exp(-lam) * stats.norm.cdf(t / sigma) + cont

    for j in (0, int(np.argmax(p)) - 3, int(np.argmax(p)), 150, 300):
        t = (k[j] + 0.5 - b) * s
        assert cdf[j] == pytest.approx(cdf_quad(t), abs=1e-10), j


def test_linear_pmf_moments_and_clipping():
    k, p = linear_adu_pmf(20.0, 0.5, 1.4, 100.0, 2**16 - 1)
    mean = (k * p).sum()
    assert mean == pytest.approx(20 * 0.5 + 100, rel=1e-10)
    assert ((k - mean) ** 2 * p).sum() == pytest.approx(20 * 0.25 + 1.4**2 + 1 / 12, rel=1e-3)
    # a low offset clips at 0: the first value carries all the mass below it
    k0, p0 = linear_adu_pmf(5.0, 1.0, 2.0, -3.0, 255)
    assert k0[0] == 0 and p0[0] == pytest.approx(
        sum(stats.poisson.pmf(n, 5.0) * stats.norm.cdf((0.5 + 3.0 - n) / 2.0) for n in range(60)), abs=1e-12
    )
    # and at max_adu: the last value carries the upper tail
    k1, p1 = linear_adu_pmf(300.0, 1.0, 2.0, 0.0, 255)
    assert k1[-1] == 255 and p1[-1] == pytest.approx(
        1 - sum(stats.poisson.pmf(n, 300.0) * stats.norm.cdf((254.5 - n) / 2.0) for n in range(600)), abs=1e-10
    )


def test_untabulated_chains_return_none():
    assert emccd_sampler(10.0, 100.0, 0.0, 45.0, 100.0, 65535, "uint16") is None  # no read noise: ties
    assert emccd_sampler(0.0, 100.0, 74.4, 45.0, 100.0, 65535, "uint16") is None  # nothing to draw
    assert emccd_sampler(1e7, 1000.0, 74.4, 45.0, 100.0, 65535, "uint16") is None  # table too large
    assert linear_sampler(10.0, 0.5, 0.0, 100.0, 65535, "uint16") is None
    assert EMCCD(read_noise_e=0.0).floor_sampler(50.0) is None
    assert SCMOS(offset=np.full((4, 4), 100.0)).floor_sampler(50.0) is None  # per-pixel maps


# --------------------------------------------------------------------------- sampler


def test_sampler_is_exact_on_cell_boundaries_and_odd_sizes():
    # CDF steps exactly on 16-bit cell edges and strictly inside cells
    values = np.array([3, 7, 9, 12], np.int32)
    pmf = np.array([0.25, 0.25 + 1e-7, 0.5 - 2e-7, 1e-7])
    smp = DiscreteSampler.from_pmf(values, pmf)
    draws = smp.sample(np.random.default_rng(1), 2_000_003)
    assert draws.dtype == np.int32 and draws.size == 2_000_003
    assert chi2_pvalue(draws, values, pmf) > 1e-4
    assert abs((draws == 3).mean() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / draws.size)
    # same generator state, same draws
    a = smp.sample(np.random.default_rng(5), 1001)
    assert np.array_equal(a, smp.sample(np.random.default_rng(5), 1001))


def _reference_draws(smp: DiscreteSampler, rng: np.random.Generator, size: int) -> np.ndarray:
    """The sampler's definition written out: value of the cell, CDF search for straddling cells."""
    cells = rng.bit_generator.random_raw(-(-size // 4)).view(np.uint16)[:size]
    lo_cell = np.minimum(np.searchsorted(smp.cdf, cells / 2.0**16, side="right"), smp.values.size - 1)
    hi_cell = np.minimum(np.searchsorted(smp.cdf, (cells + 1.0) / 2.0**16, side="left"), smp.values.size - 1)
    out = smp.values[lo_cell]
    straddle = np.flatnonzero(lo_cell != hi_cell)
    u = (rng.random(straddle.size) + cells[straddle]) * 2.0**-16
    out[straddle] = smp.values[np.minimum(np.searchsorted(smp.cdf, u, side="right"), smp.values.size - 1)]
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: EMCCD().floor_sampler(100.0),  # uint16 ADU: straddling cells marked with 65535
        lambda: EMCCD(bit_depth=8, baseline=5.0, e_per_adu=400.0).floor_sampler(2.0),  # uint8, clipped at 255
        lambda: DiscreteSampler.from_pmf(np.arange(256, dtype=np.uint8), np.full(256, 1 / 256)),  # no free value
        lambda: DiscreteSampler.from_pmf(np.array([-3.0, 0.5, 2.0], np.float32), np.array([0.3, 0.3, 0.4])),
    ],
)
def test_sampler_draws_are_its_definition(make):
    # the one-gather lookup (a marked table) or the two-gather one: the inverse-CDF draw, same stream use
    smp = make()
    for seed in range(3):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        got = smp.sample(r1, 262_147)
        assert got.dtype == smp.values.dtype
        assert np.array_equal(got, _reference_draws(smp, r2, 262_147))
        assert r1.random() == r2.random()  # the same number of uniforms consumed


@pytest.mark.parametrize("lam", [0.01, 2.5, 45.0, 3000.0])
def test_poisson_sampler_matches_scipy(lam):
    n, p = poisson_pmf(lam)
    assert np.allclose(p, stats.poisson.pmf(n, lam), rtol=1e-9, atol=1e-300)
    smp = DiscreteSampler.from_pmf(n.astype(np.int64), p)
    assert chi2_pvalue(smp.sample(np.random.default_rng(2), 500_000), n.astype(np.int64), p) > 1e-4


def test_sampler_rejects_bad_tables():
    with pytest.raises(ValueError, match="sum to 1"):
        DiscreteSampler.from_pmf(np.arange(3), np.array([0.5, 0.2, 0.2]))
    with pytest.raises(ValueError, match="non-decreasing"):
        DiscreteSampler(np.arange(3), np.array([0.5, 0.4, 1.0]))


# --------------------------------------------------------------------------- camera routing


def test_emccd_background_pixels_follow_the_explicit_chain():
    """Table route (uniform frame) and the explicit draws give the same distribution."""
    cam = EMCCD()
    flat = np.full((1000, 1000), 50.0, np.float32)
    table = cam(flat, np.random.default_rng(3))
    explicit = cam.draw_chain(np.random.default_rng(4), flat)
    k, p = emccd_adu_pmf(
        50.0 * cam.qe + cam.spurious_charge, cam.em_gain, cam.read_noise_e, cam.e_per_adu, cam.baseline, cam.max_adu
    )
    assert table.dtype == explicit.dtype == np.uint16
    assert chi2_pvalue(table, k, p) > 1e-4
    assert chi2_pvalue(explicit, k, p) > 1e-4
    assert not np.array_equal(table, explicit)


def test_pixels_above_the_floor_take_the_explicit_chain():
    cam = EMCCD(em_gain=1.0, read_noise_e=2.0, e_per_adu=1.0, baseline=100.0, spurious_charge=0.0, qe=1.0)
    photons = np.full((600, 600), 30.0, np.float32)
    photons[:100] = 400.0  # 1/6 of the frame above the floor
    out = cam(photons, np.random.default_rng(7)).astype(np.float64)
    assert out[:100].mean() == pytest.approx(500.0, abs=0.15) and out[:100].var() == pytest.approx(
        404 + 1 / 12, rel=0.02
    )
    assert out[100:].mean() == pytest.approx(130.0, abs=0.05) and out[100:].var() == pytest.approx(
        34 + 1 / 12, rel=0.02
    )
    # a frame mostly above its floor is drawn explicitly: same bytes as the explicit chain
    photons[:400] = 400.0
    assert np.array_equal(cam(photons, np.random.default_rng(8)), cam.draw_chain(np.random.default_rng(8), photons))
    # so is a small frame (no table is worth building for it)
    small = np.full((100, 100), 30.0, np.float32)
    assert np.array_equal(cam(small, np.random.default_rng(8)), cam.draw_chain(np.random.default_rng(8), small))


def test_scmos_scalar_table_matches_the_linear_pmf():
    cam = SCMOS(qe=0.8, offset=100.0, variance=2.0, gain=0.5)
    out = cam(np.full((800, 800), 40.0, np.float32), np.random.default_rng(9))
    k, p = linear_adu_pmf(32.0, 0.5, math.sqrt(2.0), 100.0, cam.max_adu)
    assert chi2_pvalue(out, k, p) > 1e-4
