"""The naive reference renderer: z2t's exact physics the straightforward way (see :mod:`z2t_dask.testing`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from z2t_dask.sample import Sample

__all__ = ["NaiveOptics", "naive_emccd", "naive_expected_photons", "naive_frames", "naive_psf"]


# --------------------------------------------------------------------------- naive reference renderer


@dataclass(frozen=True)
class NaiveOptics:
    """Resolved optics and sampling of the naive renderer (copied from a PupilPSF: both share the window).

    Attributes
    ----------
    wavelength_nm : float
        Emission wavelength in vacuum (nm).
    na : float
        Numerical aperture.
    n_medium : float
        Refractive index of the sample medium (exact defocus phase).
    pixel_size_nm_x, pixel_size_nm_y : float
        Camera pixel pitch along x (columns) and y (rows), nm in sample space.
    patch_size : int
        Side of a PSF patch (camera px, odd).
    sampling : int
        Fine-grid oversampling (fine pitch = pixel / sampling).
    window : int
        Side of the periodic amplitude FFT window (camera px).
    intensity_window : int
        Side of the window the intensity is folded into (camera px).
    """

    wavelength_nm: float
    na: float
    n_medium: float
    pixel_size_nm_x: float
    pixel_size_nm_y: float
    patch_size: int
    sampling: int
    window: int
    intensity_window: int

    @classmethod
    def from_model(cls, model: Any) -> NaiveOptics:
        """The optics of a :class:`~z2t_dask.physics.optics.psf.PupilPSF` (e.g. ``sample.plan.psf``)."""
        return cls(
            wavelength_nm=model.wavelength_nm,
            na=model.na,
            n_medium=model.n_medium,
            pixel_size_nm_x=model.pixel_size_nm_x,
            pixel_size_nm_y=model.pixel_size_nm_y,
            patch_size=model.patch_size,
            sampling=model.sampling,
            window=model.window,
            intensity_window=model.intensity_window,
        )


def naive_psf(
    phase: np.ndarray, z_um: float, dx: float, dy: float, o: NaiveOptics, mag: np.ndarray | None = None
) -> np.ndarray:
    """One pixel-integrated PSF patch ``(p, p)`` float64, everything rebuilt from scratch.

    The same model as :class:`~z2t_dask.physics.optics.psf.PupilPSF` (scalar pupil, exact
    non-paraxial defocus, Fourier sub-pixel shift, pixel integration, Parseval normalisation,
    same FFT window and folding, so the same numbers to ~1e-6 of the peak), but every PSF builds
    its pupil grids, Zernike polynomials and defocus anew, in float64 / complex128, with full
    2-D ``numpy.fft`` transforms (as the original tool did).

    Parameters
    ----------
    phase : ndarray (K,)
        Zernike phase, rad RMS, Noll (index 0 = piston, ignored).
    z_um : float
        Axial position (µm, 0 = focal plane, positive = away from the coverslip).
    dx, dy : float
        Sub-pixel offsets (camera pixels) of the emitter from the patch centre, in [-0.5, 0.5).
    o : NaiveOptics
        Optics and sampling.
    mag : ndarray (K,), optional
        Zernike pupil-amplitude coefficients (dimensionless; amplitude ``1 + sum``, clipped at 0).

    Returns
    -------
    ndarray (p, p) float64
        Fraction of the emitted photons in each camera pixel; row = y, column = x; the emitter's
        reference pixel is ``p // 2``.
    """
    from z2t_dask.physics.optics.zernike import noll_to_nm, zernike_nm

    s = o.sampling
    n = o.window * s
    d_x, d_y = o.pixel_size_nm_x / s, o.pixel_size_nm_y / s
    kx = np.fft.fftfreq(n, d=d_x)
    ky = np.fft.fftfreq(n, d=d_y)
    kxx, kyy = np.meshgrid(kx, ky)  # rows = y, columns = x
    k_cut = o.na / o.wavelength_nm
    kr = np.hypot(kxx, kyy)
    inside = kr <= k_cut
    rho = kr / k_cut
    theta = np.arctan2(kyy, kxx)
    phi = np.zeros((n, n))
    for j in range(2, len(phase) + 1):
        if phase[j - 1] != 0.0:
            phi += phase[j - 1] * zernike_nm(*noll_to_nm(j), rho, theta)
    amp = inside.astype(np.float64)
    if mag is not None:
        a = np.ones((n, n))
        for j in range(2, len(mag) + 1):
            if mag[j - 1] != 0.0:
                a += mag[j - 1] * zernike_nm(*noll_to_nm(j), rho, theta)
        amp *= np.clip(a, 0.0, None)
    kn = o.n_medium / o.wavelength_nm
    arg = kn * kn - kr * kr
    phi += 2 * math.pi * z_um * 1e3 * (np.sqrt(np.clip(arg, 0, None)) - kn)
    amp *= np.exp(-2 * math.pi * abs(z_um) * 1e3 * np.sqrt(np.clip(-arg, 0, None)))
    phi += -2 * math.pi * (kxx * dx * o.pixel_size_nm_x + kyy * dy * o.pixel_size_nm_y)
    pupil = amp * np.exp(1j * phi)
    energy = float((amp * amp).sum())
    h = np.fft.ifft2(pupil, norm="ortho")
    inten = np.abs(h) ** 2
    m = o.intensity_window * s
    f = n // m
    inten = inten.reshape(f, m, f, m).sum(axis=(0, 2))
    otf = np.fft.fft2(inten)
    otf *= np.sinc(np.fft.fftfreq(m) * s)[:, None] * np.sinc(np.fft.fftfreq(m) * s)[None, :]
    img = np.fft.ifft2(otf).real
    c0 = o.patch_size // 2
    sel = ((np.arange(o.patch_size) - c0) % o.intensity_window) * s
    return img[np.ix_(sel, sel)] * (s * s / energy) if energy > 0 else np.zeros((o.patch_size,) * 2)


def naive_frames(
    o: NaiveOptics,
    shape: tuple[int, int],
    frames: int,
    rec_frame: np.ndarray,
    rec_id: np.ndarray,
    rec_phot: np.ndarray,
    em_xyz: np.ndarray,
    em_phase: np.ndarray,
    em_mag: np.ndarray | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Expected signal photons ``(frames, H, W)`` float64: one PSF per record, added in a Python loop.

    Parameters
    ----------
    o : NaiveOptics
        Optics and sampling.
    shape : (int, int)
        ``(H, W)`` of a frame in px.
    frames : int
        Number of frames T.
    rec_frame, rec_id, rec_phot : ndarray (R,)
        Each record's frame, emitter row (into ``em_*``) and photons in that frame.
    em_xyz : ndarray (N, 3)
        Emitter positions: x, y in ROI px, z in µm.
    em_phase, em_mag : ndarray (N, K)
        Zernike phase (rad RMS, Noll) and pupil-amplitude coefficients (or None) per emitter.
    limit : int, optional
        Render only the first ``limit`` records (for timing a subset).

    Returns
    -------
    ndarray (frames, H, W) float64
        Photons per pixel (no background); light falling outside the image is lost.
    """
    h, w = shape
    out = np.zeros((frames, h, w))
    p = o.patch_size
    c = p // 2
    n = len(rec_frame) if limit is None else min(limit, len(rec_frame))
    for r in range(n):
        e = rec_id[r]
        x, y, z = em_xyz[e]
        cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
        patch = naive_psf(em_phase[e], z, x - cx, y - cy, o, None if em_mag is None else em_mag[e])
        for i in range(p):
            yy = cy - c + i
            if 0 <= yy < h:
                x0, x1 = max(cx - c, 0), min(cx - c + p, w)
                if x1 > x0:
                    out[rec_frame[r], yy, x0:x1] += rec_phot[r] * patch[i, x0 - (cx - c) : x1 - (cx - c)]
    return out


