"""Pupil-plane physics of a high-NA objective: stratified media, Gibson-Lanni phase, dipole fields.

Everything here is a pure function of the optics on a grid of lateral spatial frequencies
``(kx, ky)`` in cycles/nm (float64); :class:`~z2t_dask.physics.optics.psf.PupilPSF` evaluates it
once per model on its pupil rectangle and keeps the results as float32/complex64 tables.

Geometry and conventions
------------------------
The emitter lies in the sample medium (index ``n_s``) at ``depth`` above the coverslip (index
``n_g``, thickness ``t_g``), which is separated from the objective by the immersion medium
(index ``n_i``).  The objective is designed for ``n_g0``, ``t_g0``, ``n_i0`` and a working
distance ``t_i0``.  ``focus`` is the stage coordinate of the nominal focal plane above the
coverslip (psfmodels' ``zv``, the Gibson-Lanni stage position): in an index-matched sample the
emitter is in focus when ``depth == focus``; with a mismatch the best focus moves (focal shift).
An emitter's ``z`` (ground truth) is ``depth - focus``.

Axial wave number in medium ``m``: ``k_z,m(k) = sqrt((n_m / lambda)^2 - |k|^2)`` (principal
complex square root: beyond the critical angle of a medium it is ``+i |.|``, an evanescent wave
that decays away from the interface).

Gibson-Lanni phase (Gibson & Lanni 1991, as written by Aguet et al. 2009 and psfmodels)::

    Phi(k) = 2 pi [ t_i k_z,i + depth k_z,s + t_g k_z,g - t_g0 k_z,g0 - t_i0 k_z,i0 ]
    t_i    = depth (1 - n_i / n_s) + n_i (t_g0 / n_g0 + t_i0 / n_i0 - t_g / n_g) - focus

It is split as ``Phi = depth A(k) - focus B(k) + C(k)`` with ``A = 2 pi ((1 - n_i/n_s) k_z,i +
k_z,s)`` (complex: its imaginary part is the evanescent decay per nm of depth), ``B = 2 pi
k_z,i`` and ``C`` the rest; the value at ``k = 0`` (a piston, no effect on intensity) is
subtracted from each for float32 precision.  In an index-matched sample with design thicknesses
``Phi = 2 pi (depth - focus) k_z``, the exact defocus of the scalar model.

Dipole fields (vectorial model)
-------------------------------
A dipole ``mu`` in the sample radiates plane waves of lateral frequency ``k`` (azimuth
``phi``, polar angle ``theta_s`` in the sample) with amplitude ``(mu . e_p) e_p + (mu . e_s)
e_s`` over ``k_z,s`` (Weyl expansion), ``e_s = (-sin phi, cos phi, 0)``, ``e_p = (cos theta_s cos
phi, cos theta_s sin phi, -sin theta_s)``.  The p and s waves cross the sample/coverslip and
coverslip/immersion interfaces with the Fresnel amplitude transmissions ``t_p``, ``t_s``
(products of the two interfaces, no multiple reflections, as Aguet's model); an aplanatic
objective maps ``e_p`` to the radial and ``e_s`` to the azimuthal direction of the pupil.  With
the radiometric factor ``sqrt(k_z,i)`` (power through the pupil per unit ``dkx dky`` is
``k_z,i |E|^2``) the pupil field of polarisation ``x`` / ``y`` is::

    E_x = sqrt(k_z,i) / k_z,s [ t_p (mu . e_p) cos phi - t_s (mu . e_s) sin phi ]
    E_y = sqrt(k_z,i) / k_z,s [ t_p (mu . e_p) sin phi + t_s (mu . e_s) cos phi ]

so that ``sum |E|^2 dkx dky`` is the power collected by the objective.  In a homogeneous
medium this reduces to the familiar ``1 / sqrt(cos theta)`` apodisation.  :func:`dipole_fields`
returns the six ``(polarisation, dipole axis)`` pupil functions; a freely rotating (isotropic)
emitter is the incoherent mean of the x, y and z dipoles, a fixed dipole the coherent sum
``sum_j mu_j E_{.,j}``.

Collection efficiency
---------------------
The power a dipole radiates into the full solid angle of a homogeneous medium ``n_s`` is, in
the same units, ``8 pi k_s / 3`` per dipole axis (``k_s = n_s / lambda``), so
:func:`collection_fraction` is the fraction of the emitted photons that reach the camera
(near-field coupling beyond the critical angle included, interface reflections ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StratifiedOptics", "collection_fraction", "dipole_fields", "gibson_lanni_terms", "kz"]


@dataclass(frozen=True)
class StratifiedOptics:
    """Refractive indices and thicknesses of the sample / coverslip / immersion stack.

    Parameters
    ----------
    wavelength_nm : float
        Emission wavelength in vacuum (nm).
    na : float
        Numerical aperture (< ``n_immersion``).
    n_medium, n_coverslip, n_immersion : float
        Actual refractive indices of the sample medium, the coverslip and the immersion medium.
    n_coverslip_design, n_immersion_design : float
        Indices the objective is designed for.
    coverslip_nm, coverslip_design_nm : float
        Actual and design coverslip thickness (nm).
    working_distance_nm : float
        Design immersion thickness (nm).
    focus_nm : float
        Stage coordinate of the nominal focal plane above the coverslip (nm).
    """

    wavelength_nm: float
    na: float
    n_medium: float
    n_coverslip: float
    n_immersion: float
    n_coverslip_design: float
    n_immersion_design: float
    coverslip_nm: float
    coverslip_design_nm: float
    working_distance_nm: float
    focus_nm: float

    @property
    def index_matched(self) -> bool:
        """True when the sample, coverslip and immersion indices and thicknesses equal the design.

        Then the phase is the exact defocus ``2 pi (depth - focus) k_z`` and the PSF depends on
        ``z = depth - focus`` only.
        """
        n = self.n_immersion
        return (
            self.n_medium == n
            and self.n_coverslip == n
            and self.n_immersion_design == n
            and self.n_coverslip_design == n
            and self.coverslip_nm == self.coverslip_design_nm
        )


def kz(n: float, wavelength_nm: float, k2: np.ndarray) -> np.ndarray:
    """Axial wave number ``sqrt((n / lambda)^2 - |k|^2)`` (cycles/nm, complex128, ``Im >= 0``).

    Parameters
    ----------
    n : float
        Refractive index of the medium.
    wavelength_nm : float
        Vacuum wavelength (nm).
    k2 : ndarray
        Squared lateral spatial frequency ``|k|^2`` (cycles^2/nm^2).
    """
    return np.sqrt(((n / wavelength_nm) ** 2 - k2).astype(np.complex128))


def gibson_lanni_terms(o: StratifiedOptics, k2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gibson-Lanni phase split as ``Phi(k) = depth A(k) - focus B(k) + C(k)`` (piston removed).

    Parameters
    ----------
    o : StratifiedOptics
        The optics.
    k2 : ndarray
        ``|k|^2`` on the pupil (cycles^2/nm^2).

    Returns
    -------
    A : ndarray, complex128
        Phase per nm of emitter depth (rad/nm); ``Im A`` is the evanescent amplitude decay per nm.
    B : ndarray, float64
        Phase per nm of focus (rad/nm).
    C : ndarray, complex128
        Constant phase (rad) of the coverslip and immersion mismatch; ``Im C`` is an amplitude
        decay (nonzero only when the coverslip index is below the NA).
    """
    lam = float(o.wavelength_nm)
    two_pi = 2.0 * np.pi
    zero = np.zeros(1)
    ni, ns = float(o.n_immersion), float(o.n_medium)

    def piston_free(f):  # f(k2) - f(0)
        return f(k2) - f(zero)[0]

    kz_i = lambda q: kz(ni, lam, q)  # noqa: E731
    a = piston_free(lambda q: two_pi * ((1.0 - ni / ns) * kz_i(q) + kz(ns, lam, q)))
    b = piston_free(lambda q: two_pi * kz_i(q)).real
    ti_const = ni * (
        o.coverslip_design_nm / o.n_coverslip_design
        + o.working_distance_nm / o.n_immersion_design
        - o.coverslip_nm / o.n_coverslip
    )
    c = piston_free(
        lambda q: (
            two_pi
            * (
                ti_const * kz_i(q)
                + o.coverslip_nm * kz(o.n_coverslip, lam, q)
                - o.coverslip_design_nm * kz(o.n_coverslip_design, lam, q)
                - o.working_distance_nm * kz(o.n_immersion_design, lam, q)
            )
        )
    )
    return a, b, c


