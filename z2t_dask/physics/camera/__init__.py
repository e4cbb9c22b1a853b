"""Camera models: expected photons per pixel -> recorded values, one frame at a time.

Every model is a frozen dataclass called as ``model(photons, rng, *, xp=np)``:

* ``photons`` -- expected photons per pixel for one frame, **including background**
  (float array, shape ``(Y, X)``; leading axes are allowed and treated element-wise);
* ``rng`` -- a :class:`numpy.random.Generator` dedicated to that frame. Every random
  draw comes from it, so the same generator state and input give identical bytes;
* ``xp`` -- the array namespace (``numpy`` by default). With another namespace
  (e.g. ``cupy``) the draws come from ``xp.random.default_rng(seed)`` where ``seed`` is
  drawn from ``rng``: still deterministic, but a different stream from the NumPy path
  (record the backend with the data).

Each model exposes ``dtype`` (output dtype) and ``units`` (``"ADU"``, ``"photons"`` or
``"photoelectrons"``).

Physics follows the usual generative chains (Hirsch et al. 2013 for EMCCD, Huang et al.
2013 for sCMOS): one Poisson draw of photo-electrons, the EM register as an exact
Gamma(n, G) draw that is exactly zero for n = 0, Gaussian read noise, then quantisation
and clipping to the ADC range. The pure-array code has no dask, file or config imports.

==========  ==================================================================================
``common``  the :class:`CameraModel` interface and the shared helpers (parameter checks, Poisson
            draws, the floor-table shortcut, quantisation)
``emccd``   :class:`EMCCD`
``scmos``   :class:`SCMOS` (scalar parameters or per-pixel maps)
``simple``  :class:`Ideal` (photon counter) and :class:`OriginalFloat` (the original tool's)
``pmf``     exact pmfs of the whole chains and their lookup samplers
==========  ==================================================================================
"""

from __future__ import annotations

from z2t_dask.physics.camera.common import CameraModel
from z2t_dask.physics.camera.emccd import EMCCD
from z2t_dask.physics.camera.scmos import SCMOS
from z2t_dask.physics.camera.simple import Ideal, OriginalFloat

__all__ = ["EMCCD", "SCMOS", "CameraModel", "Ideal", "OriginalFloat"]
