"""Camera models: statistics of the generative chains, clipping, dtypes, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from z2t_dask.physics.camera import EMCCD, SCMOS, Ideal, OriginalFloat


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def flat(value: float, shape: tuple[int, int] = (1000, 1000)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


# --------------------------------------------------------------------------- EMCCD


def test_emccd_mean_electrons_follow_gain_qe_and_spurious_charge():
    cam = EMCCD(qe=0.9, em_gain=100.0, spurious_charge=0.05, read_noise_e=74.4, e_per_adu=45.0, baseline=100.0)
    adu = cam(flat(50.0), rng(1)).astype(np.float64)
    assert 0 < adu.min() and adu.max() < cam.max_adu  # no clipping involved
    electrons = (adu - cam.baseline) * cam.e_per_adu
    expected = cam.em_gain * (cam.qe * 50.0 + cam.spurious_charge)
    assert electrons.mean() == pytest.approx(expected, rel=5e-3)


def test_emccd_excess_noise_factor_is_two_at_high_gain():
    cam = EMCCD(qe=0.9, em_gain=300.0, spurious_charge=0.0, read_noise_e=74.4, e_per_adu=45.0)
    adu = cam(flat(20.0), rng(2)).astype(np.float64)
    assert adu.max() < cam.max_adu
    electrons = (adu - cam.baseline) * cam.e_per_adu
    mean_e = cam.qe * 20.0
    signal_var = electrons.var() - cam.read_noise_e**2 - cam.e_per_adu**2 / 12.0  # read + quantisation
    f2 = signal_var / (cam.em_gain**2 * mean_e)
    assert f2 == pytest.approx(2.0, rel=0.03)


def test_emccd_zero_photoelectrons_give_exactly_baseline():
    # Gamma(shape=0) must be exactly 0 (no clamping of the shape): with a tiny e_per_adu any
    # non-zero EM output would show up as an ADU above the baseline.
    cam = EMCCD(em_gain=1000.0, spurious_charge=0.0, read_noise_e=0.0, e_per_adu=1e-3, baseline=7.0, bit_depth=32)
    photons = flat(0.0, (200, 200))
    photons[:, 100:] = 5.0
    adu = cam(photons, rng(3))
    assert adu.dtype == np.uint32
    assert np.all(adu[:, :100] == 7)
    assert np.mean(adu[:, 100:] > 7) > 0.98  # P(n = 0) = exp(-4.5) ~ 1 %


def test_emccd_clips_to_bit_depth_and_picks_dtype():
    bright = flat(1e6, (50, 50))
    out16 = EMCCD()(bright, rng(4))
    assert out16.dtype == np.uint16 and np.all(out16 == 2**16 - 1)
    out12 = EMCCD(bit_depth=12)(bright, rng(4))
    assert out12.dtype == np.uint16 and np.all(out12 == 4095)
    assert EMCCD(bit_depth=8).dtype == np.uint8
    # negative values clip to 0 instead of wrapping around
    dark = EMCCD(em_gain=1.0, spurious_charge=0.0, read_noise_e=50.0, e_per_adu=1.0, baseline=0.0)(
        flat(0.0, (100, 100)), rng(5)
    )
    assert dark.min() == 0 and 0.4 < np.mean(dark == 0) < 0.6 and dark.max() < 1000


def test_emccd_without_em_gain_is_poisson_plus_read_noise():
    cam = EMCCD(qe=1.0, em_gain=1.0, spurious_charge=0.0, read_noise_e=0.0, e_per_adu=1.0, baseline=0.0)
    adu = cam(flat(30.0), rng(6)).astype(np.float64)
    assert adu.mean() == pytest.approx(30.0, rel=5e-3)
    assert adu.var() == pytest.approx(30.0, rel=2e-2)  # Poisson: F^2 = 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(qe=0.0),
        dict(qe=1.2),
        dict(em_gain=0.5),
        dict(e_per_adu=0.0),
        dict(read_noise_e=-1.0),
        dict(spurious_charge=-0.1),
        dict(bit_depth=0),
        dict(bit_depth=40),
        dict(baseline=float("nan")),
    ],
)
def test_emccd_rejects_bad_parameters(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        EMCCD(**kwargs)


def test_negative_photons_raise_clear_error():
    with pytest.raises(ValueError, match="photons"):
        EMCCD()(flat(-1.0, (4, 4)), rng())


# --------------------------------------------------------------------------- sCMOS


def test_scmos_per_pixel_mean_and_variance_follow_maps():
    shape = (6, 8)
    g = np.random.default_rng(10)
    gain = g.uniform(0.3, 3.0, shape)
    variance = g.uniform(1.0, 60.0, shape)
    offset = g.uniform(90.0, 110.0, shape)
    lam = g.uniform(5.0, 40.0, shape).astype(np.float32)
    cam = SCMOS(qe=0.8, offset=offset, variance=variance, gain=gain)
    n = 20000
    raw = cam(np.broadcast_to(lam, (n, *shape)), rng(11))  # leading axis = frames
    assert raw.dtype == np.uint16 and raw.min() > 0 and raw.max() < cam.max_adu
    frames = raw.astype(np.float64)
    gain32, var32, off32 = (np.float32(m).astype(np.float64) for m in (gain, variance, offset))
    exp_mean = gain32 * 0.8 * lam + off32
    exp_var = gain32**2 * 0.8 * lam + var32 + 1.0 / 12.0  # + rounding
    se_mean = np.sqrt(exp_var / n)
    assert np.all(np.abs(frames.mean(axis=0) - exp_mean) < 5 * se_mean)
    np.testing.assert_allclose(frames.var(axis=0), exp_var, rtol=0.05)


def test_scmos_single_frame_dtype_and_map_checks():
    maps = np.full((20, 30), 2.0)
    cam = SCMOS(variance=maps, gain=0.5, offset=100.0)
    frame = cam(flat(10.0, (20, 30)), rng(12))
    assert frame.dtype == np.uint16 and frame.shape == (20, 30)
    with pytest.raises(ValueError, match="crop"):
        cam(flat(10.0, (10, 10)), rng(12))
    cropped = cam.crop(5, 10, 10, 10)
    assert cropped.map_shape == (10, 10) and cropped(flat(10.0, (10, 10)), rng(12)).shape == (10, 10)
    with pytest.raises(ValueError, match="exceeds"):
        cam.crop(15, 0, 10, 10)
    with pytest.raises(ValueError, match="same"):
        SCMOS(variance=np.ones((4, 4)), gain=np.ones((5, 4)))
    with pytest.raises(ValueError, match="gain"):
        SCMOS(gain=np.zeros((4, 4)))


def test_scmos_crop_takes_the_right_window():
    offset = np.arange(12 * 10, dtype=np.float64).reshape(12, 10) + 1000
    cam = SCMOS(qe=1.0, offset=offset, variance=0.0, gain=1.0)
    out = cam.crop(2, 3, 4, 5)(flat(0.0, (4, 5)), rng())
    np.testing.assert_array_equal(out, offset[2:6, 3:8])


# --------------------------------------------------------------------------- Ideal, OriginalFloat


def test_ideal_poisson_mean_and_variance():
    out = Ideal()(flat(7.5), rng(13))
    assert out.dtype == np.float32
    assert out.mean() == pytest.approx(7.5, rel=5e-3)
    assert out.var() == pytest.approx(7.5, rel=1e-2)
    assert np.all(out == np.round(out))


def test_ideal_without_noise_returns_a_copy_of_the_expectation():
    photons = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    out = Ideal(poisson=False)(photons, rng())
    np.testing.assert_array_equal(out, photons)
    assert out.dtype == np.float32 and not np.shares_memory(out, photons)


def test_original_float_clips_at_zero_and_is_float32():
    out = OriginalFloat(readout_noise=10.0)(flat(0.0, (200, 200)), rng(14))
    assert out.dtype == np.float32
    assert out.min() == 0.0 and 0.4 < np.mean(out == 0.0) < 0.6


def test_original_float_switches_to_normal_above_1e4():
    photons = flat(5000.0, (400, 400))
    photons[:, 200:] = 20000.0
    out = OriginalFloat(readout_noise=0.0)(photons, rng(15))
    low, high = out[:, :200], out[:, 200:]
    assert np.all(low == np.round(low))  # Poisson: integer counts
    assert np.mean(high != np.round(high)) > 0.9  # Normal: continuous
    assert low.var() == pytest.approx(5000.0, rel=0.03)
    assert high.mean() == pytest.approx(20000.0, rel=1e-3)
    assert high.var() == pytest.approx(20000.0, rel=0.03)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "cam",
    [EMCCD(), SCMOS(variance=np.full((32, 48), 3.0)), Ideal(), OriginalFloat()],
    ids=["emccd", "scmos", "ideal", "original"],
)
def test_same_seed_same_bytes_different_seed_different_bytes(cam):
    photons = np.random.default_rng(99).uniform(0, 200, (32, 48)).astype(np.float32)
    a = cam(photons, rng(7))
    b = cam(photons, rng(7))
    c = cam(photons, rng(8))
    assert a.dtype == cam.dtype
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


# --------------------------------------------------------------------------- fast Poisson draw


@pytest.mark.parametrize("lam", [0.002, 0.7, 3.5, 90.0, 2.5e4])
def test_alias_poisson_floor_matches_the_poisson_pmf(lam):
    """The background (floor) draw is an exact Poisson sampler: chi-square against the pmf."""
    from scipy import stats

    from z2t_dask.physics.camera.common import poisson_floor

    n = 400_000
    draws = poisson_floor(rng(20), lam, (n,))
    assert draws.dtype == np.float32 and np.all(draws == np.round(draws))
    k = draws.astype(np.int64)
    lo, hi = int(stats.poisson.ppf(1e-4, lam)), int(stats.poisson.ppf(1 - 1e-4, lam))
    edges = np.unique(np.linspace(lo, hi + 1, 40).astype(np.int64))
    observed = np.histogram(k, bins=np.concatenate([[-1], edges, [np.iinfo(np.int64).max]]))[0]
    cdf = stats.poisson.cdf(np.concatenate([[-1], edges - 1, [np.iinfo(np.int32).max]]), lam)
    expected = np.diff(cdf) * n
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, chi2


def test_split_poisson_on_a_non_uniform_frame():
    """Floor + excess draw: per-region mean and variance equal the expectation (Poisson)."""
    photons = flat(40.0, (600, 600))
    photons[:200] += 0.3  # just above the floor
    photons[200:400] += 25.0
    photons[400:, :300] = 0.0  # the floor becomes 0: dark pixels stay 0
    out = Ideal()(photons, rng(21)).astype(np.float64)
    assert np.all(out[400:, :300] == 0)
    for sl, lam in ((np.s_[:200], 40.3), (np.s_[200:400], 65.0), (np.s_[400:, 300:], 40.0)):
        assert out[sl].mean() == pytest.approx(lam, rel=4e-3)
        assert out[sl].var() == pytest.approx(lam, rel=3e-2)


def test_huge_expectations_fall_back_to_numpy():
    out = Ideal()(flat(2e7, (50, 50)), rng(22))
    assert out.mean() == pytest.approx(2e7, rel=1e-4) and np.all(out == np.round(out))


def test_non_finite_photons_raise():
    photons = flat(5.0, (4, 4))
    photons[1, 1] = np.nan
    with pytest.raises(ValueError, match="photons"):
        EMCCD()(photons, rng())
    photons[1, 1] = np.inf
    with pytest.raises(ValueError, match="photons"):
        SCMOS()(photons, rng())
