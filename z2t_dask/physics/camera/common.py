"""What every camera model shares: the :class:`CameraModel` interface and the drawing helpers.

Parameter checks (:func:`real_param`, :func:`bit_depth_param`), the per-frame generator
(:func:`frame_generator`), photo-electron counts (:func:`counts`, :func:`poisson`,
:func:`poisson_floor`), the floor-table shortcut (:func:`record`) and ADC quantisation
(:func:`quantize`). Pure array code: no dask, file or config imports.

Speed (NumPy path).  Most pixels of a frame sit at its floor ``min(photons)`` (the uniform
background) and share one output distribution: when at least half of them do, and the chain
has read noise (EMCCD; sCMOS with scalar parameters), those pixels are drawn in one step from
the exact pmf of the whole chain at that expectation (:mod:`z2t_dask.physics.camera.pmf`, a 16-bit
lookup per pixel, ~10x faster than the explicit draws), and only the pixels above the floor
(the emitters' patches) go through the model's explicit chain.  In the explicit chain the
photo-electron draw splits the expectation at its own floor ``lam0``:
``Poisson(lam) = Poisson(lam0) + Poisson(lam - lam0)`` (independent Poisson variables add;
exact), the floor part from the lookup sampler of the Poisson(lam0) pmf over ``lam0 +- 12 sd``
(tails < 1e-30 dropped), the rest with :meth:`numpy.random.Generator.poisson`.  Gamma and
normal draws are NumPy's (float32, in place).  Both routes draw from the same distribution;
which one a frame takes depends only on its expectations, so the bytes are a deterministic
function of the input and the generator state.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from z2t_dask.physics.camera.pmf import poisson_sampler

__all__ = [
    "ADCCamera",
    "CameraModel",
    "as_photons",
    "bit_depth_param",
    "check_rng",
    "counts",
    "frame_floor",
    "frame_generator",
    "poisson",
    "poisson_floor",
    "quantize",
    "real_param",
    "record",
    "set_field",
    "uint_dtype",
]


@runtime_checkable
class CameraModel(Protocol):
    """Interface shared by all camera models."""

    @property
    def dtype(self) -> np.dtype:
        """Output dtype."""
        ...

    @property
    def units(self) -> str:
        """Units of the output values."""
        ...

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Turn expected photons of one frame into recorded values."""
        ...


# --------------------------------------------------------------------------- helpers


def real_param(owner: str, name: str, value: Any) -> float:
    """Return ``value`` as a finite float or raise ValueError naming the parameter."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner} {name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{owner} {name} must be finite, got {value!r}")
    return out


def bit_depth_param(owner: str, value: Any) -> int:
    """Validate an ADC bit depth (1..32)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 32:
        raise ValueError(f"{owner} bit_depth must be an integer in [1, 32], got {value!r}")
    return int(value)


def uint_dtype(bit_depth: int) -> np.dtype:
    """Smallest unsigned dtype holding ``bit_depth`` bits."""
    if bit_depth <= 8:
        return np.dtype(np.uint8)
    if bit_depth <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def check_rng(rng: Any) -> None:
    """Raise TypeError unless ``rng`` is a :class:`numpy.random.Generator`."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator dedicated to this frame, got {type(rng).__name__}")


def frame_generator(rng: np.random.Generator, xp: ModuleType) -> Any:
    """Generator to draw from: ``rng`` itself for NumPy, a seeded ``xp`` generator otherwise."""
    check_rng(rng)
    if xp is np:
        return rng
    seed = int(rng.integers(0, 2**63 - 1))
    return xp.random.default_rng(seed)


def as_photons(photons: Any, xp: ModuleType) -> Any:
    """Validate the photon frame (at least 2-D, real) and return it as an ``xp`` array."""
    arr = xp.asarray(photons)
    if arr.ndim < 2:
        raise ValueError(f"photons must be a (Y, X) frame, got an array of shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"photons must be real (float32 expected), got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(xp.float32)
    return arr


def poisson(gen: Any, lam: Any) -> Any:
    """Poisson draw with a clear error for negative or non-finite expectations."""
    try:
        return gen.poisson(lam)
    except ValueError as exc:
        raise ValueError(
            f"photons must be finite and >= 0 (expected photons per pixel); Poisson draw failed: {exc}"
        ) from None


#: Largest floor expectation served by a lookup table (its size grows as 24 sqrt(lam)).
_ALIAS_MAX_LAM = 1e7
#: Arrays at least this large draw their Poisson floor from a lookup sampler (building one costs
#: about as much as 50,000 NumPy Poisson draws).
_FLOOR_SPLIT_MIN_SIZE = 1 << 17
#: Smaller frames (noise blocks) always take the explicit chain: a table costs ~0.1-0.5 s to build
#: once per process, worth it only when many pixels draw from it.
_TABLE_MIN_PIXELS = 1 << 14
#: A frame's floor table is used when at least this fraction of its pixels sit at the floor.
_FLOOR_FRACTION = 0.5


def poisson_floor(gen: np.random.Generator, lam: float, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` i.i.d. Poisson(``lam``) counts (photo-electrons, float32) from the exact lookup sampler.

    ``lam`` is the expected count per pixel (>= 0); 0 gives zeros without drawing.
    """
    if lam == 0.0:
        return np.zeros(shape, np.float32)
    return poisson_sampler(float(lam)).sample(gen, math.prod(shape)).reshape(shape)


def frame_floor(ph: np.ndarray) -> float:
    """The frame's smallest expectation (its background), after checking all are finite and >= 0."""
    lo, hi = float(ph.min()), float(ph.max())
    if not (math.isfinite(lo) and math.isfinite(hi) and lo >= 0.0):
        raise ValueError(f"photons must be finite and >= 0 (expected photons per pixel); got values in [{lo}, {hi}]")
    return lo


