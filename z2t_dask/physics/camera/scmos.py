"""The sCMOS camera model: Poisson -> per-pixel gain -> read noise -> offset -> ADC (Huang et al. 2013)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
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
from z2t_dask.physics.camera.pmf import linear_sampler

__all__ = ["SCMOS"]


def _scmos_map(name: str, value: Any, *, positive: bool) -> float | np.ndarray:
    """Validate an sCMOS parameter: a scalar or a finite 2-D (Y, X) map (read-only float32)."""
    if np.ndim(value) == 0:
        out = real_param("SCMOS", name, value)
        if (out <= 0.0) if positive else (name == "variance" and out < 0.0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"SCMOS {name} must be {bound}, got {value!r}")
        return out
    arr = np.array(value, dtype=np.float32)  # copy: the model owns its maps
    if arr.ndim != 2:
        raise ValueError(f"SCMOS {name} must be a scalar or a 2-D (Y, X) map, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"SCMOS {name} map must be finite everywhere")
    if positive and not np.all(arr > 0):
        raise ValueError(f"SCMOS {name} map must be > 0 everywhere")
    if name == "variance" and not np.all(arr >= 0):
        raise ValueError("SCMOS variance map must be >= 0 ADU^2 everywhere")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SCMOS(ADCCamera):
    """Scientific CMOS: Poisson -> per-pixel gain -> Gaussian read noise -> offset -> ADC.

    Parameters
    ----------
    qe : float
        Quantum efficiency in (0, 1].
    offset : float or array (Y, X)
        Per-pixel offset (dark level), ADU.
    variance : float or array (Y, X)
        Per-pixel read-noise variance, ADU², >= 0.
    gain : float or array (Y, X)
        Per-pixel conversion gain, ADU per e⁻, > 0.
    bit_depth : int
        ADC depth; output clipped to ``[0, 2**bit_depth - 1]``.

    Notes
    -----
    ``ADU = rint(gain·Poisson(qe·photons) + Normal(0, sqrt(variance)) + offset)``, clipped
    and cast to uint16 (uint8/uint32 for other depths). Maps must have the frame's
    (Y, X) shape, in the same orientation as the frames; use :meth:`crop` for a ROI.
    Maps are copied to read-only float32 arrays. Equality compares values; instances
    are unhashable (they may hold arrays).
    """

    qe: float = 0.8
    offset: float | np.ndarray = 100.0
    variance: float | np.ndarray = 2.0
    gain: float | np.ndarray = 0.5
    bit_depth: int = 16
    _sigma: float | np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        qe = real_param("SCMOS", "qe", self.qe)
        if not 0.0 < qe <= 1.0:
            raise ValueError(f"SCMOS qe must be in (0, 1], got {self.qe!r}")
        set_field(self, "qe", qe)
        set_field(self, "bit_depth", bit_depth_param("SCMOS", self.bit_depth))
        shapes = {}
        for name, positive in (("offset", False), ("variance", False), ("gain", True)):
            value = _scmos_map(name, getattr(self, name), positive=positive)
            set_field(self, name, value)
            if isinstance(value, np.ndarray):
                shapes[name] = value.shape
        if len(set(shapes.values())) > 1:
            raise ValueError(f"SCMOS maps must all have the same (Y, X) shape, got {shapes}")
        sigma = self.variance
        if isinstance(sigma, np.ndarray):
            sigma = np.sqrt(sigma)
            sigma.setflags(write=False)
        else:
            sigma = math.sqrt(sigma)
        set_field(self, "_sigma", sigma)

    def __eq__(self, other: object) -> bool:
        if type(other) is not SCMOS:
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self) if f.init
        )

    @property
    def map_shape(self) -> tuple[int, int] | None:
        """(Y, X) shape of the per-pixel maps, or None when all parameters are scalars."""
        for name in ("offset", "variance", "gain"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                return int(value.shape[0]), int(value.shape[1])
        return None

    def crop(self, y0: int, x0: int, height: int, width: int) -> SCMOS:
        """Return a model whose maps are cut to the window ``[y0:y0+height, x0:x0+width]``.

        Parameters
        ----------
        y0, x0 : int
            Top-left corner of the window in map pixels (row, column).
        height, width : int
            Window size in pixels.

        Returns
        -------
        SCMOS
            ``self`` when all parameters are scalars, else a model with cropped maps.
        """
        for name, value, low in (("y0", y0, 0), ("x0", x0, 0), ("height", height, 1), ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"SCMOS.crop {name} must be an integer >= {low}, got {value!r}")
        shape = self.map_shape
        if shape is None:
            return self
        if y0 + height > shape[0] or x0 + width > shape[1]:
            raise ValueError(
                f"SCMOS.crop window rows {y0}:{y0 + height}, columns {x0}:{x0 + width} exceeds the map shape {shape}"
            )
        window = (slice(y0, y0 + height), slice(x0, x0 + width))

        def cut(value: float | np.ndarray) -> float | np.ndarray:
            return value[window] if isinstance(value, np.ndarray) else value

        return dataclasses.replace(self, offset=cut(self.offset), variance=cut(self.variance), gain=cut(self.gain))

    def _tabulate(self, ph: Any) -> bool:
        """Per-pixel maps: no table (each pixel's chain differs), and the frame must match them."""
        shape = self.map_shape
        if shape is not None and tuple(ph.shape[-2:]) != shape:
            raise ValueError(
                f"SCMOS maps have shape {shape} but the frame has shape {tuple(ph.shape[-2:])}; "
                "crop the maps to the simulated window with SCMOS.crop(y0, x0, height, width)"
            )
        return shape is None

    def floor_sampler(self, photons: float) -> Any:
        """Exact sampler of the whole chain at ``photons`` expected photons per pixel, or None.

        Only for scalar parameters (per-pixel maps make every pixel's distribution different)
        and read noise > 0; see :func:`z2t_dask.physics.camera.pmf.linear_adu_pmf`.
        """
        if self.map_shape is not None:
            return None
        return linear_sampler(
            float(photons) * self.qe,
            float(self.gain),
            float(self._sigma),
            float(self.offset),
            self.max_adu,
            self.dtype.name,
        )

    def draw_chain(self, gen: Any, ph: Any, xp: ModuleType = np) -> Any:
        """The explicit draws, pixel by pixel: Poisson, gain, normal, offset, rounding."""

        def on(value: float | np.ndarray) -> Any:
            return xp.asarray(value) if isinstance(value, np.ndarray) else np.float32(value)

        adu = counts(gen, ph, self.qe, 0.0, xp)
        adu *= on(self.gain)
        if not (np.ndim(self._sigma) == 0 and self._sigma == 0.0):
            noise = gen.standard_normal(adu.shape, dtype=xp.float32)
            noise *= on(self._sigma)
            adu += noise
            del noise
        adu += on(self.offset)
        return quantize(adu, self.max_adu, self.dtype, xp)
