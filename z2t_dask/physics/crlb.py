"""Cramér–Rao bound of 2-D localisation (Mortensen et al. 2010) and the effective Gaussian width of a PSF.

The ground-truth exporters (:mod:`z2t_dask.io.exporters`) fill the tools' precision columns (Picasso
``lpx``/``lpy``, ThunderSTORM ``uncertainty``, SMAP ``locprecnm``, DECODE ``xyz_cr``) with the bound of
each record: the smallest standard deviation an unbiased estimator of its position can reach, for its
photons, the background, the PSF width and the camera.

The bound
---------
Mortensen, Churchman, Spudich & Flyvbjerg, *Nat. Methods* 7, 377 (2010), Eq. (5): for a Gaussian PSF of
standard deviation ``s`` sampled by square pixels of side ``a``, with ``N`` detected photons and ``b``
background photons per pixel (Poisson),

    Var(x) = F² · σa² / N · [1 + ∫₀¹ ln t / (1 + t/τ) dt]⁻¹,   σa² = s² + a²/12,   τ = 2π σa² b / (N a²),

which maximum-likelihood fitting attains. The integral is ``τ · Li₂(-1/τ)`` (dilogarithm; exact, no
quadrature). ``F²`` is the excess-noise factor of the camera: 2 for an EMCCD at high gain (the
multiplication doubles every variance), 1 for sCMOS, CCD and an ideal photon counter. Rectangular
pixels ``(a_x, a_y)`` and an elliptical PSF ``(s_x, s_y)`` use ``σa_x² = s_x² + a_x²/12`` and the
background per area: ``τ = 2π σa_x σa_y b / (N a_x a_y)`` (Mortensen's formula for square pixels and a
round PSF; the same form as Picasso's ``localization_precision``). Read noise ``r`` (photo-electrons²
per pixel, referred to the camera input) adds to the background: ``b → b + r / F²``. Against the
Fisher information of a pixel-integrated Gaussian computed pixel by pixel the formula agrees within
2 % (``tests/test_crlb.py``).

:func:`lsq_variance` (Mortensen Eq. (6), the ``16/9`` form for unweighted least squares that Picasso
fills ``lpx`` with) and :func:`thompson_variance` (Thompson, Larson & Webb 2002) are given for
comparison.

The PSF width
-------------
The bound needs a Gaussian width. :func:`fit_gaussian_sigma` measures it on a pixel-integrated PSF
patch (least squares of a pixel-integrated elliptical Gaussian, free amplitude and centre): what a
Gaussian-fitting localiser sees. :func:`gaussian_sigma_nm` is the textbook in-focus approximation
``0.21 λ / NA`` (Zhang, Zerubia & Olivo-Marin 2007, paraxial wide-field), for callers without a PSF model.

Units: nm for lengths, photons (detected, i.e. photo-electrons) for ``N`` and ``b``. Pure NumPy/SciPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "EMCCD_EXCESS_NOISE",
    "crlb_xy_nm",
    "excess_noise_factor",
    "fit_gaussian_sigma",
    "gaussian_sigma_nm",
    "lsq_variance",
    "mortensen_variance",
    "thompson_variance",
]

#: Excess-noise factor F² of an EMCCD at high gain (Mortensen et al. 2010: "F = 2" multiplies variances).
EMCCD_EXCESS_NOISE = 2.0


def excess_noise_factor(camera_model: str, em_gain: float = 1.0) -> float:
    """The excess-noise factor F² (multiplies every variance) of a camera model.

    Parameters
    ----------
    camera_model : str
        ``"emccd"``, ``"scmos"``, ``"ideal"``, ``"none"`` or ``"original"`` (``camera.model``).
    em_gain : float
        EMCCD electron-multiplying gain (>= 1).

    Returns
    -------
    float
        EMCCD: ``2 - 1/G`` (the many-stage limit of the multiplication register; 2 at high gain, 1 with the
        gain off); every other model: 1.
    """
    if camera_model == "emccd":
        g = max(float(em_gain), 1.0)
        return 2.0 - 1.0 / g
    return 1.0


def gaussian_sigma_nm(wavelength_nm: float, na: float) -> float:
    """In-focus Gaussian approximation of a wide-field PSF: ``0.21 λ / NA`` (nm).

    Zhang, Zerubia & Olivo-Marin, *Appl. Opt.* 46, 1819 (2007), paraxial wide-field model; it ignores
    defocus and aberrations (see :func:`fit_gaussian_sigma` for a measured width).
    """
    return 0.21 * float(wavelength_nm) / float(na)


def _pair(value: Any) -> tuple[Any, Any]:
    """``(v, v)`` for a scalar or array, ``(v[0], v[1])`` for a pair."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    return value, value