def _with_floor_table(gen: np.random.Generator, ph: np.ndarray, floor_sampler: Any, chain: Any) -> Any:
    """Record a frame whose floor pixels draw from a table of the whole chain, the rest via ``chain``.

    The floor is ``min(ph)``; ``floor_sampler(floor)`` gives the table (built once per value and
    process, or None). Returns None (nothing drawn) for frames below ``_TABLE_MIN_PIXELS`` pixels,
    when fewer than half the pixels sit at the floor (then no table is built: frames without a
    common background do not pay for one) or when there is no table; the caller then records
    every pixel with ``chain`` (which checks the frame itself).  A frame that draws from the table
    is checked here first, as :func:`frame_floor` does (its largest value is that of the pixels
    above the floor: one pass less).  The choice depends only on ``ph``, so the bytes are a
    function of the input and the generator state.

    Raises
    ------
    ValueError
        If ``ph`` holds negative or non-finite values (only when the table would be used).
    """
    if ph.size < _TABLE_MIN_PIXELS:
        return None
    lo = float(ph.min())
    if not (math.isfinite(lo) and lo >= 0.0):
        frame_floor(ph)  # raises, naming the range
    above = np.flatnonzero(ph != ph.dtype.type(lo))
    if above.size > (1.0 - _FLOOR_FRACTION) * ph.size:
        return None
    rest = ph.reshape(-1)[above]
    if rest.size and not math.isfinite(float(rest.max())):
        frame_floor(ph)  # raises: the frame's maximum is the largest pixel above its floor
    sampler = floor_sampler(lo)
    if sampler is None:
        return None
    out = sampler.sample(gen, ph.size).reshape(ph.shape)
    if above.size:
        out.reshape(-1)[above] = chain(gen, rest)
    return out


def record(model: Any, ph: Any, gen: Any, xp: ModuleType, *, tabulate: bool = True) -> Any:
    """Record ``ph`` with ``model``: floor pixels from its table when possible, the rest explicitly.

    ``model`` provides ``floor_sampler(photons)`` and ``draw_chain(gen, ph, xp)``; both routes
    check ``ph`` (finite, >= 0; ValueError) before drawing.
    """
    if xp is np and tabulate:
        out = _with_floor_table(gen, ph, model.floor_sampler, model.draw_chain)
        if out is not None:
            return out
    return model.draw_chain(gen, ph, xp)


def _photo_electrons(gen: np.random.Generator, ph: np.ndarray, qe: float, offset: float = 0.0) -> np.ndarray:
    """``Poisson(qe * ph + offset)`` per pixel (float32 counts, NumPy), split at the frame's floor.

    Raises
    ------
    ValueError
        If ``ph`` holds negative or non-finite values.
    """
    lo = frame_floor(ph)
    lam0 = lo * qe + offset
    if lam0 > _ALIAS_MAX_LAM or ph.size < _FLOOR_SPLIT_MIN_SIZE:
        lam = np.multiply(ph, qe, dtype=np.float64)
        lam += offset
        return poisson(gen, lam).astype(np.float32)
    n = poisson_floor(gen, lam0, ph.shape)
    above = np.flatnonzero(ph != ph.dtype.type(lo))
    if above.size:
        extra = ph.ravel()[above].astype(np.float64)
        extra -= lo
        extra *= qe
        flat = n.reshape(-1)
        flat[above] += gen.poisson(extra).astype(np.float32)
    return n


def counts(gen: Any, ph: Any, qe: float, offset: float, xp: ModuleType) -> Any:
    """Photo-electron counts ``Poisson(qe * ph + offset)`` as float32 (any backend)."""
    if xp is np:
        return _photo_electrons(gen, ph, qe, offset)
    lam = xp.multiply(ph, qe, dtype=xp.float64)  # Poisson works in float64 anyway
    if offset:
        lam += offset
    return poisson(gen, lam).astype(xp.float32)


def quantize(values: Any, max_value: int, dtype: np.dtype, xp: ModuleType) -> Any:
    """Round half to even, clip to ``[0, max_value]`` and cast, in place where possible."""
    xp.rint(values, out=values)
    xp.clip(values, 0, max_value, out=values)
    return values.astype(dtype)


def set_field(obj: object, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass (its validated value, in ``__post_init__``)."""
    object.__setattr__(obj, name, value)


class ADCCamera:
    """What the cameras with an ADC (:class:`~z2t_dask.physics.camera.emccd.EMCCD`,
    :class:`~z2t_dask.physics.camera.scmos.SCMOS`) share: unsigned output of ``bit_depth`` bits
    in ADU, and recording a frame through :func:`record` (floor pixels from the exact table,
    the others drawn explicitly by the subclass's ``draw_chain``).
    """

    bit_depth: int
    units = "ADU"

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (uint8, uint16 or uint32 from ``bit_depth``)."""
        return uint_dtype(self.bit_depth)

    @property
    def max_adu(self) -> int:
        """Largest representable value, ``2**bit_depth - 1`` ADU."""
        return 2**self.bit_depth - 1

    def _tabulate(self, ph: Any) -> bool:
        """Whether the frame's floor pixels may come from the exact table (checks ``ph`` first)."""
        return True

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Record one frame.

        Parameters
        ----------
        photons : array, shape (Y, X)
            Expected photons per pixel including background (float32).
        rng : numpy.random.Generator
            Generator dedicated to this frame.
        xp : module
            Array namespace (numpy or cupy).

        Returns
        -------
        array, shape (Y, X), ``self.dtype``
            Recorded frame in ADU.
        """
        ph = as_photons(photons, xp)
        return record(self, ph, frame_generator(rng, xp), xp, tabulate=self._tabulate(ph))
