"""The aberration field of a sample: Zernike coefficients of each emitter from its position.

An :class:`AberrationField` is the one function from ROI positions to per-emitter pupil
coefficients: the Zmap's phase at the chip position (ROI position + ``tiff.crop_offset``) times
``zernike.scale``, plus the fixed Zernike terms of ``psf.fixed_zernike``; the Zmap's
amplitude coefficients (or None). The ground truth draws its coefficients with it and the fast
PSF library tabulates it, so the two cannot drift apart. Build it from a config with
:func:`z2t_dask.engine.assembly.aberration_field`.

Units: positions in camera pixels of the ROI; coefficients in radians RMS, Noll order
(index 0 = j 1, piston).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from z2t_dask.physics.zmap import Zmap

__all__ = ["AberrationField"]


@dataclass(frozen=True)
class AberrationField:
    """Per-emitter Zernike coefficients as a function of ROI position.

    Parameters
    ----------
    zmap : Zmap
        Coefficient maps over the chip (camera pixels).
    offset_xy : tuple of int
        ``(x0, y0)``: the chip pixel of the ROI's pixel (0, 0) (``tiff.crop_offset``).
    scale : float
        Factor on the Zmap's phase (``zernike.scale``).
    fixed : tuple of (int, float)
        ``(Noll j, rad RMS)`` terms added to every emitter's phase (``psf.fixed_zernike``; empty
        when ``optical.ignore_fixed_psf_coeffs``), added in this order.
    method : str
        Interpolation of the Zmap (``zernike.interpolation_method``).
    """

    zmap: Zmap
    offset_xy: tuple[int, int] = (0, 0)
    scale: float = 1.0
    fixed: tuple[tuple[int, float], ...] = ()
    method: str = "linear"

    def at(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Coefficients at ROI positions ``x``, ``y`` (px): phase (N, K) rad and magnitude (N, K) or None.

        Each row depends only on its own position (bit-identical whatever else is evaluated).
        """
        x0, y0 = self.offset_xy
        phase, mag = self.zmap.coefficients(np.asarray(x) + x0, np.asarray(y) + y0, method=self.method)
        phase = phase * self.scale
        for j, v in self.fixed:
            phase[:, j - 1] += v
        return phase, mag

    def __call__(self, xy_roi: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Coefficients at ROI positions ``xy_roi`` (N, 2) px (x, y): see :meth:`at`."""
        return self.at(xy_roi[:, 0], xy_roi[:, 1])

    def describe(self) -> dict[str, Any]:
        """The Zmap's description (the scale and fixed terms are part of the config)."""
        return self.zmap.describe()