def mortensen_variance(
    photons: Any,
    background: Any,
    sigma_nm: Any,
    pixel_nm: float,
    *,
    sigma_orth_nm: Any = None,
    pixel_orth_nm: float | None = None,
    excess_noise: float = 1.0,
    readout_variance: Any = 0.0,
) -> np.ndarray:
    """Cramér–Rao bound of one coordinate (variance, nm²), Mortensen et al. 2010 Eq. (5).

    Parameters
    ----------
    photons : array_like
        Detected photons of the emitter in the frame (``N``).
    background : array_like
        Detected background photons per pixel (``b``).
    sigma_nm : array_like
        Gaussian PSF standard deviation along this coordinate (nm).
    pixel_nm : float
        Pixel pitch along this coordinate (nm).
    sigma_orth_nm, pixel_orth_nm : optional
        The same along the other axis (default: equal to this one).
    excess_noise : float
        F² (:func:`excess_noise_factor`): 2 for an EMCCD, 1 otherwise.
    readout_variance : array_like
        Read-noise variance per pixel in photo-electrons², referred to the camera input.

    Returns
    -------
    numpy.ndarray
        Variance in nm² (``inf`` where ``photons <= 0``).
    """
    from scipy.special import spence

    n = np.asarray(photons, dtype=np.float64)
    f2 = float(excess_noise)
    b = np.asarray(background, dtype=np.float64) + np.asarray(readout_variance, dtype=np.float64) / f2
    s = np.asarray(sigma_nm, dtype=np.float64)
    so = s if sigma_orth_nm is None else np.asarray(sigma_orth_nm, dtype=np.float64)
    a = float(pixel_nm)
    ao = a if pixel_orth_nm is None else float(pixel_orth_nm)
    sa2 = s * s + a * a / 12.0
    sao2 = so * so + ao * ao / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = 2.0 * np.pi * np.sqrt(sa2 * sao2) * b / (n * a * ao)
        # 1 + ∫0^1 ln t / (1 + t/tau) dt = 1 + tau Li2(-1/tau); Li2(z) = spence(1 - z)
        integral = np.where(tau > 0, tau * spence(1.0 + 1.0 / np.where(tau > 0, tau, 1.0)), 0.0)
        var = f2 * sa2 / n / (1.0 + integral)
    return np.where(n > 0, var, np.inf)


def lsq_variance(
    photons: Any,
    background: Any,
    sigma_nm: Any,
    pixel_nm: float,
    *,
    sigma_orth_nm: Any = None,
    pixel_orth_nm: float | None = None,
    excess_noise: float = 1.0,
) -> np.ndarray:
    """Variance (nm²) of an unweighted least-squares Gaussian fit, Mortensen et al. 2010 Eq. (6).

    ``F² σa²/N (16/9 + 8π σa σa' b / (N a a'))``: the closed form Picasso uses for ``lpx``; it exceeds the
    Cramér–Rao bound (:func:`mortensen_variance`) by 16/9 without background.
    """
    n = np.asarray(photons, dtype=np.float64)
    s = np.asarray(sigma_nm, dtype=np.float64)
    so = s if sigma_orth_nm is None else np.asarray(sigma_orth_nm, dtype=np.float64)
    a = float(pixel_nm)
    ao = a if pixel_orth_nm is None else float(pixel_orth_nm)
    sa2 = s * s + a * a / 12.0
    sao = np.sqrt(so * so + ao * ao / 12.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = excess_noise * sa2 / n * (16.0 / 9.0 + 8.0 * np.pi * np.sqrt(sa2) * sao * background / (n * a * ao))
    return np.where(n > 0, var, np.inf)


def thompson_variance(photons: Any, background: Any, sigma_nm: Any, pixel_nm: float) -> np.ndarray:
    """Thompson, Larson & Webb (2002) Eq. (17): ``(s² + a²/12)/N + 8π s⁴ b / (a² N²)`` (nm²)."""
    n = np.asarray(photons, dtype=np.float64)
    s = np.asarray(sigma_nm, dtype=np.float64)
    a = float(pixel_nm)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s * s + a * a / 12.0) / n + 8.0 * np.pi * s**4 * np.asarray(background) / (a * a * n * n)
    return np.where(n > 0, var, np.inf)


