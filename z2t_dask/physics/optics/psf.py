"""Pupil-function PSF (scalar or vectorial dipole), batched over emitters, pixel-integrated, sub-pixel placed.

Vectorial model and stratified media
------------------------------------
With ``vectorial=True`` the pupil carries the fields of a dipole emitter
(:mod:`z2t_dask.physics.optics.vectorial`: aplanatic apodisation, Fresnel transmission through
the sample / coverslip / immersion interfaces, x, y and z dipole components): a freely rotating
emitter (the default) is the incoherent mean of the x, y and z dipoles (five pupil transforms,
``E_xy = E_yx``), a fixed dipole the coherent sum over its axes (two transforms).  When the
sample, coverslip or immersion differ from the design (or ``n_medium <= NA``: supercritical
light) the defocus below is replaced by the Gibson-Lanni phase of the emitter's depth
``focus_depth_um + z`` (:func:`~z2t_dask.physics.optics.vectorial.gibson_lanni_terms`); light
beyond the sample's critical angle is evanescent and decays with the depth.  Such
depth-dependent models use larger FFT windows (24 um, folded to 12 um: the spherical
aberration throws light far from the centre).  ``otf_sigma_nm`` multiplies the OTF by a
Gaussian (model-mismatch blur).  Every PSF integrates to 1 over the window: **photons are
detected photons**; :meth:`PupilPSF.collection_fraction` gives the fraction of the emitted
photons that is.  Validated against psfmodels in ``tests/test_psf_vectorial.py``.

Model
-----
For an emitter with Zernike phase coefficients ``phase`` (radians RMS, Noll order), optional
Zernike amplitude coefficients ``mag``, axial position ``z`` and sub-pixel offset ``(dx, dy)``,
the pupil on lateral spatial frequencies ``k = (kx, ky)`` (cycles/nm) is::

    P(k) = A(k) * circ(|k| <= NA/lambda) * exp(i (Phi_zernike(k) + Phi_defocus(k) + Phi_shift(k)))

    A            = clip(1 + sum_{j>=2} mag_j Z_j(rho, theta), 0, inf)
    Phi_zernike  = sum_{j>=2} phase_j Z_j(rho, theta)     rho = |k| / (NA/lambda),
                                                           theta = atan2(ky, kx)
    Phi_defocus  = 2 pi z (k_z(k) - n_medium/lambda),     k_z = sqrt((n_medium/lambda)^2 - |k|^2)
    Phi_shift    = -2 pi (kx dx px_x + ky dy px_y)

* The defocus term is the exact (non-paraxial) axial wave number of the sample medium; the
  constant ``2 pi z n_medium / lambda`` piston is dropped (no effect on intensity, better
  float32 precision).  **Sign of z**: ``z > 0`` means the emitter is *farther from the
  objective than the focal plane*, i.e. deeper into the sample, away from the coverslip
  (inverted microscope); ``z = 0`` is the focal plane.  Where ``NA > n_medium`` the
  supercritical part of the pupil (``|k| > n_medium/lambda``) has imaginary ``k_z``; it is given
  the amplitude ``exp(-2 pi |z| Im k_z)`` (decaying on both sides of focus, a guard: a physical
  model of near-coverslip emission needs the coverslip distance, which this model does not
  have).  ``n_immersion`` only bounds the NA here (``NA < n_immersion``); index-mismatch
  (Gibson-Lanni) aberration is left to the Zernike coefficients.
* Piston coefficients (Noll j = 1) of ``phase`` and ``mag`` are ignored (no effect on the
  normalised intensity).
* The amplitude PSF is ``h(x) = integral P(k) exp(+2 pi i k.x) dk``, so ``Phi_shift`` moves the
  PSF by ``+dx`` pixels along x (columns) and ``+dy`` pixels along y (rows).  The shift is
  applied as this pupil phase ramp: it is mathematically identical to multiplying the OTF by
  ``exp(-2 pi i (fx dx px_x + fy dy px_y))`` (exact, no interpolation) and costs less.
* Orientation: x = columns = array axis 1, y = rows = axis 0, theta counter-clockwise from +x
  in the (x, y) frame (which looks clockwise on a display that puts row 0 on top).  With this
  inverse-transform convention a positive tip coefficient (Noll 2, ``cos theta``) moves the
  PSF towards -x.

Sampling (exact for the band-limited intensity, apart from the periodic window)
------------------------------------------------------------------------------
The amplitude PSF is computed by an inverse FFT on a fine grid of pitch ``px_x/s``, ``px_y/s``
(``s`` = oversampling; auto = smallest integer with ``max(px_x, px_y)/s <= lambda/(4 NA)``, the
Nyquist pitch of the intensity: ``s = 1`` for the default 101 x 99 nm pixels at 660 nm, NA 1.4)
over a square periodic window of ``window`` camera pixels (``N = window * s`` samples per
axis; the pupil is sampled at ``1/(window px)``).  The intensity ``|h|^2`` is band-limited to
``2 NA/lambda``, so its samples determine it exactly.  It is folded (periodised, an exact
operation that keeps every f-th OTF sample) onto a smaller ``intensity_window`` (the largest
divisor of ``window`` that is ``>= max(4 * (patch_size // 2), 6 um / px)``: 64 px by
default); its DFT (the OTF) is multiplied by the pixel transfer function
``sinc(fx px_x) sinc(fy px_y)`` (exact integration over the camera pixel) and inverse
transformed only at the camera pixel centres of the patch (every ``s``-th fine sample).
Normalisation is by the pupil energy (Parseval), so the PSF integrates to 1 over the whole
window; a patch sum is < 1 when light falls outside the patch (physical: e.g. 0.977 in focus
and 0.910 at z = 1 um for the default 33-px patch).

Window and residual.  The only approximation is the finite window: the discrete pupil makes
``h`` periodic, so the amplitude tails of neighbouring copies interfere (equivalently: the
"jagged" sampled pupil edge), and the intensity beyond ``intensity_window / 2`` folds back.
Default: ``intensity_window`` = the smallest ``2^a 3^b >= max(4 * (patch_size // 2),
6 um / px)`` and ``window`` = ``intensity_window * ceil(max(3.5 * patch_size, 12 um / px) /
intensity_window)``, i.e. 128 px (12.9 x 12.7 um, folded to 64) for the default 33-px patch.
Residual of the default model (660 nm, NA 1.4, 101.11 x 98.83 nm, unaberrated) against a
1536-px window, over 41 z in [-1, 1] um: max abs pixel error <= 0.25 % of the in-focus peak at
every z (median 1 %, worst 4.8 % of the defocused PSF's own, ~20x lower, peak); summed abs
error <= 1.6 % of the photons.  In focus against the analytic pixel-integrated Airy pattern:
0.25 % of peak.  ``window_px=192`` roughly halves these errors at ~2.3x the cost.

Computation
-----------
Per batch of emitters (numpy path, in cache-sized blocks of ~2 MiB of amplitude PSF):

1. the Zernike phase (and amplitude) polynomial plus the sub-pixel ramps, as per-row polynomials
   in ``u = kx / k_cut`` (:mod:`z2t_dask.physics.optics.pupil_poly`), evaluated on the pupil's bounding
   rectangle of FFT bins (``D + 1`` float32 terms per sample), plus the exact defocus;
2. ``cos`` / ``sin`` into complex64 (:mod:`~z2t_dask.physics.optics.fixed_math`: float64, rounded once;
   not NumPy's per-CPU SIMD code), masked to the pupil while copied into the first rows of the
   ``N x N`` y-FFT input (the rectangle sits at the window's corner: a circular shift of the
   pupil only multiplies the amplitude PSF by a unimodular phase);
3. inverse FFT along x on those rows (in place), inverse FFT along y (scipy.fft, ortho);
4. ``|h|^2`` folded to ``n_int`` in place; ``rfft2``, times the pixel transfer function and a
   shift that puts the patch at the origin, inverse transforms of the patch rows and columns.

Only steps 2-4's transforms and ``exp(i phi)`` are essential work: ``benchmarks/ceiling.py``
times exactly those on preallocated buffers (the hardware ceiling ``python -m benchmarks``
compares the model with).  The element-wise passes around the transforms (defocus phase, the
masked FFT input rows, the square-and-fold, the vectorial model's polyphase split, squared sums
and pupil energy) run as fused loops compiled by numba when it is installed
(:mod:`z2t_dask.physics.optics.polyphase`), equal bit for bit to their NumPy definitions, so
the bytes of a PSF do not depend on it.

When ``n_int`` is a power of two (64 by default) the numpy path replaces steps 2-4's first
half: per emitter, the ``f^2`` polyphase parts (``f = N / n_int``) of the pupil field (the
vectorial model: each of its five field components; the scalar model: its one field, the mask
as its "component") go through ``n_int``-point DFTs along both axes, squared and summed, which
is the folded ``|h|^2`` (Parseval over the fold), in a radix-4 DFT of the package's own
(:mod:`z2t_dask.physics.optics.polyphase_dft`: compiled by numba, with a NumPy definition of
the same float32 operations). Measured here it is ~2x faster than ``scipy.fft`` and the passes
around it for a vectorial component; the scalar exact PSF at the default 128-px window went
from ~90 to ~70 us, at most 2.8e-7 relative L2 from the full-window ``scipy.fft`` path (step 3).
Other sizes and non-numpy array modules use ``scipy.fft`` / ``xp.fft`` (steps 2-4 as listed).

Determinism
-----------
The PSF of an emitter is bit-identical whatever other emitters share the call: the polynomial
sums run per emitter in a fixed order (:mod:`~z2t_dask.physics.optics.pupil_poly`), every other
operation is element-wise per emitter, per-emitter reductions run along contiguous rows, and
FFTs transform each emitter's lines independently.  This is tested (``tests/test_psf.py``),
across batch sizes, threads and BLAS thread counts.  No step calls BLAS, whose kernels (their
summation order, fused multiply-adds) differ between CPUs, and ``exp(i phi)`` and the evanescent
decay come from :mod:`~z2t_dask.physics.optics.fixed_math`, not from NumPy's per-CPU SIMD ``cos`` /
``sin`` / ``exp``: the numpy path's PSFs are the same bytes under every OpenBLAS kernel and with
NumPy's baseline SIMD (``tests/test_machine_bytes.py`` switches them with ``OPENBLAS_CORETYPE`` and
``NPY_DISABLE_CPU_FEATURES``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.fft as sfft

from z2t_dask import compiled
from z2t_dask.physics.optics.fixed_math import decay as exp_decay
from z2t_dask.physics.optics.fixed_math import phasors
from z2t_dask.physics.optics.polyphase import (
    defocus_phase,
    fold_intensity,
    masked_rows,
    polyphase_scatter,
    pupil_energy,
    square_accumulate,
)
from z2t_dask.physics.optics.polyphase_dft import complex_product, dft_plan, multiply_spectra, polyphase_dft, supported
from z2t_dask.physics.optics.polyphase_dft import scratch as dft_scratch
from z2t_dask.physics.optics.pupil_poly import eval_rows, powers, row_polynomials, zernike_monomials
from z2t_dask.physics.optics.vectorial import StratifiedOptics, dipole_fields, gibson_lanni_terms

__all__ = ["PupilPSF"]

#: Calls with fewer PSFs than this run the NumPy definitions of the kernels unless numba is
#: already loaded (same bits; numba's import costs ~0.5 s and ~110 MiB).
_FEW_FOR_NUMBA = 16
#: Minimum physical side (nm) of the automatic amplitude FFT window.
_MIN_WINDOW_NM = 12_000.0
#: Minimum physical side (nm) of the window the intensity is folded onto.
_MIN_INTENSITY_WINDOW_NM = 6_000.0
#: The same two sides for depth-dependent models (index mismatch): spherical aberration throws a
#: halo far from the centre (12 um keeps <= 1.5 % L2 at 3 um deep in water, NA 1.4; see
#: tests/test_psf_vectorial.py).
_MIN_WINDOW_NM_MISMATCH = 24_000.0
_MIN_INTENSITY_WINDOW_NM_MISMATCH = 12_000.0
log = logging.getLogger(__name__)
#: Whether the slow-DFT warning was logged in this process (once).
_SLOW_DFT_WARNED: dict[str, bool] = {"done": False}
#: Per-thread reusable work buffers of :meth:`PupilPSF._run_blocks` (dask runs blocks in threads).
_THREAD_WORK = threading.local()
#: Target size (bytes) of the amplitude PSFs of one numpy work block (kept in cache).
_BLOCK_BYTES = 1 << 21


def _smooth_23(n: int) -> int:
    """Smallest integer >= n of the form 2^a 3^b (fast FFT sizes)."""
    best = None
    p2 = 1
    while True:
        p = p2
        while p < n:
            p *= 3
        if best is None or p < best:
            best = p
        if p2 >= n:
            break
        p2 *= 2
    return int(best)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_finite(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(float(v))
    )


def _is_pos_finite(v: Any) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, (bool, np.bool_))
        and math.isfinite(float(v))
        and float(v) > 0
    )


@dataclass(frozen=True, kw_only=True)
class PupilPSF:
    """Scalar pupil-function PSF model of one microscope channel.

    All parameters are keyword-only.

    Parameters
    ----------
    wavelength_nm : float
        Emission wavelength in vacuum (nm).
    na : float
        Numerical aperture of the objective; must be < ``n_immersion``.
    n_medium : float, default 1.518
        Refractive index of the sample medium (used in the exact defocus phase).
    n_immersion : float, default 1.518
        Refractive index of the immersion medium (bounds the NA).
    pixel_size_nm_x : float
        Camera pixel pitch along x = columns = array axis 1 (nm, in sample space).
    pixel_size_nm_y : float
        Camera pixel pitch along y = rows = array axis 0 (nm, in sample space).
    patch_size : int, default 33
        Side of the output patch in camera pixels (odd, >= 3).  The emitter's reference pixel is
        ``patch_size // 2``.
    oversampling : int or None, default None
        Fine-grid oversampling ``s`` (fine pitch = pixel / s).  None: smallest ``s`` with
        ``max(px_x, px_y) / s <= lambda / (4 NA)`` (intensity Nyquist).  A smaller explicit
        value is rejected (the intensity would alias).
    n_modes : int, default 21
        Number of Zernike modes (Noll j = 1 .. n_modes) accepted by :meth:`compute`.
    window_px : int or None, default None
        Side of the periodic amplitude FFT window in camera pixels (>= ``patch_size``).
        None: automatic, 128 for the default patch (see the module notes for the rule and the
        residual wrap-around error).  Resolved value: :attr:`window`.

    Notes
    -----
    Pupil grids (pupil rectangle, mask, Zernike-to-monomial matrices, coordinate powers, k_z,
    pixel transfer function) are built once per instance and cached (also per array module);
    work buffers are reused per thread.  Neither is pickled: instances are immutable, hashable
    and cheap to send to workers.  :meth:`describe` gives the provenance stored with outputs.
    """

    wavelength_nm: float
    na: float
    n_medium: float = 1.518
    n_immersion: float = 1.518
    pixel_size_nm_x: float
    pixel_size_nm_y: float
    patch_size: int = 33
    oversampling: int | None = None
    n_modes: int = 21
    window_px: int | None = None
    vectorial: bool = False
    n_immersion_design: float | None = None
    n_coverslip: float | None = None
    n_coverslip_design: float | None = None
    coverslip_um: float = 170.0
    coverslip_design_um: float | None = None
    working_distance_um: float = 150.0
    focus_depth_um: float = 0.0
    otf_sigma_nm: float = 0.0

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for name in (
            "wavelength_nm",
            "na",
            "pixel_size_nm_x",
            "pixel_size_nm_y",
            "n_medium",
            "n_immersion",
            "coverslip_um",
            "working_distance_um",
        ):
            v = getattr(self, name)
            if not _is_pos_finite(v):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("n_immersion_design", "n_coverslip", "n_coverslip_design", "coverslip_design_um"):
            v = getattr(self, name)
            if v is not None and not _is_pos_finite(v):
                raise ValueError(f"{name} must be None or a finite number > 0, got {v!r}")
        if not isinstance(self.vectorial, (bool, np.bool_)):
            raise ValueError(f"vectorial must be a bool, got {self.vectorial!r}")
        if not _is_finite(self.focus_depth_um):
            raise ValueError(f"focus_depth_um must be a finite number, got {self.focus_depth_um!r}")
        if not _is_finite(self.otf_sigma_nm) or float(self.otf_sigma_nm) < 0:
            raise ValueError(f"otf_sigma_nm must be a finite number >= 0, got {self.otf_sigma_nm!r}")
        if not self.na < self.n_immersion:
            raise ValueError(f"na must be < n_immersion, got na={self.na!r}, n_immersion={self.n_immersion!r}")
        if not _is_int(self.patch_size) or self.patch_size < 3 or self.patch_size % 2 == 0:
            raise ValueError(f"patch_size must be an odd integer >= 3, got {self.patch_size!r}")
        if not _is_int(self.n_modes) or self.n_modes < 1:
            raise ValueError(f"n_modes must be an integer >= 1, got {self.n_modes!r}")
        if self.oversampling is not None:
            if not _is_int(self.oversampling) or self.oversampling < 1:
                raise ValueError(f"oversampling must be None or an integer >= 1, got {self.oversampling!r}")
            pmax = max(float(self.pixel_size_nm_x), float(self.pixel_size_nm_y))
            if pmax / self.oversampling > self._nyquist_nm:
                raise ValueError(
                    f"oversampling={self.oversampling!r} gives a fine pitch above the intensity "
                    f"Nyquist pitch lambda/(4 NA) = {self._nyquist_nm:.4g} nm; use >= "
                    f"{self._auto_oversampling} or None"
                )
        if self.window_px is not None:
            if not _is_int(self.window_px) or self.window_px < self.patch_size:
                raise ValueError(
                    f"window_px must be None or an integer >= patch_size ({self.patch_size}), got {self.window_px!r}"
                )

    # ------------------------------------------------------------------ derived sizes
    @property
    def _nyquist_nm(self) -> float:
        return float(self.wavelength_nm) / (4.0 * float(self.na))

    @property
    def _auto_oversampling(self) -> int:
        pmax = max(float(self.pixel_size_nm_x), float(self.pixel_size_nm_y))
        s = max(1, math.ceil(pmax / self._nyquist_nm))
        while pmax / s > self._nyquist_nm:  # guard against rounding in ceil
            s += 1
        while s > 1 and pmax / (s - 1) <= self._nyquist_nm:
            s -= 1
        return s

    @property
    def sampling(self) -> int:
        """Resolved oversampling factor ``s`` (fine samples per camera pixel per axis)."""
        return int(self.oversampling) if self.oversampling is not None else self._auto_oversampling

    @property
    def _min_intensity_window(self) -> int:
        # Folded intensity copies at least 3 half-patches away from any patch pixel, and a
        # window of at least 6 um (a PSF defocused by 1 um has a ~2.4 um radius at NA 1.4).
        px_min = min(float(self.pixel_size_nm_x), float(self.pixel_size_nm_y))
        side = _MIN_INTENSITY_WINDOW_NM_MISMATCH if self.depth_dependent else _MIN_INTENSITY_WINDOW_NM
        return max(4 * (self.patch_size // 2), math.ceil(side / px_min))

    @property
    def window(self) -> int:
        """Resolved amplitude FFT window side in camera pixels (the ``window_px`` actually used)."""
        if self.window_px is not None:
            return int(self.window_px)
        w_int = _smooth_23(self._min_intensity_window)
        side = _MIN_WINDOW_NM_MISMATCH if self.depth_dependent else _MIN_WINDOW_NM
        target = max(3.5 * self.patch_size, side / min(float(self.pixel_size_nm_x), float(self.pixel_size_nm_y)))
        return w_int * max(1, math.ceil(target / w_int))

    @property
    def intensity_window(self) -> int:
        """Side (camera pixels) of the window the intensity is folded onto before the OTF step.

        The largest divisor of :attr:`window` that is ``>= max(4 * (patch_size // 2), 6 um /
        px)`` and ``>= patch_size`` (or :attr:`window` itself).
        """
        w = self.window
        best = w
        for f in range(2, w + 1):
            if w % f == 0 and w // f >= max(self._min_intensity_window, self.patch_size):
                best = w // f
        return best

    @property
    def fft_size(self) -> int:
        """Fine amplitude FFT grid side ``N = window * sampling`` (samples)."""
        return self.window * self.sampling

    @property
    def optics(self) -> StratifiedOptics:
        """The sample / coverslip / immersion stack with every design value resolved (lengths in nm)."""
        ni = float(self.n_immersion)
        ng = ni if self.n_coverslip is None else float(self.n_coverslip)
        tg = float(self.coverslip_um)
        return StratifiedOptics(
            wavelength_nm=float(self.wavelength_nm),
            na=float(self.na),
            n_medium=float(self.n_medium),
            n_coverslip=ng,
            n_immersion=ni,
            n_coverslip_design=ng if self.n_coverslip_design is None else float(self.n_coverslip_design),
            n_immersion_design=ni if self.n_immersion_design is None else float(self.n_immersion_design),
            coverslip_nm=1000.0 * tg,
            coverslip_design_nm=1000.0 * (tg if self.coverslip_design_um is None else float(self.coverslip_design_um)),
            working_distance_nm=1000.0 * float(self.working_distance_um),
            focus_nm=1000.0 * float(self.focus_depth_um),
        )

    @property
    def depth_dependent(self) -> bool:
        """True when the PSF depends on the emitter's depth above the coverslip, not only on ``z``.

        That is the case with any index or thickness mismatch, or with supercritical light
        (``n_medium < NA``); emitters must then lie above the coverslip
        (``focus_depth_um + z >= 0``).
        """
        return not self.optics.index_matched or float(self.n_medium) <= float(self.na)

    # ------------------------------------------------------------------ cached grids (numpy)
    @cached_property
    def _grids(self) -> SimpleNamespace:
        """Pupil-plane and spectral grids (float64 geometry, stored float32; numpy).

        The pupil is sampled on its bounding rectangle of FFT bins ("rect"), centred: rows
        ``j = -ry..ry`` (``ky = j / (N d_y)``), columns ``i = -rx..rx`` (``kx = i / (N d_x)``).
        The rectangle sits at the origin corner of the FFT window, i.e. the pupil is circularly
        shifted by ``(ry, rx)`` bins; that multiplies the amplitude PSF by a unimodular phase
        factor and leaves the intensity unchanged.
        """
        s = self.sampling
        n_fft = self.fft_size
        n_int = self.intensity_window * s
        lam = float(self.wavelength_nm)
        d_x = float(self.pixel_size_nm_x) / s
        d_y = float(self.pixel_size_nm_y) / s
        k_cut = float(self.na) / lam
        rx = int(math.floor(k_cut * n_fft * d_x)) + 1
        ry = int(math.floor(k_cut * n_fft * d_y)) + 1
        kx = np.arange(-rx, rx + 1) * (1.0 / (n_fft * d_x))  # cycles/nm (np.fft.fftfreq values)
        ky = np.arange(-ry, ry + 1) * (1.0 / (n_fft * d_y))
        ky2, kx2 = np.meshgrid(ky, kx, indexing="ij")  # axis 0 = y (rows), axis 1 = x (cols)
        kr = np.hypot(kx2, ky2)
        inside = kr <= k_cut
        keep_r = np.flatnonzero(inside.any(axis=1))
        keep_c = np.flatnonzero(inside.any(axis=0))
        sl = (slice(keep_r[0], keep_r[-1] + 1), slice(keep_c[0], keep_c[-1] + 1))
        kx, ky, kr, inside = kx[sl[1]], ky[sl[0]], kr[sl], inside[sl]
        if max(inside.shape) > n_fft:  # pragma: no cover - Nyquist sampling guarantees this
            raise RuntimeError("pupil larger than the FFT window")
        kn = float(self.n_medium) / lam
        optics = self.optics
        matched = not self.depth_dependent
        if matched:  # exact defocus 2 pi z (k_z - n / lambda); no evanescent light (NA < n_medium)
            arg = kn * kn - kr * kr
            kz_re = np.sqrt(np.clip(arg, 0.0, None))
            defocus = 2.0 * np.pi * (kz_re - kn)
            static = np.zeros_like(kr)
            decay = np.zeros_like(kr)
            static_decay = np.zeros_like(kr)
        else:  # Gibson-Lanni: depth A - focus B + C (z.physics.optics.vectorial)
            a, b, c = gibson_lanni_terms(optics, kr * kr)
            defocus = a.real
            decay = a.imag
            static = c.real - optics.focus_nm * b
            static_decay = c.imag
        mono = zernike_monomials(self.n_modes)
        if mono.shape[1] < 2:  # keep room for the (linear) sub-pixel ramps
            mono = np.pad(mono, ((0, 0), (0, 1), (0, 1)))
        # Pixel transfer function (exact integration over one camera pixel) on the folded
        # intensity grid, rfft2 layout; f * px = (index / n_int) * s cycles per camera pixel.
        wy = np.sinc(np.fft.fftfreq(n_int) * s)
        wx = np.sinc(np.fft.rfftfreq(n_int) * s)
        sigma = float(self.otf_sigma_nm)
        if sigma > 0:  # model-mismatch blur: a Gaussian of s.d. sigma (nm) in the image
            wy = wy * np.exp(-2.0 * (np.pi * sigma * np.fft.fftfreq(n_int) * s / float(self.pixel_size_nm_y)) ** 2)
            wx = wx * np.exp(-2.0 * (np.pi * sigma * np.fft.rfftfreq(n_int) * s / float(self.pixel_size_nm_x)) ** 2)
        c0 = self.patch_size // 2
        fields = comps = comp_power = dft = None
        field_scale = 1.0
        if self.vectorial:
            e = dipole_fields(optics, kx2[sl], ky2[sl]) * inside  # (2, 3, n_r, n_c)
            field_scale = float(np.abs(e).max())
            e /= field_scale
            fields = e.astype(np.complex64)
            # freely rotating: incoherent sum over polarisations x dipole axes; E_xy == E_yx
            comps = np.stack([e[0, 0], e[1, 1], np.sqrt(2.0) * e[0, 1], e[0, 2], e[1, 2]]).astype(np.complex64)
            comp_power = (np.abs(comps.astype(np.complex128)) ** 2).sum(axis=0).reshape(-1)
        # the package's DFT (numpy path, n_int a power of two) transforms the pupil field's polyphase parts
        dft = dft_plan(n_int) if supported(n_int) else None
        return SimpleNamespace(
            n_fft=n_fft,
            n_int=n_int,
            n_points=int(np.count_nonzero(inside)),
            rect=inside.shape,
            v_pow=powers(ky / k_cut, mono.shape[2] - 1),  # float64
            mono=mono,  # (n_modes, D + 1, D + 1) Zernike -> monomials in (u, v)
            mask=inside.astype(np.float32),
            # powers of the normalised pupil coordinates u = kx / k_cut (columns), v (rows)
            u_pow=powers(kx / k_cut, mono.shape[1] - 1).astype(np.float32),
            defocus=np.where(inside, defocus, 0.0).astype(np.float32),  # rad per nm of z (matched) or depth
            matched=matched,
            focus_nm=np.float32(optics.focus_nm),
            static=np.where(inside, static, 0.0).astype(np.float32),  # rad
            has_static=bool(np.any(static[inside] != 0)),
            evanescent=np.where(inside, decay, 0.0).astype(np.float32),  # amplitude decay per nm of depth
            static_decay=np.where(inside, static_decay, 0.0).astype(np.float32),
            has_evanescent=bool(np.any(decay[inside] > 0) or np.any(static_decay[inside] != 0)),
            fields=fields,  # (2, 3, n_r, n_c) complex64 dipole pupil fields / field_scale, or None (scalar)
            field_scale=field_scale,
            dk2=1.0 / (n_fft * d_x * n_fft * d_y),  # pupil sample area (cycles^2 / nm^2)
            comps=comps,  # (5, n_r, n_c) isotropic components, or None
            # scalar model: the field's one "component" for the package's DFT, the pupil mask (1 + 0i inside)
            pupil_comp=inside.astype(np.complex64)[None] if comps is None else None,
            comp_power=comp_power,  # (n_r * n_c,) float64 sum of their squared moduli
            # numpy path: the compiled polyphase DFT's plan (n_int a power of two), or None (scipy.fft)
            dft=dft,
            ramp_u=-2.0 * np.pi * k_cut * float(self.pixel_size_nm_x),  # rad per px of dx, per u
            ramp_v=-2.0 * np.pi * k_cut * float(self.pixel_size_nm_y),
            otf_weight=(wy[:, None] * wx[None, :]).astype(np.float32),
            # ... times a circular shift by c0 camera pixels, so that patch pixel r is fine
            # sample r * s (a strided slice instead of a gather)
            otf_shifted=(
                wy[:, None]
                * wx[None, :]
                * np.exp(-2j * np.pi * c0 * s * (np.fft.fftfreq(n_int)[:, None] + np.fft.rfftfreq(n_int)[None, :]))
            ).astype(np.complex64),
            # x-FFT input mask on the float view (re, im interleaved) of the rectangle
            mask2=np.repeat(inside.astype(np.float32), 2, axis=1),
            scale=float(s * s),
            scale_s=s,
            patch=self.patch_size,
            block=max(1, _BLOCK_BYTES // (n_fft * n_fft * 8)),
            inside_uv=(kx2[sl][inside] / k_cut, ky2[sl][inside] / k_cut),
        )

    def _grids_for(self, xp: Any) -> SimpleNamespace:
        """The cached grids converted to array module ``xp`` (cached per module)."""
        g = self._grids
        if xp is np:
            return g
        cache = self.__dict__.setdefault("_xp_grids", {})
        key = getattr(xp, "__name__", repr(xp))
        if key not in cache:
            cache[key] = SimpleNamespace(
                **{k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in vars(g).items()}
            )
        return cache[key]

    def __getstate__(self) -> dict:
        # Pickle only the parameters, never the cached grids.
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def describe(self) -> dict[str, Any]:
        """Provenance of the model (stored in the output metadata).

        Returns
        -------
        dict
            ``mode = "exact"``, the model parameters and the resolved sampling (window,
            intensity window, FFT size, oversampling, pupil samples).
        """
        g = self._grids
        return {
            "mode": "exact",
            "model": (
                ("vectorial dipole pupil" if self.vectorial else "scalar pupil")
                + (", Gibson-Lanni index mismatch" if self.depth_dependent else ", exact defocus")
                + ", pixel-integrated, Fourier sub-pixel shift"
            ),
            "optics": {k: v for k, v in vars(self.optics).items()},
            **self.__getstate__(),
            "sampling": self.sampling,
            "window": self.window,
            "intensity_window": self.intensity_window,
            "fft_size": self.fft_size,
            "pupil_samples": g.n_points,
            "error": "none besides the periodic-window residual (see z2t_dask.physics.optics.psf)",
        }

    # ------------------------------------------------------------------ main entry point
    def compute(
        self,
        phase: Any,
        z_um: Any,
        dx: Any = None,
        dy: Any = None,
        mag: Any = None,
        *,
        dipole: Any = None,
        xp: Any = np,
        workers: int | None = None,
        batch_size: int = 64,
    ) -> Any:
        """Pixel-integrated PSF patches of many emitters.

        Parameters
        ----------
        phase : array_like, shape (N, K), K <= n_modes
            Zernike phase coefficients in radians RMS, Noll order (column 0 <-> j = 1, piston,
            ignored).
        z_um : array_like, shape (N,)
            Axial emitter position relative to the focal plane (um); positive = deeper into the
            sample, away from the coverslip/objective.
        dx, dy : array_like, shape (N,), optional
            Sub-pixel offsets in camera pixels along x (columns) and y (rows); default 0.  The
            emitter sits at ``x = c0 + dx``, ``y = r0 + dy`` with ``c0 = r0 = patch_size // 2``.
            Any real value is accepted, but the intensity is periodic with period
            :attr:`intensity_window` pixels (keep ``|dx|, |dy|`` well below
            ``(intensity_window - patch_size) / 2``; the renderer passes ``|d| <= 0.5``).
        mag : array_like, shape (N, K2), K2 <= n_modes, optional
            Zernike amplitude coefficients (dimensionless, Noll order); pupil amplitude
            ``clip(1 + sum_{j>=2} mag_j Z_j, 0, inf)``.  Default: uniform pupil.
        dipole : array_like, shape (N, 3), optional, keyword-only
            Unit dipole vectors ``(mu_x, mu_y, mu_z)`` of fixed dipoles (vectorial model only;
            ``mu_z`` along the optical axis, away from the objective).  None: freely rotating
            emitters (the incoherent mean of the x, y and z dipoles).
        xp : module, keyword-only
            Array module of the inputs and output (numpy default; ``xp.fft`` is used for
            non-numpy modules).
        workers : int or None, keyword-only
            Threads for :mod:`scipy.fft` (numpy path).
        batch_size : int, keyword-only
            Emitters per batch (bounds memory).  The numpy path further works on cache-sized
            blocks (about 2 MiB of amplitude PSF each).  The result does not depend on it, nor
            on which other emitters are in the call (bit for bit; tested for numpy).

        Returns
        -------
        array, shape (N, patch_size, patch_size), float32
            ``out[i, r, c]`` = expected fraction of emitter i's photons collected by camera pixel
            ``(r, c)`` of the patch (pixel centres at ``(y=r, x=c)``).  An emitter whose pupil
            amplitude is zero everywhere gets an all-zero patch.
        """
        phase, z_um, dx, dy, mag = self.check_inputs(phase, z_um, dx, dy, mag, xp=xp)
        dipole = self.check_dipole(dipole, z_um, xp=xp)
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        p = self.patch_size
        out = xp.empty((phase.shape[0], p, p), dtype=xp.float32)

        def patches(g: SimpleNamespace, work: SimpleNamespace, sub: list, dest: Any) -> Any:
            inten, energy = self._intensity(g, work, xp, workers, *sub)
            return self._to_patches(g, xp, workers, inten, energy, None if dest is None else dest[0])

        # a few PSFs (a cached library's probes, an exact fallback or two) are not worth numba's import
        few = phase.shape[0] < _FEW_FOR_NUMBA and not compiled.loaded()
        if not few and xp is np:
            self._warn_if_slow()
        with compiled.numpy_here() if few else contextlib.nullcontext():
            self._run_blocks(xp, batch_size, (phase, z_um, dx, dy, mag, dipole), out, patches)
        return out

    def _warn_if_slow(self) -> None:
        """Log once per process when this model's DFT runs its NumPy definition (numba unavailable)."""
        if _SLOW_DFT_WARNED["done"] or self._grids.dft is None or compiled.present():
            return
        _SLOW_DFT_WARNED["done"] = True
        log.warning(
            "numba is not available (not importable, or Z2T_NUMBA=0): exact PSFs run the NumPy "
            "definition of their DFT, ~15-20x slower per PSF (same bytes); install numba for speed"
        )

    def pixel_otf(
        self,
        phase: Any,
        z_um: Any,
        mag: Any = None,
        *,
        dipole: Any = None,
        workers: int | None = None,
        batch_size: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Spectrum of the pixel-integrated intensity of emitters centred on pixel ``c0``.

        Same model as :meth:`compute` (numpy only), stopped before the last inverse
        transform; used to build interpolation tables on sub-pixel grids.

        Parameters
        ----------
        phase, z_um, mag
            As in :meth:`compute` (``dx = dy = 0``).
        workers, batch_size
            As in :meth:`compute`.

        Returns
        -------
        otf : ndarray, shape (N, n_int, n_int // 2 + 1), complex64
            ``rfft2`` of the intensity folded onto the ``n_int = intensity_window * sampling``
            fine periodic grid (origin = the emitter), times the pixel transfer function.
        norm : ndarray, shape (N,), float64
            Factor turning ``irfft2(otf)`` (numpy "backward" normalisation, sampled at camera
            pixel centres) into photons per camera pixel of a unit-integral PSF (0 = no light).
        """
        phase, z_um, dx, dy, mag = self.check_inputs(phase, z_um, None, None, mag, xp=np)
        dipole = self.check_dipole(dipole, z_um, xp=np)
        n_int = self._grids.n_int
        otf = np.empty((phase.shape[0], n_int, n_int // 2 + 1), np.complex64)
        norm = np.empty(phase.shape[0], np.float64)

        def spectra(g: SimpleNamespace, work: SimpleNamespace, sub: list, dest: Any) -> Any:
            inten, energy = self._intensity(g, work, np, workers, *sub)
            spec = _rfft2(np, inten, workers=workers)
            spec *= g.otf_weight[None, :, :]
            norm = _normaliser(np, g, energy)
            return spec, np.full(spec.shape[0], norm) if np.ndim(norm) == 0 else norm

        few = phase.shape[0] < _FEW_FOR_NUMBA and not compiled.loaded()
        if not few:
            self._warn_if_slow()
        with compiled.numpy_here() if few else contextlib.nullcontext():
            self._run_blocks(np, batch_size, (phase, z_um, dx, dy, mag, dipole), (otf, norm), spectra)
        return otf, norm

    def check_inputs(
        self, phase: Any, z_um: Any, dx: Any = None, dy: Any = None, mag: Any = None, *, xp: Any = np
    ) -> tuple[Any, Any, Any, Any, Any]:
        """Validate and convert :meth:`compute` inputs to float32 ``xp`` arrays.

        Returns
        -------
        phase (N, K), z_um (N,), dx (N,), dy (N,), mag (N, K2) or None
            ``mag`` with fewer than 2 columns (piston only) becomes None.

        Raises
        ------
        ValueError
            On a wrong shape, too many modes or non-finite values (message names the input).
        """
        phase = xp.asarray(phase, dtype=xp.float32)
        if phase.ndim != 2:
            raise ValueError(f"phase must have shape (N, K), got shape {tuple(phase.shape)}")
        n_em, k_phase = phase.shape
        if k_phase > self.n_modes:
            raise ValueError(f"phase has K={k_phase} modes, more than n_modes={self.n_modes}")
        z_um = self._vec(xp, z_um, n_em, "z_um")
        dx = self._vec(xp, 0.0 if dx is None else dx, n_em, "dx")
        dy = self._vec(xp, 0.0 if dy is None else dy, n_em, "dy")
        if mag is not None:
            mag = xp.asarray(mag, dtype=xp.float32)
            if mag.ndim != 2 or mag.shape[0] != n_em or mag.shape[1] > self.n_modes:
                raise ValueError(f"mag must have shape (N={n_em}, K<={self.n_modes}), got {tuple(mag.shape)}")
            if not bool(xp.all(xp.isfinite(mag))):
                raise ValueError("mag contains non-finite values")
            if mag.shape[1] < 2:
                mag = None
        if not bool(xp.all(xp.isfinite(phase))):
            raise ValueError("phase contains non-finite values")
        return phase, z_um, dx, dy, mag

    def collection_fraction(self, z_um: Any, dipole: Any = None) -> np.ndarray:
        """Fraction of the emitted photons the objective collects, on this model's pupil samples.

        The PSFs of :meth:`compute` integrate to 1 (``photons`` are detected photons); this is
        the factor between them and the photons an emitter radiates (vectorial model only; see
        :func:`z2t_dask.physics.optics.vectorial.collection_fraction` for the definition).

        Parameters
        ----------
        z_um : array_like, shape (N,)
            Axial positions relative to the nominal focal plane (um); depth = focus_depth_um + z.
        dipole : array_like, shape (N, 3), optional
            Fixed dipole unit vectors; None = freely rotating.

        Returns
        -------
        ndarray, shape (N,), float64
        """
        if not self.vectorial:
            raise ValueError("collection_fraction needs the vectorial model (vectorial=True)")
        g = self._grids
        z = np.atleast_1d(np.asarray(z_um, dtype=np.float64))
        e = g.fields.astype(np.complex128).reshape(2, 3, -1) * g.field_scale
        depth_nm = 1000.0 * (z + float(self.focus_depth_um))
        att = np.multiply.outer(depth_nm, g.evanescent.reshape(-1)) + g.static_decay.reshape(-1)
        att = np.exp(-2.0 * att) * g.mask.reshape(-1)
        if dipole is None:
            power = (np.abs(e) ** 2).sum(axis=(0, 1)) / 3.0
            collected = att @ power
        else:
            mu = np.asarray(dipole, dtype=np.float64).reshape(-1, 3)
            per = (np.abs(np.einsum("nj,pjk->npk", mu, e)) ** 2).sum(axis=1)
            collected = (att * per).sum(axis=1)
        total = 8.0 * np.pi * (float(self.n_medium) / float(self.wavelength_nm)) / 3.0
        return collected * g.dk2 / total

    def check_dipole(self, dipole: Any, z_um: Any, *, xp: Any = np) -> Any:
        """Validate fixed-dipole vectors ``(N, 3)`` (or None) and the emitters' depths.

        Raises
        ------
        ValueError
            A dipole with the scalar model, a wrong shape, vectors that are not unit length, or
            (for a depth-dependent model) an emitter below the coverslip.
        """
        if self.depth_dependent and z_um.shape[0]:
            low = float(xp.min(z_um)) + float(self.focus_depth_um)
            if low < -1e-6:
                raise ValueError(
                    f"emitter depth focus_depth_um + z_um must be >= 0 (above the coverslip), got {low:.4g} um "
                    f"(focus_depth_um={self.focus_depth_um!r}, min z_um={float(xp.min(z_um)):.4g})"
                )
        if dipole is None:
            return None
        if not self.vectorial:
            raise ValueError("fixed dipoles (dipole=...) need the vectorial model (vectorial=True)")
        d = xp.asarray(dipole, dtype=xp.float32)
        if d.shape != (z_um.shape[0], 3):
            raise ValueError(f"dipole must have shape (N={z_um.shape[0]}, 3), got {tuple(d.shape)}")
        if not bool(xp.all(xp.isfinite(d))) or not bool(xp.all(xp.abs(xp.sum(d * d, axis=1) - 1) < 1e-3)):
            raise ValueError("dipole must hold finite unit vectors (mu_x, mu_y, mu_z)")
        return d

    def _work(self, g: SimpleNamespace, xp: Any, bmax: int) -> SimpleNamespace:
        """Work buffers for blocks of up to ``bmax`` emitters, kept per thread and reused.

        The zero-padded y-FFT input keeps its invariant between calls: only ``ybuf[:, :n_r]``
        is ever written.
        """
        cache = _THREAD_WORK.__dict__.setdefault("buffers", {})
        key = (id(g), getattr(xp, "__name__", repr(xp)))
        work = cache.get(key)
        if work is None or work.phi.shape[0] < bmax or work.grids is not g:
            n_r, n_c = g.rect
            f = g.n_fft // g.n_int
            vec = g.comps is not None
            dft = xp is np and g.dft is not None  # the compiled polyphase DFT replaces ybuf, pbuf and acc
            work = SimpleNamespace(
                grids=g,
                phi=xp.empty((bmax, n_r, n_c), dtype=xp.float32),
                tmp=xp.empty((bmax, n_r, n_c), dtype=xp.float32),
                vals=xp.empty((bmax, n_r, n_c), dtype=xp.complex64),
                ybuf=xp.zeros((bmax, g.n_fft, g.n_fft), dtype=xp.complex64) if not (vec or dft) else None,
                inten=xp.empty((bmax, g.n_int, g.n_int), dtype=xp.float32),
                acc=xp.empty((bmax, g.n_int, 2 * g.n_int), dtype=xp.float32) if vec and not dft else None,
                field=xp.empty((bmax, n_r, n_c), dtype=xp.complex64) if vec else None,
                pbuf=xp.zeros((bmax, f * f, g.n_int, g.n_int), dtype=xp.complex64) if vec and not dft else None,
                # compiled polyphase DFT: sums (transposed) and the two passes' buffers
                acct=np.empty((bmax, g.n_int, g.n_int), np.float32) if dft else None,
                dft_bufs=dft_scratch(g.n_int, n_c, f) if dft else None,
            )
            if len(cache) >= 4:
                cache.clear()
            cache[key] = work
        return work

    def _run_blocks(self, xp: Any, batch_size: int, inputs: tuple, out: Any, fn: Any) -> None:
        """Run ``fn(grids, work, [rows, arows, z], dest)`` over cache-sized blocks into ``out``.

        ``out`` is an array or a tuple of arrays, filled along axis 0 with what ``fn`` returns;
        on the numpy path ``dest`` holds the blocks' slices of ``out`` and ``fn`` may write them
        itself (then it returns None).
        """
        g = self._grids_for(xp)
        phase, z_um, dx, dy, mag, dipole = inputs
        n_em = phase.shape[0]
        if n_em == 0:
            return
        outs = out if isinstance(out, tuple) else (out,)
        # Non-numpy back ends (cuFFT) may pick FFT algorithms by batch count: there every batch
        # is zero-padded to ``batch_size`` so an emitter's bytes never depend on its neighbours.
        # The numpy path is element-wise per emitter and transforms each line independently.
        numpy_path = xp is np
        block = min(batch_size, g.block) if numpy_path else batch_size
        bmax = min(block, n_em) if numpy_path else block
        work = self._work(g, xp, bmax)
        for start in range(0, n_em, batch_size):
            stop = min(start + batch_size, n_em)
            rows, arows = self._row_polys(
                g, xp, phase[start:stop], dx[start:stop], dy[start:stop],
                None if mag is None else mag[start:stop],
            )  # fmt: skip
            z_b = z_um[start:stop]
            for b0 in range(0, stop - start, block):
                b1 = min(b0 + block, stop - start)
                sub = [
                    rows[b0:b1],
                    None if arows is None else arows[b0:b1],
                    z_b[b0:b1],
                    None if dipole is None else dipole[start + b0 : start + b1],
                ]
                n_b = b1 - b0
                if not numpy_path and n_b < bmax:
                    sub = [None if a is None else _pad_rows(xp, a, bmax) for a in sub]
                dest = tuple(o[start + b0 : start + b1] for o in outs) if numpy_path else None
                res = fn(g, work, sub, dest)
                if res is None:
                    continue
                res = res if isinstance(res, tuple) else (res,)
                for o, r in zip(outs, res):
                    o[start + b0 : start + b1] = r[:n_b]

    @staticmethod
    def _vec(xp: Any, v: Any, n: int, name: str) -> Any:
        a = xp.asarray(v, dtype=xp.float32)
        if a.ndim == 0:
            a = xp.full((n,), a, dtype=xp.float32)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(a.shape)}")
        if not bool(xp.all(xp.isfinite(a))):
            raise ValueError(f"{name} contains non-finite values")
        return a

    # ------------------------------------------------------------------ one batch
    @staticmethod
    def _row_polys(g: SimpleNamespace, xp: Any, phase: Any, dx: Any, dy: Any, mag: Any) -> tuple[Any, Any]:
        """Per-row polynomial coefficients in ``u`` of the pupil phase (and amplitude).

        The phase polynomial is the Zernike sum plus the sub-pixel ramps
        ``-2 pi (kx dx px_x + ky dy px_y)`` (float64, element-wise per emitter); rows are
        returned as float32, shape (B, R, D + 1) (:func:`~z2t_dask.physics.optics.pupil_poly.row_polynomials`).
        """
        linear = xp.zeros((phase.shape[0], 3), dtype=xp.float64)
        linear[:, 1] = g.ramp_u * dx.astype(xp.float64)
        linear[:, 2] = g.ramp_v * dy.astype(xp.float64)
        rows = row_polynomials(xp, phase, g.mono, g.v_pow, linear)
        arows = None
        if mag is not None:
            linear = xp.zeros((mag.shape[0], 3), dtype=xp.float64)
            linear[:, 0] = 1.0
            arows = row_polynomials(xp, mag, g.mono, g.v_pow, linear)
        return rows, arows

    def _intensity(
        self,
        g: SimpleNamespace,
        work: SimpleNamespace,
        xp: Any,
        workers: int | None,
        rows: Any,
        arows: Any,
        z_um: Any,
        dipole: Any = None,
    ) -> tuple[Any, Any]:
        """Folded intensity ``(b, n_int, n_int)`` float32 and pupil energy: ``(b,)`` float64, or one float for
        every emitter of a uniform scalar pupil on the package's DFT, or None for one on ``scipy.fft``."""
        b = rows.shape[0]
        # --- pupil phase on the pupil rectangle: Horner in u (2 D passes) + exact defocus (index
        # matched: z (k_z - k_n)) or the Gibson-Lanni phase (depth A + static).
        phi = eval_rows(xp, rows, g.u_pow, work.phi[:b])
        z_nm = z_um * xp.float32(1000.0)
        if not g.matched:
            z_nm = z_nm + g.focus_nm  # depth above the coverslip (nm)
        tmp = work.tmp[:b]
        if xp is np:  # one fused pass (compiled kernel, same bits)
            defocus_phase(phi, tmp, g.defocus, z_nm, g.static, g.has_static)
        else:
            xp.multiply(g.defocus[None], z_nm[:, None, None], out=tmp)
            phi += tmp
            if g.has_static:
                phi += g.static[None]
        # --- pupil amplitude (zero outside the pupil) and energy (Parseval normaliser).
        amp = None
        if arows is not None:
            amp = eval_rows(xp, arows, g.u_pow, tmp)
            xp.maximum(amp, xp.float32(0.0), out=amp)
            amp *= g.mask[None]
        if g.has_evanescent:  # evanescent light decays with the depth (Gibson-Lanni A, C imaginary parts)
            att = z_nm[:, None, None] * g.evanescent[None] + g.static_decay[None]
            if xp is np:  # float64 exp rounded once: the same bits on any machine (not NumPy's SIMD exp)
                decay = np.empty_like(att)
                exp_decay(decay, att, g.mask)
            else:
                decay = xp.exp(-att) * g.mask[None]
            amp = decay if amp is None else amp * decay
        # --- exp(i phi) * amp on the rectangle (contiguous, zero outside the pupil).
        vals = work.vals[:b]
        if xp is np:  # the same bits on any machine (NumPy's SIMD cos / sin are chosen per CPU)
            phasors(vals.view(np.float32), phi)
        else:
            xp.cos(phi, out=vals.real)
            xp.sin(phi, out=vals.imag)
        inten = work.inten[:b]
        if g.comps is None:  # scalar model: one field
            energy = None  # uniform pupil: the energy is the number of pupil samples
            if amp is not None:
                vals *= amp
                a64 = amp.reshape(b, -1).astype(xp.float64)
                energy = xp.sum(a64 * a64, axis=1)
            if xp is np and g.dft is not None:  # the package's DFT of the field (vals * mask), folded and squared
                field = (vals, g.pupil_comp)
                self._polyphase_intensity(g, work, xp, workers, field, None, accumulate=False, inten=inten)
                # unnormalised DFTs: n_int^2 times the ortho intensity (a uniform pupil's energy is one number)
                return inten, (float(g.n_points) if energy is None else energy) * float(g.n_int) ** 2
            # the field, zero outside the pupil, into the first rows of the FFT input, zeros after
            # (vals * mask == vals where the amplitude is already masked: 0 stays 0, -0 stays -0)
            rows_in = work.ybuf[:b, : g.rect[0], :]
            if xp is np:
                masked_rows(work.ybuf[:b].view(np.float32), vals.view(np.float32), g.mask2)
            else:
                xp.multiply(vals.view(xp.float32), g.mask2[None], out=rows_in.view(xp.float32)[:, :, : 2 * g.rect[1]])
                rows_in[:, :, g.rect[1] :] = 0
            self._field_intensity(g, work, xp, workers, inten)
            return inten, energy
        # vectorial model: the pupil field of each (polarisation, dipole) component, intensities summed
        if amp is not None:
            vals *= amp
        if dipole is None:
            comps = [g.comps[i][None] for i in range(g.comps.shape[0])]
        else:  # fixed dipoles: the coherent sum over the dipole axes, per polarisation
            mu = dipole.astype(xp.complex64)[:, :, None, None]
            mul = complex_product if xp is np else lambda a, c: a * c  # numpy: never its complex multiply
            comps = [
                mul(g.fields[p, 0][None], mu[:, 0])
                + mul(g.fields[p, 1][None], mu[:, 1])
                + mul(g.fields[p, 2][None], mu[:, 2])
                for p in range(2)
            ]
        # energy = sum_k |vals|^2 sum_c |comp_c|^2 (freely rotating), or the sum of the fields'
        # |field|^2 (fixed dipoles), per emitter along its rows
        energy = xp.zeros(b, dtype=xp.float64)
        if dipole is None:
            if xp is np:  # one pass (compiled kernel, NumPy's pairwise sum)
                pupil_energy(energy, vals, g.comp_power, True, False)
            else:
                v64 = vals.reshape(b, -1)
                p64 = v64.real.astype(xp.float64) ** 2
                p64 += v64.imag.astype(xp.float64) ** 2
                p64 *= g.comp_power[None]
                energy = xp.sum(p64, axis=1)
        field = work.field[:b]
        acc = None if work.acc is None else work.acc[:b]
        own = xp is np and g.dft is not None  # the package's DFT forms vals * comp itself
        for i, comp in enumerate(comps):
            if xp is np:
                if not own or dipole is not None:  # (fixed dipoles: the field's energy below)
                    complex_product(vals, comp, out=field)  # the same float32 operations as the DFT's gather
            else:
                xp.multiply(vals, comp, out=field)
            if dipole is not None:
                if xp is np:
                    pupil_energy(energy, field, g.comp_power, False, True)
                else:
                    f64 = field.reshape(b, -1)
                    energy += xp.sum(f64.real.astype(xp.float64) ** 2 + f64.imag.astype(xp.float64) ** 2, axis=1)
            self._polyphase_intensity(
                g, work, xp, workers, (vals, comp) if own else field, acc,
                accumulate=i > 0, inten=inten if i == len(comps) - 1 else None,
            )  # fmt: skip
        if own:  # unnormalised DFTs: the intensity is n_int^2 times the ortho one
            energy *= float(g.n_int) ** 2
        return inten, energy

    @staticmethod
    def _polyphase_intensity(
        g: SimpleNamespace,
        work: SimpleNamespace,
        xp: Any,
        workers: int | None,
        field: Any,
        acc: Any,
        *,
        accumulate: bool,
        inten: Any = None,
    ) -> None:
        """``|FFT(field)|^2`` folded onto the ``n_int`` grid, as squared ``(re, im)`` pairs into ``acc``.

        With ``f = n_fft / n_int`` the folded intensity is the sum over the ``f^2`` polyphase
        components ``P[f k + p, f l + q]`` of ``|ortho n_int-point FFT|^2`` (the DFT's Parseval
        over the fold; the components' phase factors have modulus 1): the same values as
        transforming the whole window and folding, with ``n_int``-point transforms.

        On the numpy path with a power-of-two ``n_int`` (``g.dft``) the compiled
        :data:`~z2t_dask.physics.optics.polyphase_dft.polyphase_dft` does the parts' gather,
        unnormalised DFTs and squares in one pass each, into ``work.acct`` (transposed; ``acc``
        is unused, and :meth:`_intensity` scales the energy by ``n_int^2`` instead); otherwise
        ``scipy.fft`` / ``xp.fft`` with ``ortho`` normalisation.

        Parameters
        ----------
        field : array, shape (b, n_r, n_c), or tuple
            Pupil field on the pupil rectangle (corner of the FFT window); on the package DFT's
            path the pair ``(vals, comp)`` whose product it is (formed by the kernel).
        acc : array, shape (b, n_int, 2 n_int), float32, or None
            Written (``accumulate`` false) or added to (None on the compiled DFT's path).
        inten : array, shape (b, n_int, n_int), float32, optional
            The last component's call: the folded intensity ``re^2 + im^2`` of ``acc`` (written).
        """
        f = g.n_fft // g.n_int
        if isinstance(field, tuple):  # the package's DFT: one compiled pass per part, from (vals, comp)
            vals, comp = field
            acct = work.acct[: vals.shape[0]]
            if not accumulate:
                acct[...] = 0.0
            d = g.dft
            polyphase_dft(acct, vals, comp, f, d.perm, d.radix, d.span, d.wr, d.wi, *work.dft_bufs)
            if inten is not None:
                inten[...] = acct.transpose(0, 2, 1)
            return
        b = field.shape[0]
        pb = work.pbuf[:b]  # (b, f^2, m, m); rows below the components' extent stay zero
        sr = -(-g.rect[0] // f)
        rows = pb[:, :, :sr, :]
        if xp is np:  # one pass (compiled kernel)
            polyphase_scatter(pb, field, sr)
        else:  # the kernel's definition (slicing only: any array module)
            polyphase_scatter.reference(pb, field, sr)
        res = _ifft(xp, rows, axis=3, workers=workers, overwrite=True)  # in place (scipy)
        if not (xp is np and np.may_share_memory(res, rows)):
            rows[...] = res
        hv = _ifft(xp, pb, axis=2, workers=workers).view(xp.float32)  # (b, f^2, m, 2 m)
        if xp is np:  # squares summed in the same order, in one pass
            final = inten is not None
            square_accumulate(acc, hv, accumulate, inten if final else work.inten[:b], final)
            return
        xp.square(hv, out=hv)
        for j in range(f * f):
            if j == 0 and not accumulate:
                acc[...] = hv[:, 0]
            else:
                acc += hv[:, j]
        if inten is not None:  # (re^2, im^2) pairs summed once for all components
            xp.add(acc[:, :, 0::2], acc[:, :, 1::2], out=inten)

    @staticmethod
    def _field_intensity(
        g: SimpleNamespace,
        work: SimpleNamespace,
        xp: Any,
        workers: int | None,
        inten: Any,
    ) -> None:
        """``|FFT(field)|^2`` folded onto the ``n_int`` grid, written to ``inten`` ``(b, n_int, n_int)``.

        The pupil field is already in the first ``n_r`` rows of the y-FFT input (its first ``n_c``
        columns; zeros after).
        """
        b = inten.shape[0]
        n_r = g.rect[0]
        # The x-FFT runs in place on the first n_r rows of the y-FFT input (rows n_r.. are
        # never written, so they stay zero); the caller rewrote its input columns n_c.. to zero.
        ybuf = work.ybuf[:b]
        rows_in = ybuf[:, :n_r, :]
        # --- amplitude PSF: inverse FFT along x on the pupil rows, then along y.
        res = _ifft(xp, rows_in, axis=2, workers=workers, overwrite=True)  # in place (scipy)
        if not (xp is np and np.may_share_memory(res, rows_in)):
            rows_in[...] = res
        h = _ifft(xp, ybuf, axis=1, workers=workers)
        # --- intensity |h|^2 folded onto the n_int-periodic grid (exact periodisation: keeps
        # every f-th OTF sample).  Squares in place on the (re, im) view, adds the blocks (rows,
        # then columns, then re + im) in a fixed order.
        hv = h.view(xp.float32)  # (b, N, 2N): re, im interleaved
        if xp is np:  # one pass (compiled kernel)
            fold_intensity(inten, hv)
        else:  # the kernel's array-module definition
            fold_intensity.reference(inten, hv, xp)

    @staticmethod
    def _to_patches(g: SimpleNamespace, xp: Any, workers: int | None, inten: Any, energy: Any, dest: Any = None) -> Any:
        """Pixel-integrated patches ``(b, p, p)`` float32 from the folded intensity.

        Written into ``dest`` (returns None) when given, else returned.
        """
        m = g.n_int
        # --- OTF x pixel transfer function, back to camera pixel centres only.
        otf = _rfft2(xp, inten, workers=workers)
        if xp is np:  # float32 operations, not NumPy's complex multiply (machine-dependent multiply-adds)
            multiply_spectra(otf, g.otf_shifted)
        else:
            otf *= g.otf_shifted[None, :, :]
        col = _ifft(xp, otf, axis=1, workers=workers, ortho=False, overwrite=True)
        del otf
        s, p = g.scale_s, g.patch
        img = _irfft(xp, col[:, 0 : p * s : s, :], m, workers=workers)
        img = img[:, :, 0 : p * s : s]
        # --- normalise: photons per camera pixel for a unit-integral PSF.
        fac = _normaliser(xp, g, energy)
        fac = xp.float32(fac) if np.ndim(fac) == 0 else fac.astype(xp.float32)[:, None, None]
        if dest is None:
            img *= fac
            return img
        xp.multiply(img, fac, out=dest)
        return None


# ---------------------------------------------------------------------- helpers
def _normaliser(xp: Any, g: SimpleNamespace, energy: Any) -> Any:
    """``scale / energy`` (float64), 0 where the pupil carries no light; a scalar for a scalar
    ``energy`` (a uniform pupil's, the same for every emitter) or None (uniform pupil, ortho-normalised
    transforms: the energy is the number of pupil samples)."""
    if energy is None:
        return g.scale / g.n_points
    if isinstance(energy, float):
        return g.scale / energy
    safe = xp.where(energy > 0, energy, 1.0)
    return xp.where(energy > 0, g.scale / safe, 0.0)


def _pad_rows(xp: Any, a: Any, n: int) -> Any:
    """Zero-pad the first axis of ``a`` to length ``n``."""
    pad = xp.zeros((n - a.shape[0],) + tuple(a.shape[1:]), dtype=a.dtype)
    return xp.concatenate([a, pad], axis=0)


def _ifft(xp: Any, a: Any, axis: int, workers: int | None, ortho: bool = True, overwrite: bool = False) -> Any:
    """Inverse FFT along ``axis``; ``a`` is kept (zero-padded work buffer) unless ``overwrite``."""
    norm = "ortho" if ortho else "backward"
    if xp is np:
        return sfft.ifft(a, axis=axis, norm=norm, workers=workers, overwrite_x=overwrite)
    # CuPy transforms a non-last axis into an array whose last axis is not contiguous; the
    # callers take (re, im) float views of the result, which need C order.
    return xp.ascontiguousarray(xp.fft.ifft(a, axis=axis, norm=norm))


def _rfft2(xp: Any, a: Any, workers: int | None) -> Any:
    if xp is np:
        return sfft.rfft2(a, axes=(1, 2), workers=workers)
    return xp.fft.rfft2(a, axes=(1, 2))


def _irfft(xp: Any, a: Any, n: int, workers: int | None) -> Any:
    if xp is np:
        return sfft.irfft(a, n=n, axis=2, workers=workers, overwrite_x=True)
    return xp.fft.irfft(a, n=n, axis=2)
