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

Speed (NumPy path).  Most pixels of a frame sit at its floor ``min(photons)`` (the uniform
background) and share one output distribution: when at least half of them do, and the chain
has read noise (EMCCD; sCMOS with scalar parameters), those pixels are drawn in one step from
the exact pmf of the whole chain at that expectation (:mod:`z2t_dask.physics.camera.pmf`, a 16-bit
lookup per pixel, ~10x faster than the explicit draws), and only the pixels above the floor
(the emitters' patches) go through the explicit chain below.  In the explicit chain the
photo-electron draw splits the expectation at its own floor ``lam0``:
``Poisson(lam) = Poisson(lam0) + Poisson(lam - lam0)`` (independent Poisson variables add;
exact), the floor part from the lookup sampler of the Poisson(lam0) pmf over ``lam0 +- 12 sd``
(tails < 1e-30 dropped), the rest with :meth:`numpy.random.Generator.poisson`.  Gamma and
normal draws are NumPy's (float32, in place).  Both routes draw from the same distribution;
which one a frame takes depends only on its expectations, so the bytes are a deterministic
function of the input and the generator state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from z2t_dask.physics.camera.pmf import emccd_sampler, linear_sampler, poisson_sampler

__all__ = [
    "CAMERA_MODELS",
    "EMCCD",
    "SCMOS",
    "CameraModel",
    "Ideal",
    "OriginalFloat",
]

#: Above this expected count the original tool replaced Poisson by Normal(λ, √λ).
ORIGINAL_NORMAL_THRESHOLD = 1e4


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


def _real(owner: str, name: str, value: Any) -> float:
    """Return ``value`` as a finite float or raise ValueError naming the parameter."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner} {name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{owner} {name} must be finite, got {value!r}")
    return out


def _bit_depth(owner: str, value: Any) -> int:
    """Validate an ADC bit depth (1..32)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 32:
        raise ValueError(f"{owner} bit_depth must be an integer in [1, 32], got {value!r}")
    return int(value)


def _uint_dtype(bit_depth: int) -> np.dtype:
    """Smallest unsigned dtype holding ``bit_depth`` bits."""
    if bit_depth <= 8:
        return np.dtype(np.uint8)
    if bit_depth <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator dedicated to this frame, got {type(rng).__name__}"
        )


def _generator(rng: np.random.Generator, xp: ModuleType) -> Any:
    """Generator to draw from: ``rng`` itself for NumPy, a seeded ``xp`` generator otherwise."""
    _check_rng(rng)
    if xp is np:
        return rng
    seed = int(rng.integers(0, 2**63 - 1))
    return xp.random.default_rng(seed)


