"""The EMCCD camera model: Poisson -> Gamma EM register -> read noise -> ADC (Hirsch et al. 2013)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from z2t_dask.physics.camera.common import (
    ADCCamera,
    bit_depth_param,
    counts,
    quantize,
    real_param,
    set_field,
)
from z2t_dask.physics.camera.pmf import emccd_sampler, linear_sampler

__all__ = ["EMCCD"]


@dataclass(frozen=True)
class EMCCD(ADCCamera):
    """Electron-multiplying CCD: Poisson -> Gamma EM register -> read noise -> ADC.

    Parameters
    ----------
    qe : float
        Quantum efficiency in (0, 1] (photo-electrons per photon).
    em_gain : float
        Mean EM multiplication (e⁻ out per e⁻ in), >= 1. At 1 the EM register is skipped.
    spurious_charge : float
        Clock-induced (spurious) charge, e⁻ per pixel per frame, >= 0; it enters the
        Poisson draw and is then amplified like photo-electrons.
    read_noise_e : float
        Gaussian read-noise standard deviation in e⁻ (after the EM register), >= 0.
    e_per_adu : float
        Sensitivity, e⁻ per ADU (> 0). Not the inverse "gain" in ADU/e⁻.
    baseline : float
        Offset added before rounding, ADU.
    bit_depth : int
        ADC depth; output is clipped to ``[0, 2**bit_depth - 1]``.

    Notes
    -----
    Per pixel: ``n ~ Poisson(qe·photons + spurious_charge)``; if ``em_gain > 1``:
    ``e ~ Gamma(shape=n, scale=em_gain)`` (exactly 0 where n == 0, no clamping of the
    shape), else ``e = n``; ``e += Normal(0, read_noise_e)``;
    ``ADU = rint(e / e_per_adu + baseline)`` clipped and cast to ``dtype`` (uint8 for
    <= 8 bits, uint16 up to 16, else uint32). Arithmetic after the Poisson draw is float32
    (exact for counts below 2**24 e⁻).
    """

    qe: float = 0.9
    em_gain: float = 100.0
    spurious_charge: float = 0.002
    read_noise_e: float = 74.4
    e_per_adu: float = 45.0
    baseline: float = 100.0
    bit_depth: int = 16

    def __post_init__(self) -> None:
        owner = "EMCCD"
        qe = real_param(owner, "qe", self.qe)
        if not 0.0 < qe <= 1.0:
            raise ValueError(f"EMCCD qe must be in (0, 1], got {self.qe!r}")
        em_gain = real_param(owner, "em_gain", self.em_gain)
        if em_gain < 1.0:
            raise ValueError(f"EMCCD em_gain must be >= 1 (1 = no EM register), got {self.em_gain!r}")
        spurious = real_param(owner, "spurious_charge", self.spurious_charge)
        if spurious < 0.0:
            raise ValueError(f"EMCCD spurious_charge must be >= 0 e-/pixel/frame, got {self.spurious_charge!r}")
        read_noise = real_param(owner, "read_noise_e", self.read_noise_e)
        if read_noise < 0.0:
            raise ValueError(f"EMCCD read_noise_e must be >= 0 e-, got {self.read_noise_e!r}")
        e_per_adu = real_param(owner, "e_per_adu", self.e_per_adu)
        if e_per_adu <= 0.0:
            raise ValueError(f"EMCCD e_per_adu must be > 0 e-/ADU, got {self.e_per_adu!r}")
        baseline = real_param(owner, "baseline", self.baseline)
        for name, value in (
            ("qe", qe),
            ("em_gain", em_gain),
            ("spurious_charge", spurious),
            ("read_noise_e", read_noise),
            ("e_per_adu", e_per_adu),
            ("baseline", baseline),
            ("bit_depth", bit_depth_param(owner, self.bit_depth)),
        ):
            set_field(self, name, value)

    def floor_sampler(self, photons: float) -> Any:
        """Exact sampler of the whole chain at ``photons`` expected photons per pixel, or None.

        A :class:`z2t_dask.physics.camera.pmf.DiscreteSampler` over ADU built (once per process and
        value) from :func:`~z2t_dask.physics.camera.pmf.emccd_adu_pmf` (or the linear chain without EM
        gain); None when the chain is not tabulated (no read noise, nothing to draw, or a table
        too large). Pixels at a frame's floor (the background) draw from it.
        """
        lam = float(photons) * self.qe + self.spurious_charge
        if self.em_gain > 1.0:
            return emccd_sampler(
                lam, self.em_gain, self.read_noise_e, self.e_per_adu, self.baseline, self.max_adu, self.dtype.name
            )
        return linear_sampler(
            lam, 1.0 / self.e_per_adu, self.read_noise_e / self.e_per_adu, self.baseline, self.max_adu, self.dtype.name
        )

    def draw_chain(self, gen: Any, ph: Any, xp: ModuleType = np) -> Any:
        """The explicit draws, pixel by pixel: Poisson, Gamma, normal, rounding (any shape)."""
        electrons = counts(gen, ph, self.qe, self.spurious_charge, xp)
        if self.em_gain > 1.0:
            # Gamma(0) is exactly 0 in NumPy; other backends are masked explicitly.
            if xp is np:
                gen.standard_gamma(electrons, dtype=np.float32, out=electrons)
            else:
                electrons = xp.where(electrons > 0, gen.standard_gamma(electrons, dtype=xp.float32), 0).astype(
                    xp.float32
                )
            electrons *= np.float32(self.em_gain / self.e_per_adu)
        else:
            electrons *= np.float32(1.0 / self.e_per_adu)
        adu = electrons  # now in ADU (before read noise and offset)
        if self.read_noise_e > 0.0:
            noise = gen.standard_normal(adu.shape, dtype=xp.float32)
            noise *= np.float32(self.read_noise_e / self.e_per_adu)
            adu += noise
            del noise
        adu += np.float32(self.baseline)
        return quantize(adu, self.max_adu, self.dtype, xp)