def crlb_xy_nm(
    photons: Any,
    background: Any,
    sigma_nm: Any,
    pixel_size_nm: Any,
    *,
    excess_noise: float = 1.0,
    readout_variance: Any = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cramér–Rao bound of x and y as standard deviations (nm) (:func:`mortensen_variance` per axis).

    Parameters
    ----------
    photons, background : array_like
        Detected photons of each record and detected background photons per pixel.
    sigma_nm : float, array or (sx, sy)
        Gaussian PSF width along x and y (nm); a single value is used for both.
    pixel_size_nm : float or (px, py)
        Pixel pitch along x (columns) and y (rows) in nm.
    excess_noise : float
        F² of the camera (:func:`excess_noise_factor`).
    readout_variance : array_like
        Read-noise variance per pixel (photo-electrons², camera input).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(sigma_x, sigma_y)`` in nm.
    """
    sx, sy = _pair(sigma_nm)
    px, py = (float(v) for v in _pair(pixel_size_nm))
    common = {"excess_noise": excess_noise, "readout_variance": readout_variance}
    vx = mortensen_variance(photons, background, sx, px, sigma_orth_nm=sy, pixel_orth_nm=py, **common)
    vy = mortensen_variance(photons, background, sy, py, sigma_orth_nm=sx, pixel_orth_nm=px, **common)
    return np.sqrt(vx), np.sqrt(vy)


def _integrated_gaussian(edges: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    """Fraction of a 1-D Gaussian in each bin between ``edges``."""
    from scipy.special import erf

    u = (edges - centre) / (np.sqrt(2.0) * sigma)
    return 0.5 * np.diff(erf(u))


def fit_gaussian_sigma(patch: Any, pixel_size_nm: Any) -> tuple[float, float]:
    """Width ``(sigma_x, sigma_y)`` in nm of the pixel-integrated elliptical Gaussian that best fits a PSF patch.

    Parameters
    ----------
    patch : array_like, shape (H, W)
        Pixel-integrated PSF (any normalisation), pixel ``(r, c)`` centred at ``(y=r, x=c)``.
    pixel_size_nm : float or (px, py)
        Pixel pitch along x (columns) and y (rows) in nm.

    Returns
    -------
    (float, float)
        Least-squares Gaussian standard deviations along x and y in nm (amplitude, centre and widths
        free; no offset: the patch holds the PSF alone). A defocused PSF (a ring) gets the width of
        the Gaussian closest to it, as a Gaussian-fitting localiser would.
    """
    from scipy.optimize import least_squares

    img = np.asarray(patch, dtype=np.float64)
    px, py = (float(v) for v in _pair(pixel_size_nm))
    h, w = img.shape
    total = img.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("fit_gaussian_sigma: the patch holds no light")
    img = img / total
    ex = (np.arange(w + 1) - 0.5) * px
    ey = (np.arange(h + 1) - 0.5) * py
    cy, cx = np.unravel_index(np.argmax(img), img.shape)
    sx0 = sy0 = 0.5 * (px + py)  # a start near an in-focus PSF; the fit moves it

    def residual(p: np.ndarray) -> np.ndarray:
        amp, x0, y0, lsx, lsy = p
        gx = _integrated_gaussian(ex, x0, np.exp(lsx))
        gy = _integrated_gaussian(ey, y0, np.exp(lsy))
        return (amp * np.outer(gy, gx) - img).ravel()

    start = np.array([1.0, cx * px, cy * py, np.log(max(sx0, 1e-3)), np.log(max(sy0, 1e-3))])
    fit = least_squares(residual, start, x_scale=np.array([1.0, px, py, 1.0, 1.0]), method="lm")
    return float(np.exp(fit.x[3])), float(np.exp(fit.x[4]))