def _fresnel(n1: float, n2: float, kz1: np.ndarray, kz2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fresnel amplitude transmissions ``(t_p, t_s)`` from medium 1 into medium 2 (E-field ratios)."""
    t_s = 2.0 * kz1 / (kz1 + kz2)
    t_p = 2.0 * n1 * n2 * kz1 / (n2 * n2 * kz1 + n1 * n1 * kz2)
    return t_p, t_s


def dipole_fields(o: StratifiedOptics, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Pupil fields of unit x, y and z dipoles (see the module notes), complex128.

    Parameters
    ----------
    o : StratifiedOptics
        The optics.
    kx, ky : ndarray
        Lateral spatial frequencies (cycles/nm), same shape; only ``|k| <= NA / lambda`` is used.

    Returns
    -------
    ndarray, shape (2, 3) + kx.shape
        ``E[p, j]``: polarisation ``p`` (0 = x, 1 = y) of the field radiated by the unit dipole
        along axis ``j`` (0 = x, 1 = y, 2 = z = the optical axis, away from the objective), in
        units where ``sum |E|^2 dkx dky`` is the collected power (module notes).  The amplitude
        at the emitter's depth (evanescent decay) is not included.
    """
    lam = float(o.wavelength_nm)
    k2 = kx * kx + ky * ky
    kr = np.sqrt(k2)
    safe = np.where(kr > 0, kr, 1.0)
    cphi = np.where(kr > 0, kx / safe, 1.0)
    sphi = np.where(kr > 0, ky / safe, 0.0)
    ns, ng, ni = float(o.n_medium), float(o.n_coverslip), float(o.n_immersion)
    kz_s, kz_g, kz_i = kz(ns, lam, k2), kz(ng, lam, k2), kz(ni, lam, k2)
    tp1, ts1 = _fresnel(ns, ng, kz_s, kz_g)
    tp2, ts2 = _fresnel(ng, ni, kz_g, kz_i)
    t_p, t_s = tp1 * tp2, ts1 * ts2
    cos_s = kz_s / (ns / lam)  # complex beyond the critical angle
    sin_s = kr / (ns / lam)
    radiometric = np.sqrt(kz_i.real) / kz_s
    # e_p . mu and e_s . mu for mu = x, y, z
    ep = np.stack([cos_s * cphi, cos_s * sphi, -sin_s * np.ones_like(cphi)])
    es = np.stack([-sphi, cphi, np.zeros_like(cphi)]).astype(np.complex128)
    ex = t_p * ep * cphi - t_s * es * sphi
    ey = t_p * ep * sphi + t_s * es * cphi
    return np.stack([ex, ey]) * radiometric


def collection_fraction(
    o: StratifiedOptics,
    depth_nm: float | np.ndarray,
    dipole: np.ndarray | None = None,
    *,
    samples: int = 512,
) -> np.ndarray:
    """Fraction of a dipole's emitted photons that the objective collects, vs depth.

    Parameters
    ----------
    o : StratifiedOptics
        The optics.
    depth_nm : float or ndarray
        Emitter depths above the coverslip (nm, >= 0).
    dipole : ndarray, shape (3,), optional
        Unit dipole vector; None = freely rotating (mean of the x, y and z dipoles).
    samples : int
        Pupil samples per axis of the numerical integration.

    Returns
    -------
    ndarray, shape of ``depth_nm``
        Collected power over the power the dipole radiates in a homogeneous medium of index
        ``n_medium`` (both half spaces).  Beyond the critical angle (``n_medium < NA``) the
        evanescent contribution decays as ``exp(-4 pi depth Im k_z,s)``.
    """
    k_cut = float(o.na) / float(o.wavelength_nm)
    k = (np.arange(samples) + 0.5 - samples / 2) * (2.0 * k_cut / samples)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    inside = kx * kx + ky * ky <= k_cut * k_cut
    e = dipole_fields(o, kx[inside], ky[inside])  # (2, 3, M)
    if dipole is None:
        power = (np.abs(e) ** 2).sum(axis=(0, 1)) / 3.0
    else:
        mu = np.asarray(dipole, dtype=np.float64)
        power = (np.abs(np.tensordot(mu, e, axes=([0], [1]))) ** 2).sum(axis=0)
    decay_rate = 4.0 * np.pi * kz(float(o.n_medium), float(o.wavelength_nm), kx[inside] ** 2 + ky[inside] ** 2).imag
    depth = np.asarray(depth_nm, dtype=np.float64)
    dk2 = (2.0 * k_cut / samples) ** 2
    collected = np.exp(-np.multiply.outer(depth, decay_rate)) @ power * dk2
    total = 8.0 * np.pi * (float(o.n_medium) / float(o.wavelength_nm)) / 3.0
    return collected / total
