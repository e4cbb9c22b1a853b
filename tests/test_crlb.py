"""The Cramér–Rao bound of the exports (z2t_dask.physics.crlb) against independent facts.

- without background it is ``σa²/N`` exactly (Thompson's and Mortensen's common limit);
- it equals the inverse Fisher information of a pixel-integrated Gaussian under Poisson noise, computed
  pixel by pixel, within 5 % (the issue asks 10 %) over photons, background and widths;
- at low background it matches Thompson et al. 2002 within 10 %;
- the excess-noise factor F² = 2 of an EMCCD doubles the variance;
- the least-squares form is 16/9 of the bound without background and equals Picasso's own
  ``localization_precision`` (when ``picassosr`` is installed);
- the width measured on the exact PSF model is about 0.21 λ/NA in focus and grows with defocus, and the
  bound with that width matches the Fisher information of the model's own PSF within 10 % where the
  background is low.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

import z2t_dask as z2t
from z2t_dask.physics.crlb import (
    crlb_xy_nm,
    excess_noise_factor,
    fit_gaussian_sigma,
    gaussian_sigma_nm,
    lsq_variance,
    mortensen_variance,
    thompson_variance,
)


def _pixelated_gaussian(sx: float, sy: float, ax: float, ay: float, n: int, x0: float = 0.0, y0: float = 0.0):
    """Pixel fractions of a Gaussian on an n x n grid centred on pixel n // 2, and d/dx0 (per nm)."""
    ex = (np.arange(n + 1) - n / 2) * ax
    ey = (np.arange(n + 1) - n / 2) * ay

    def frac(edges: np.ndarray, c: float, s: float) -> np.ndarray:
        return 0.5 * np.diff(erf((edges - c) / (np.sqrt(2) * s)))

    def dfrac(edges: np.ndarray, c: float, s: float) -> np.ndarray:
        g = np.exp(-((edges - c) ** 2) / (2 * s * s)) / (np.sqrt(2 * np.pi) * s)
        return -np.diff(g)

    px, py = frac(ex, x0, sx), frac(ey, y0, sy)
    return np.outer(py, px), np.outer(py, dfrac(ex, x0, sx))


def _fisher_variance_x(n_phot: float, bg: float, sx: float, sy: float, ax: float, ay: float) -> float:
    n = int(max(41, 14 * max(sx / ax, sy / ay)))
    p, dp = _pixelated_gaussian(sx, sy, ax, ay, n)
    mu = n_phot * p + bg
    return 1.0 / float(np.sum((n_phot * dp) ** 2 / mu))


def test_no_background_is_sigma_a_squared_over_n() -> None:
    for n, s, a in [(100, 100.0, 100.0), (5000, 150.0, 80.0)]:
        sa2 = s * s + a * a / 12
        assert mortensen_variance(n, 0.0, s, a) == pytest.approx(sa2 / n, rel=1e-12)
        assert thompson_variance(n, 0.0, s, a) == pytest.approx(sa2 / n, rel=1e-12)
    assert np.isinf(mortensen_variance(0.0, 5.0, 100.0, 100.0))


@pytest.mark.parametrize("n_phot", [100.0, 500.0, 2000.0, 10000.0])
@pytest.mark.parametrize("bg", [0.1, 1.0, 10.0, 50.0, 200.0])
@pytest.mark.parametrize("sigma", [80.0, 100.0, 200.0, 400.0])
def test_matches_the_fisher_information_of_a_pixelated_gaussian(n_phot: float, bg: float, sigma: float) -> None:
    ratio = mortensen_variance(n_phot, bg, sigma, 100.0) / _fisher_variance_x(n_phot, bg, sigma, sigma, 100.0, 100.0)
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_anisotropic_pixels_and_psf_match_the_fisher_information() -> None:
    for n_phot, bg in [(2000.0, 5.0), (800.0, 40.0)]:
        bx, by = crlb_xy_nm(n_phot, bg, (110.0, 90.0), (101.11, 98.83))
        fx = _fisher_variance_x(n_phot, bg, 110.0, 90.0, 101.11, 98.83)
        fy = _fisher_variance_x(n_phot, bg, 90.0, 110.0, 98.83, 101.11)  # y is x of the transposed problem
        assert bx**2 / fx == pytest.approx(1.0, abs=0.05) and by**2 / fy == pytest.approx(1.0, abs=0.05)
    # square pixels and a round PSF: the per-axis form is Mortensen's
    bx, by = crlb_xy_nm(1000.0, 10.0, 120.0, 100.0)
    assert bx == by == pytest.approx(np.sqrt(mortensen_variance(1000.0, 10.0, 120.0, 100.0)), rel=1e-12)