def naive_expected_photons(sample: Sample, *, background: bool = True) -> np.ndarray:
    """The naive renderer's expected photons of a whole sample, ``(T, H, W)`` float64.

    Renders every record of ``sample`` (its whole truth, in memory) with :func:`naive_frames`
    using the optics of the sample's exact PSF model (for ``psf.mode = "fast"``, the exact model
    its library was built from). With a noise-free camera (``camera.model = "none"``, or
    ``"ideal"`` with ``poisson = false``) the sample's frames equal this to float32 precision.

    Parameters
    ----------
    sample : Sample
        A sample from :func:`z2t_dask.simulate` or :func:`sample_from_arrays` (small: one PSF per
        record, a few ms each).
    background : bool, default True
        Add the config's uniform background (photons / px / frame).

    Returns
    -------
    ndarray (T, H, W) float64
        Photons per pixel and frame.
    """
    plan = sample.plan
    optics = NaiveOptics.from_model(getattr(plan.psf, "exact", plan.psf))
    part = sample.truth.materialize()
    rec = part.records
    out = naive_frames(
        optics,
        tuple(plan.image_shape),
        int(plan.frames),
        rec.frame_ix,
        rec.id - part.id0,
        rec.phot,
        part.emitters.xyz,
        part.phase,
        part.mag,
    )
    if background:
        out += float(plan.background)
    return out


def naive_emccd(
    photons: np.ndarray,
    rng: np.random.Generator,
    *,
    qe: float,
    em_gain: float,
    spurious_charge: float,
    read_noise_e: float,
    e_per_adu: float,
    baseline: float,
    bit_depth: int,
) -> np.ndarray:
    """One EMCCD frame the direct way: Poisson, Gamma (0 stays 0), Normal, rint, clip (uint16/32).

    Parameters
    ----------
    photons : ndarray (H, W)
        Expected photons per pixel (signal + background).
    rng : numpy.random.Generator
        The stream to draw from.
    qe : float
        Quantum efficiency (electrons per photon, 0..1).
    em_gain : float
        Mean electron-multiplying gain (> 1: Gamma-distributed output of each input electron).
    spurious_charge : float
        Clock-induced charge, electrons / px / frame.
    read_noise_e : float
        Read noise, electrons RMS.
    e_per_adu : float
        Electrons per ADU.
    baseline : float
        Offset, ADU.
    bit_depth : int
        ADC bits: output clipped to ``[0, 2**bit_depth - 1]``.

    Returns
    -------
    ndarray (H, W) uint16 (uint32 beyond 16 bits)
        ADU.
    """
    n = rng.poisson(photons * qe + spurious_charge)
    e = np.where(n > 0, rng.gamma(np.maximum(n, 1), em_gain), 0.0) if em_gain > 1 else n.astype(float)
    adu = e / e_per_adu + rng.normal(0.0, read_noise_e / e_per_adu, photons.shape) + baseline
    return np.clip(np.rint(adu), 0, 2**bit_depth - 1).astype(np.uint16 if bit_depth <= 16 else np.uint32)
