"""The optics sections of the configuration schema: ``optical`` (the microscope) and ``psf`` (its PSF model).

Frozen dataclasses like every section of :mod:`z2t_dask.config.schema` (which re-exports them);
each field carries its documentation, unit and range in ``metadata`` (``doc``, ``unit``, ``gt``,
``ge``, ``le``). Units: wavelengths and pixel pitches in nm, thicknesses and depths in um.

Geometry (inverted microscope, psfmodels' Gibson-Lanni parameters): objective, immersion layer
(``n_immersion``, design thickness ``working_distance_um``), coverslip (``n_coverslip``,
``coverslip_um``), then the sample medium (``n_medium``). ``z`` is an emitter's position relative
to the nominal focal plane (positive = deeper, away from the coverslip); the focal plane lies
``focus_depth_um`` above the coverslip, so the emitter's depth above the coverslip is
``focus_depth_um + z``. The ``*_design`` values are those the objective is corrected for; null
ones take the actual value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["OpticalConfig", "PSFConfig", "meta"]


def meta(doc: str, unit: str = "", **kw: Any) -> dict[str, Any]:
    """Field metadata: its meaning, unit and range bounds (``gt``, ``ge``, ``le``)."""
    return {"doc": doc, "unit": unit, **kw}


_meta = meta


@dataclass(frozen=True)
class OpticalConfig:
    """Microscope optics. Defaults are the original ``default_config.json`` values."""

    wavelength_nm: float = field(default=660.0, metadata=_meta("emission wavelength in vacuum", "nm", gt=0))
    pixel_size_nm_x: float = field(
        default=101.11, metadata=_meta("camera pixel pitch along x (columns), object space", "nm", gt=0)
    )
    pixel_size_nm_y: float = field(
        default=98.83, metadata=_meta("camera pixel pitch along y (rows), object space", "nm", gt=0)
    )
    NA: float = field(default=1.4, metadata=_meta("numerical aperture of the objective", "", gt=0))
    n_medium: float = field(
        default=1.518,
        metadata=_meta(
            "refractive index of the sample medium, where the emitters are (below NA: the supercritical part of the "
            "pupil is evanescent in it and decays with the emitter's depth)",
            "",
            gt=1.0 - 1e-9,
        ),
    )
    n_immersion: float = field(
        default=1.518, metadata=_meta("refractive index of the immersion medium, actual (must exceed NA)", "", gt=0)
    )
    n_immersion_design: float | None = field(
        default=None,
        metadata=_meta("immersion index the objective is designed for (must exceed NA); null = n_immersion", "", ge=1),
    )
    n_coverslip: float | None = field(
        default=None,
        metadata=_meta("refractive index of the coverslip, actual (must exceed NA); null = n_immersion", "", ge=1),
    )
    n_coverslip_design: float | None = field(
        default=None,
        metadata=_meta("coverslip index the objective is designed for; null = the actual n_coverslip", "", ge=1),
    )
    coverslip_um: float = field(default=170.0, metadata=_meta("coverslip thickness, actual", "um", ge=0))
    coverslip_design_um: float | None = field(
        default=None,
        metadata=_meta("coverslip thickness the objective is designed for; null = coverslip_um", "um", ge=0),
    )
    working_distance_um: float = field(
        default=150.0,
        metadata=_meta("immersion layer thickness of the design (Gibson-Lanni t_i0, psfmodels ti0)", "um", gt=0),
    )
    focus_depth_um: float | None = field(
        default=None,
        metadata=_meta(
            "height of the nominal focal plane above the coverslip (psfmodels' stage position zv; 0 = focused on "
            "the coverslip); an emitter's depth above the coverslip is focus_depth_um + z and must be >= 0; "
            "null = emitters.z_range_um (the drawn z range lies just above the coverslip; the resolved value is "
            "in the output metadata)",
            "um",
            ge=0,
        ),
    )
    use_default_config: bool = field(
        default=True,
        metadata=_meta("original key: true = use these defaults; giving explicit optics with true is an error", ""),
    )
    ignore_fixed_psf_coeffs: bool = field(
        default=True, metadata=_meta("original key: false applies psf.fixed_zernike to every emitter", "")
    )
    description: str = field(default="", metadata=_meta("free text", ""))


@dataclass(frozen=True)
class PSFConfig:
    """Pupil PSF numerics."""

    mode: Literal["exact", "fast"] = field(
        default="exact",
        metadata=_meta(
            "PSF computation: 'exact' = pupil PSF per emitter (vectorial or scalar, psf.vectorial); 'fast' = "
            "interpolated library of exact PSFs over field, z and sub-pixel offset (its measured error is stored in "
            "the output metadata; fixed dipoles use the exact model)",
            "",
        ),
    )
    vectorial: bool = field(
        default=True,
        metadata=_meta(
            "true = vectorial high-NA dipole model (aplanatic apodisation, Fresnel transmission through the "
            "interfaces; isotropic emitters average x, y and z dipoles); false = the scalar pupil model",
            "",
        ),
    )
    otf_sigma_nm: float = field(
        default=0.0,
        metadata=_meta(
            "model-mismatch blur: the OTF is multiplied by a Gaussian, i.e. the PSF convolved with a Gaussian of "
            "this s.d. in sample space (0 = none)",
            "nm",
            ge=0,
        ),
    )
    patch_size: int = field(
        default=33, metadata=_meta("side of the rendered PSF patch (odd); light beyond it is lost", "camera px", ge=3)
    )
    oversampling: int | None = field(
        default=None,
        metadata=_meta(
            "fine-grid oversampling; null = Nyquist-safe automatic (1 at the default optics; each step multiplies "
            "the PSF grid's memory by its square, so 16 is the most)",
            "",
            ge=1,
            le=16,
        ),
    )
    n_modes: int = field(default=21, metadata=_meta("number of Noll Zernike modes (j = 1..n_modes)", "", ge=1, le=66))
    fixed_zernike: dict = field(
        default_factory=dict,
        metadata=_meta(
            "Noll index -> extra phase added to every emitter (applied when optical.ignore_fixed_psf_coeffs is false)",
            "rad RMS",
        ),
    )
    batch_size: int = field(default=256, metadata=_meta("emitters per FFT batch (memory bound)", "", ge=1))
    fast_dz_um: float = field(
        default=0.025,
        metadata=_meta(
            "fast mode: largest z spacing of the table library's planes (linear interpolation); the whole-chip "
            "spectral library uses twice it (cubic)",
            "um",
            gt=0,
        ),
    )
    fast_subpixel: int = field(
        default=8,
        metadata=_meta(
            "fast mode: sub-pixel offsets per pixel in the table library (even; the spectral library shifts exactly)",
            "",
            ge=2,
        ),
    )
    fast_span_rad: float = field(
        default=0.05,
        metadata=_meta(
            "fast mode: largest RMS aberration change across a field cell of the table library (the spectral "
            "library's PSF nodes span 4x it, its position lookup grid 0.5x)",
            "rad",
            gt=0,
        ),
    )
    fast_tol_rad: float = field(
        default=0.002,
        metadata=_meta(
            "fast mode: emitters whose aberrations are farther (RMS wavefront) from the library's field "
            "interpolation use "
            "the exact model",
            "rad",
            ge=0,
        ),
    )
    fast_max_mib: float = field(
        default=256.0,
        metadata=_meta(
            "fast mode: memory cap of the library tables per process (coarser field cells beyond it)", "MiB", gt=0
        ),
    )