def test_low_background_matches_thompson() -> None:
    for n_phot, s in [(1000.0, 100.0), (5000.0, 130.0)]:
        ratio = mortensen_variance(n_phot, 0.5, s, 100.0) / thompson_variance(n_phot, 0.5, s, 100.0)
        assert ratio == pytest.approx(1.0, abs=0.10)


def test_emccd_excess_noise_doubles_the_variance() -> None:
    n, b, s, a = np.array([300.0, 3000.0]), 20.0, 110.0, 100.0
    np.testing.assert_allclose(
        mortensen_variance(n, b, s, a, excess_noise=2.0), 2 * mortensen_variance(n, b, s, a), rtol=1e-12
    )
    assert excess_noise_factor("emccd", 1000.0) == pytest.approx(2.0, abs=1e-3)
    assert excess_noise_factor("emccd", 1.0) == 1.0  # gain off: no excess noise
    assert excess_noise_factor("scmos") == excess_noise_factor("ideal") == 1.0
    # read noise adds to the background
    assert mortensen_variance(1000.0, 10.0, s, a, readout_variance=4.0) == pytest.approx(
        mortensen_variance(1000.0, 14.0, s, a)
    )


def test_least_squares_form_and_picassos_own() -> None:
    assert lsq_variance(1000.0, 0.0, 100.0, 100.0) / mortensen_variance(1000.0, 0.0, 100.0, 100.0) == pytest.approx(
        16 / 9
    )
    precision = pytest.importorskip("picasso.fitting.precision")
    n, s, so, bg = np.array([500.0, 4000.0]), np.array([1.1, 0.9]), np.array([1.0, 1.2]), np.array([3.0, 30.0])
    for em, f2 in [(False, 1.0), (True, 2.0)]:  # Picasso works in camera px (pixel 1)
        ours = np.sqrt(lsq_variance(n, bg, s, 1.0, sigma_orth_nm=so, pixel_orth_nm=1.0, excess_noise=f2))
        np.testing.assert_allclose(ours, precision.localization_precision(n, s, so, bg, em), rtol=1e-10)


def test_fit_gaussian_sigma_recovers_a_gaussian() -> None:
    p, _ = _pixelated_gaussian(120.0, 90.0, 100.0, 110.0, 25, x0=30.0, y0=-20.0)
    sx, sy = fit_gaussian_sigma(p, (100.0, 110.0))
    assert sx == pytest.approx(120.0, rel=1e-4) and sy == pytest.approx(90.0, rel=1e-4)


def test_width_of_the_exact_psf_model() -> None:
    from z2t_dask.sample.exports import psf_sigma_table

    # the Gaussian width 0.21 lambda / NA approximates the scalar model (the vectorial one is ~10 % wider)
    cfg = z2t.load_config(None, overrides={"emitters": {"z_range_um": 0.6}, "psf": {"vectorial": False}})
    zs, sx, sy = (np.asarray(v) for v in psf_sigma_table(cfg))
    focus = int(np.argmin(np.abs(zs)))
    expected = gaussian_sigma_nm(cfg.optical.wavelength_nm, cfg.optical.NA)  # 99 nm
    assert sx[focus] == pytest.approx(expected, rel=0.10) and sy[focus] == pytest.approx(expected, rel=0.10)
    assert sx[0] > 2.5 * sx[focus] and sx[-1] > 2.5 * sx[focus]  # 0.6 um out of focus: much wider
    np.testing.assert_allclose(sx, sx[::-1], rtol=1e-3)  # no aberration: symmetric in z


def test_bound_with_the_fitted_width_matches_the_model_psfs_fisher_information() -> None:
    from z2t_dask.engine.assembly import exact_psf_model

    # Mortensen's Gaussian bound against the scalar model's Fisher information (a near-Gaussian PSF)
    optics = {"use_default_config": False, "pixel_size_nm_x": 100.0, "pixel_size_nm_y": 100.0}
    cfg = z2t.load_config(None, overrides={"optical": optics, "psf": {"vectorial": False}})
    model = exact_psf_model(cfg)
    h = 0.01  # px
    p = model.compute(np.zeros((3, 1)), np.zeros(3), dx=np.array([-h, 0.0, h]), dy=np.zeros(3)).astype(np.float64)
    sigma, _ = fit_gaussian_sigma(p[1], 100.0)
    dp = (p[2] - p[0]) / (2 * h * 100.0)  # per nm
    for n_phot, bg in [(500.0, 0.5), (2000.0, 0.5), (2000.0, 5.0), (10000.0, 5.0), (10000.0, 50.0)]:
        fisher = np.sum((n_phot * dp) ** 2 / (n_phot * p[1] + bg))
        assert mortensen_variance(n_phot, bg, sigma, 100.0) * fisher == pytest.approx(1.0, abs=0.10)