def _as_photons(photons: Any, xp: ModuleType) -> Any:
    """Validate the photon frame (at least 2-D, real) and return it as an ``xp`` array."""
    arr = xp.asarray(photons)
    if arr.ndim < 2:
        raise ValueError(f"photons must be a (Y, X) frame, got an array of shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"photons must be real (float32 expected), got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(xp.float32)
    return arr


def _poisson(gen: Any, lam: Any) -> Any:
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


def _poisson_floor(gen: np.random.Generator, lam: float, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` i.i.d. Poisson(``lam``) counts (float32) from the exact lookup sampler."""
    if lam == 0.0:
        return np.zeros(shape, np.float32)
    return poisson_sampler(float(lam)).sample(gen, math.prod(shape)).reshape(shape)


def _floor(ph: np.ndarray) -> float:
    """The frame's smallest expectation (its background), after checking all are finite and >= 0."""
    lo, hi = float(ph.min()), float(ph.max())
    if not (math.isfinite(lo) and math.isfinite(hi) and lo >= 0.0):
        raise ValueError(
            f"photons must be finite and >= 0 (expected photons per pixel); got values in [{lo}, {hi}]"
        )
    return lo


def _with_floor_table(gen: np.random.Generator, ph: np.ndarray, lo: float, floor_sampler: Any, chain: Any) -> Any:
    """Record a frame whose floor pixels draw from a table of the whole chain, the rest via ``chain``.

    ``floor_sampler(lo)`` gives the table (built once per value and process, or None). Returns
    None (nothing drawn) for frames below ``_TABLE_MIN_PIXELS`` pixels, when fewer than half the
    pixels sit at the floor ``lo`` (then no table is built: frames without a common background
    do not pay for one) or when there is no table; the caller then records every pixel with
    ``chain``.  The choice depends only on ``ph``, so the bytes are a function of the input and
    the generator state.
    """
    if ph.size < _TABLE_MIN_PIXELS:
        return None
    above = np.flatnonzero(ph != ph.dtype.type(lo))
    if above.size > (1.0 - _FLOOR_FRACTION) * ph.size:
        return None
    sampler = floor_sampler(lo)
    if sampler is None:
        return None
    out = sampler.sample(gen, ph.size).reshape(ph.shape)
    if above.size:
        out.reshape(-1)[above] = chain(gen, ph.reshape(-1)[above])
    return out


def _record(model: Any, ph: Any, gen: Any, xp: ModuleType, *, tabulate: bool = True) -> Any:
    """Record ``ph`` with ``model``: floor pixels from its table when possible, the rest explicitly.

    ``model`` provides ``floor_sampler(photons)`` and ``_chain(gen, ph, xp)``.
    """
    if xp is np and tabulate:
        out = _with_floor_table(gen, ph, _floor(ph), model.floor_sampler, model._chain)
        if out is not None:
            return out
    return model._chain(gen, ph, xp)


def _photo_electrons(gen: np.random.Generator, ph: np.ndarray, qe: float, offset: float = 0.0) -> np.ndarray:
    """``Poisson(qe * ph + offset)`` per pixel (float32 counts, NumPy), split at the frame's floor.

    Raises
    ------
    ValueError
        If ``ph`` holds negative or non-finite values.
    """
    lo = _floor(ph)
    lam0 = lo * qe + offset
    if lam0 > _ALIAS_MAX_LAM or ph.size < _FLOOR_SPLIT_MIN_SIZE:
        lam = np.multiply(ph, qe, dtype=np.float64)
        lam += offset
        return _poisson(gen, lam).astype(np.float32)
    n = _poisson_floor(gen, lam0, ph.shape)
    above = np.flatnonzero(ph != ph.dtype.type(lo))
    if above.size:
        extra = ph.ravel()[above].astype(np.float64)
        extra -= lo
        extra *= qe
        flat = n.reshape(-1)
        flat[above] += gen.poisson(extra).astype(np.float32)
    return n


def _counts(gen: Any, ph: Any, qe: float, offset: float, xp: ModuleType) -> Any:
    """Photo-electron counts ``Poisson(qe * ph + offset)`` as float32 (any backend)."""
    if xp is np:
        return _photo_electrons(gen, ph, qe, offset)
    lam = xp.multiply(ph, qe, dtype=xp.float64)  # Poisson works in float64 anyway
    if offset:
        lam += offset
    return _poisson(gen, lam).astype(xp.float32)


def _quantize(values: Any, max_value: int, dtype: np.dtype, xp: ModuleType) -> Any:
    """Round half to even, clip to ``[0, max_value]`` and cast, in place where possible."""
    xp.rint(values, out=values)
    xp.clip(values, 0, max_value, out=values)
    return values.astype(dtype)


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- EMCCD


@dataclass(frozen=True)
class EMCCD:
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

    units = "ADU"

    def __post_init__(self) -> None:
        owner = "EMCCD"
        qe = _real(owner, "qe", self.qe)
        if not 0.0 < qe <= 1.0:
            raise ValueError(f"EMCCD qe must be in (0, 1], got {self.qe!r}")
        em_gain = _real(owner, "em_gain", self.em_gain)
        if em_gain < 1.0:
            raise ValueError(f"EMCCD em_gain must be >= 1 (1 = no EM register), got {self.em_gain!r}")
        spurious = _real(owner, "spurious_charge", self.spurious_charge)
        if spurious < 0.0:
            raise ValueError(f"EMCCD spurious_charge must be >= 0 e-/pixel/frame, got {self.spurious_charge!r}")
        read_noise = _real(owner, "read_noise_e", self.read_noise_e)
        if read_noise < 0.0:
            raise ValueError(f"EMCCD read_noise_e must be >= 0 e-, got {self.read_noise_e!r}")
        e_per_adu = _real(owner, "e_per_adu", self.e_per_adu)
        if e_per_adu <= 0.0:
            raise ValueError(f"EMCCD e_per_adu must be > 0 e-/ADU, got {self.e_per_adu!r}")
        baseline = _real(owner, "baseline", self.baseline)
        for name, value in (
            ("qe", qe),
            ("em_gain", em_gain),
            ("spurious_charge", spurious),
            ("read_noise_e", read_noise),
            ("e_per_adu", e_per_adu),
            ("baseline", baseline),
            ("bit_depth", _bit_depth(owner, self.bit_depth)),
        ):
            _set(self, name, value)

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (uint8, uint16 or uint32 from ``bit_depth``)."""
        return _uint_dtype(self.bit_depth)

    @property
    def max_adu(self) -> int:
        """Largest representable value, ``2**bit_depth - 1`` ADU."""
        return 2**self.bit_depth - 1

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
        ph = _as_photons(photons, xp)
        return _record(self, ph, _generator(rng, xp), xp)

    def floor_sampler(self, photons: float) -> Any:
        """Exact sampler of the whole chain at ``photons`` expected photons per pixel, or None.

        A :class:`z2t_dask.physics.camera.pmf.DiscreteSampler` over ADU built (once per process and
        value) from :func:`~z2t_dask.physics.camera.pmf.emccd_adu_pmf` (or the linear chain without EM
        gain); None when the chain is not tabulated (no read noise, nothing to draw, or a table
        too large). Pixels at a frame's floor (the background) draw from it.
        """
        lam = float(photons) * self.qe + self.spurious_charge
        if self.em_gain > 1.0:
            return emccd_sampler(lam, self.em_gain, self.read_noise_e, self.e_per_adu, self.baseline, self.max_adu,
                                 self.dtype.name)
        return linear_sampler(lam, 1.0 / self.e_per_adu, self.read_noise_e / self.e_per_adu, self.baseline,
                              self.max_adu, self.dtype.name)

    def _chain(self, gen: Any, ph: Any, xp: ModuleType = np) -> Any:
        """The explicit draws, pixel by pixel: Poisson, Gamma, normal, rounding (any shape)."""
        electrons = _counts(gen, ph, self.qe, self.spurious_charge, xp)
        if self.em_gain > 1.0:
            # Gamma(0) is exactly 0 in NumPy; other backends are masked explicitly.
            if xp is np:
                gen.standard_gamma(electrons, dtype=np.float32, out=electrons)
            else:
                electrons = xp.where(
                    electrons > 0, gen.standard_gamma(electrons, dtype=xp.float32), 0
                ).astype(xp.float32)
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
        return _quantize(adu, self.max_adu, self.dtype, xp)


# --------------------------------------------------------------------------- sCMOS


def _scmos_map(name: str, value: Any, *, positive: bool) -> float | np.ndarray:
    """Validate an sCMOS parameter: a scalar or a finite 2-D (Y, X) map (read-only float32)."""
    if np.ndim(value) == 0:
        out = _real("SCMOS", name, value)
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
class SCMOS:
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

    units = "ADU"

    def __post_init__(self) -> None:
        qe = _real("SCMOS", "qe", self.qe)
        if not 0.0 < qe <= 1.0:
            raise ValueError(f"SCMOS qe must be in (0, 1], got {self.qe!r}")
        _set(self, "qe", qe)
        _set(self, "bit_depth", _bit_depth("SCMOS", self.bit_depth))
        shapes = {}
        for name, positive in (("offset", False), ("variance", False), ("gain", True)):
            value = _scmos_map(name, getattr(self, name), positive=positive)
            _set(self, name, value)
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
        _set(self, "_sigma", sigma)

    def __eq__(self, other: object) -> bool:
        if type(other) is not SCMOS:
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.init
        )

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (uint16 for the default 16 bits)."""
        return _uint_dtype(self.bit_depth)

    @property
    def max_adu(self) -> int:
        """Largest representable value, ``2**bit_depth - 1`` ADU."""
        return 2**self.bit_depth - 1

    @property
    def map_shape(self) -> tuple[int, int] | None:
        """(Y, X) shape of the per-pixel maps, or None when all parameters are scalars."""
        for name in ("offset", "variance", "gain"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                return value.shape  # type: ignore[return-value]
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
                f"SCMOS.crop window rows {y0}:{y0 + height}, columns {x0}:{x0 + width} "
                f"exceeds the map shape {shape}"
            )
        window = (slice(y0, y0 + height), slice(x0, x0 + width))

        def cut(value: float | np.ndarray) -> float | np.ndarray:
            return value[window] if isinstance(value, np.ndarray) else value

        return dataclasses.replace(
            self, offset=cut(self.offset), variance=cut(self.variance), gain=cut(self.gain)
        )

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
        ph = _as_photons(photons, xp)
        shape = self.map_shape
        if shape is not None and tuple(ph.shape[-2:]) != shape:
            raise ValueError(
                f"SCMOS maps have shape {shape} but the frame has shape {tuple(ph.shape[-2:])}; "
                "crop the maps to the simulated window with SCMOS.crop(y0, x0, height, width)"
            )
        return _record(self, ph, _generator(rng, xp), xp, tabulate=shape is None)

    def floor_sampler(self, photons: float) -> Any:
        """Exact sampler of the whole chain at ``photons`` expected photons per pixel, or None.

        Only for scalar parameters (per-pixel maps make every pixel's distribution different)
        and read noise > 0; see :func:`z2t_dask.physics.camera.pmf.linear_adu_pmf`.
        """
        if self.map_shape is not None:
            return None
        return linear_sampler(float(photons) * self.qe, float(self.gain), float(self._sigma), float(self.offset),
                              self.max_adu, self.dtype.name)

    def _chain(self, gen: Any, ph: Any, xp: ModuleType = np) -> Any:
        """The explicit draws, pixel by pixel: Poisson, gain, normal, offset, rounding."""

        def on(value: float | np.ndarray) -> Any:
            return xp.asarray(value) if isinstance(value, np.ndarray) else np.float32(value)

        adu = _counts(gen, ph, self.qe, 0.0, xp)
        adu *= on(self.gain)
        if not (np.ndim(self._sigma) == 0 and self._sigma == 0.0):
            noise = gen.standard_normal(adu.shape, dtype=xp.float32)
            noise *= on(self._sigma)
            adu += noise
            del noise
        adu += on(self.offset)
        return _quantize(adu, self.max_adu, self.dtype, xp)


# --------------------------------------------------------------------------- Ideal


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
        _set(self, "poisson", bool(self.poisson))

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (float32)."""
        return np.dtype(np.float32)

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Record one frame: photons (float32, shape (Y, X)) -> counts or expectations (float32)."""
        ph = _as_photons(photons, xp)
        if not self.poisson:
            _check_rng(rng)
            return ph.astype(xp.float32, copy=True)
        gen = _generator(rng, xp)
        return _counts(gen, ph, 1.0, 0.0, xp)


# --------------------------------------------------------------------------- original


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
        noise = _real("OriginalFloat", "readout_noise", self.readout_noise)
        if noise < 0.0:
            raise ValueError(f"OriginalFloat readout_noise must be >= 0 photons, got {self.readout_noise!r}")
        if not isinstance(self.shot_noise, (bool, np.bool_)):
            raise ValueError(f"OriginalFloat shot_noise must be True or False, got {self.shot_noise!r}")
        _set(self, "readout_noise", noise)
        _set(self, "shot_noise", bool(self.shot_noise))

    @property
    def dtype(self) -> np.dtype:
        """Output dtype (float32)."""
        return np.dtype(np.float32)

    def __call__(self, photons: Any, rng: np.random.Generator, *, xp: ModuleType = np) -> Any:
        """Record one frame: photons incl. background (shape (Y, X)) -> float32 values >= 0."""
        ph = _as_photons(photons, xp)
        gen = _generator(rng, xp)
        if self.shot_noise:
            lam = ph.astype(xp.float64)
            high = lam > ORIGINAL_NORMAL_THRESHOLD
            any_high = bool(high.any())
            if any_high:
                lam_high = lam[high]
                lam[high] = 0.0
            out = _poisson(gen, lam).astype(xp.float32)
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


#: Name -> class, for configuration layers.
CAMERA_MODELS: dict[str, type] = {
    "emccd": EMCCD,
    "scmos": SCMOS,
    "ideal": Ideal,
    "original_float": OriginalFloat,
}
