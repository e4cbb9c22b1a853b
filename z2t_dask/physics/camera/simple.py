"""Cameras without an ADC: :class:`Ideal` (a perfect photon counter) and :class:`OriginalFloat`.

``OriginalFloat`` is the original tool's float "camera" (``add_camera_noise``), kept to reproduce
old data.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from z2t_dask.physics.camera.common import (
    as_photons,
    check_rng,
    counts,
    frame_generator,
    poisson,
    real_param,
    set_field,
)

__all__ = ["ORIGINAL_NORMAL_THRESHOLD", "Ideal", "OriginalFloat"]

#: Above this expected count the original tool replaced Poisson by Normal(λ, √λ).
ORIGINAL_NORMAL_THRESHOLD = 1e4


@dataclass(frozen=True)
class Ideal:
    """Perfect photon counter (tests, references).

    Parameters
    ----------
    poisson : bool
        True: ``Poisson(photons)`` as float32 counts. False: the expected photons
        unchanged (float32 copy, no draw; noise-free tests).
    """

    poisson: bool = True

    units = "photons"

    def __post_init__(self) -> None:
        if not isinstance(self.poisson, (bool, np.bool_)):
            raise ValueError(f"Ideal poisson must be True or False, got {self.poisson!r}")
        set_field(self, "poisson", bool(self.poisson))

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (float32)."""
        return np.dtype(np.float32)

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Record one frame: photons (float32, shape (Y, X)) -> counts or expectations (float32)."""
        ph = as_photons(photons, xp)
        if not self.poisson:
            check_rng(rng)
            return ph.astype(xp.float32, copy=True)
        gen = frame_generator(rng, xp)
        return counts(gen, ph, 1.0, 0.0, xp)


@dataclass(frozen=True)
class OriginalFloat:
    """The original tool's float "camera" (``add_camera_noise``), for reproducing old data.

    Parameters
    ----------
    readout_noise : float
        Standard deviation of the additive Gaussian noise, photons, >= 0.
    shot_noise : bool
        Draw shot noise: ``Poisson(λ)`` where ``λ <= 1e4``, ``Normal(λ, sqrt(λ))`` above.

    Notes
    -----
    The caller adds the (constant) background into ``photons``. Then optional shot noise,
    ``+ Normal(0, readout_noise)``, clip at 0, float32. No QE, gain, offset or
    quantisation: values are "photon-like" floats, as in the original TIFFs.
    """

    readout_noise: float = 10.0
    shot_noise: bool = True

    units = "photons"

    def __post_init__(self) -> None:
        noise = real_param("OriginalFloat", "readout_noise", self.readout_noise)
        if noise < 0.0:
            raise ValueError(f"OriginalFloat readout_noise must be >= 0 photons, got {self.readout_noise!r}")
        if not isinstance(self.shot_noise, (bool, np.bool_)):
            raise ValueError(f"OriginalFloat shot_noise must be True or False, got {self.shot_noise!r}")
        set_field(self, "readout_noise", noise)
        set_field(self, "shot_noise", bool(self.shot_noise))

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (float32)."""
        return np.dtype(np.float32)

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Record one frame: photons incl. background (shape (Y, X)) -> float32 values >= 0."""
        ph = as_photons(photons, xp)
        gen = frame_generator(rng, xp)
        if self.shot_noise:
            lam = ph.astype(xp.float64)
            high = lam > ORIGINAL_NORMAL_THRESHOLD
            any_high = bool(high.any())
            if any_high:
                lam_high = lam[high]
                lam[high] = 0.0
            out = poisson(gen, lam).astype(xp.float32)
            if any_high:
                draw = gen.standard_normal(lam_high.shape)  # float64, like the original
                draw *= xp.sqrt(lam_high)
                draw += lam_high
                out[high] = draw.astype(xp.float32)
        else:
            out = ph.astype(xp.float32, copy=True)
        if self.readout_noise > 0.0:
            noise = gen.standard_normal(out.shape, dtype=xp.float32)
            noise *= np.float32(self.readout_noise)
            out += noise
            del noise
        xp.maximum(out, 0, out=out)
        return out
