"""Exact output distributions of camera chains at a constant expectation, and a fast exact sampler.

Most pixels of an SMLM frame see only the (uniform) background: their recorded values are
i.i.d. draws from *one* discrete distribution over ADU, the distribution of the whole camera
chain (Poisson -> EM register -> read noise -> rounding and clipping) at that expectation.
This module computes that probability mass function (pmf) numerically to ~1e-12 and draws from
it with :class:`DiscreteSampler`: one 16-bit lookup per pixel, so the whole chain of a background
pixel costs a few ns instead of a Poisson, a Gamma and a normal draw (~60 ns).

The chains (``n ~ Poisson(lam)`` photo-electrons; ``rint`` rounds to the nearest integer and the
result is clipped to ``[0, max_adu]``):

* :func:`emccd_adu_pmf` -- ``ADU = rint((Gamma(n, gain) + Normal(0, sigma_e)) / e_per_adu + baseline)``
  with ``Gamma(0, gain) = 0`` exactly (the EMCCD of :class:`z2t_dask.physics.camera.EMCCD`);
* :func:`linear_adu_pmf` -- ``ADU = rint(a·n + Normal(0, sd_adu) + offset)`` (an sCMOS pixel,
  or an EMCCD with its EM register off);
* :func:`poisson_pmf` -- ``Poisson(lam)`` itself (the photo-electron counts).

How the pmf is computed.  ``P(ADU <= k) = F(t_k)`` with ``F`` the distribution function of the
analogue value before rounding and ``t_k`` the upper edge of bin ``k``.  For the EMCCD,
``F(t) = e^-lam Phi(t / sigma) + integral_0^inf h(y) Phi((t - y) / sigma) dy`` where ``h`` is the
density of the EM register's output for ``n >= 1`` (a Poisson mixture of Gamma densities,
analytic on ``[0, inf)``): the atom at 0 is exact, the integral uses Boole's rule (error
O(h^6)) on a grid of ``h = min(sigma, gain) / 32`` electrons (error of any cumulative probability
< 1e-12, checked against a finer grid and adaptive quadrature in the tests).  The linear chain is
a finite sum of normal distribution functions.  Poisson terms are kept over ``lam +- 12 sd``
(neglected mass < 1e-30), normal tails to 12 sd, and the EM output up to where its tail
probability drops below 1e-17 (the rest joins the last bin).
The first and last bins carry the clipped tails.

Chains without read noise have ties at half-integers (rounding half to even then matters) and
are not tabulated: the camera models use their explicit draw for them.  Tables larger than
:data:`MAX_TABLE_WORK` grid evaluations are not built either (very high backgrounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z2t_dask.caching import built_once

__all__ = [
    "DiscreteSampler",
    "MAX_TABLE_WORK",
    "emccd_adu_pmf",
    "linear_adu_pmf",
    "poisson_pmf",
    "emccd_sampler",
    "linear_sampler",
    "poisson_sampler",
]

#: Largest (bins x grid points) product of a table worth building (a few tenths of a second).
MAX_TABLE_WORK = 4e7
#: Elements of one block of the (bins x grid) evaluations (bounds the temporaries to ~2 MB each).
_BLOCK_ELEMENTS = 250_000
#: Bits of the lookup index: 65,536 equal cells of the unit interval.
_LOOKUP_BITS = 16
#: Width of the Poisson and normal ranges kept, in standard deviations.
_TAIL_SD = 12.0
#: EM-register output beyond the probability of this tail goes to the last bin (below the
#: resolution of a float64 cumulative probability; its exponential tail is long at low ``lam``).
_TAIL_P = 1e-17


@dataclass(frozen=True, eq=False)
class DiscreteSampler:
    """Exact inverse-CDF sampler of a discrete distribution with a 16-bit lookup table.

    A uniform ``u`` in [0, 1) selects ``values[j]`` with ``cdf[j-1] <= u < cdf[j]``.  The top 16
    bits of ``u`` fall in one of 65,536 cells; a cell that lies inside one value's interval gives
    that value at once (one table lookup), and only the few cells that straddle a boundary (at
    most one per value) draw the remaining bits of ``u`` and search the CDF.  The result is the
    exact inverse-CDF draw; no value is approximated.

    Parameters
    ----------
    values : numpy.ndarray, shape (K,)
        The support, any dtype (the output dtype).
    cdf : numpy.ndarray, shape (K,)
        Cumulative probabilities (float64, non-decreasing, last entry 1).

    Notes
    -----
    Random bits come from ``rng.bit_generator.random_raw`` (the 16-bit cells: four per 64-bit
    word) and ``rng.random`` (the remaining bits of straddling cells), so the draws are a
    deterministic function of the generator's state.
    """

    values: np.ndarray
    cdf: np.ndarray
    _lookup: np.ndarray = field(init=False, repr=False)  # value of each 16-bit cell
    _straddles: np.ndarray = field(init=False, repr=False)  # cells that straddle a CDF step
    #: the lookup with a value outside the support at straddling cells (one gather finds both), or None
    _marked: np.ndarray | None = field(init=False, repr=False)
    _mark: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        cdf = np.asarray(self.cdf, np.float64).copy()
        if values.ndim != 1 or cdf.shape != values.shape or values.size == 0:
            raise ValueError(f"values and cdf must be 1-D of the same non-zero length, got {values.shape}, {cdf.shape}")
        if not np.all(np.diff(cdf) >= 0) or cdf[0] < 0 or not abs(cdf[-1] - 1.0) < 1e-9:
            raise ValueError("cdf must be non-decreasing from >= 0 to 1")
        cdf[-1] = 1.0  # every u < 1 finds a value
        cells = np.arange(2**_LOOKUP_BITS + 1, dtype=np.float64) / 2**_LOOKUP_BITS
        first = np.minimum(np.searchsorted(cdf, cells[:-1], side="right"), values.size - 1)
        last = np.minimum(np.searchsorted(cdf, cells[1:], side="left"), values.size - 1)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "cdf", cdf)
        object.__setattr__(self, "_lookup", values[first])
        object.__setattr__(self, "_straddles", first != last)
        mark = _outside_value(values)
        marked = None
        if mark is not None:
            marked = self._lookup.copy()
            marked[self._straddles] = mark
        object.__setattr__(self, "_marked", marked)
        object.__setattr__(self, "_mark", mark)

    @classmethod
    def from_pmf(cls, values: np.ndarray, pmf: np.ndarray) -> DiscreteSampler:
        """Sampler of ``P(values[j]) = pmf[j]`` (``pmf`` >= 0, summing to 1 within 1e-9)."""
        pmf = np.asarray(pmf, np.float64)
        if np.any(pmf < 0) or not abs(pmf.sum() - 1.0) < 1e-9:
            raise ValueError(f"pmf must be >= 0 and sum to 1, sums to {pmf.sum()!r}")
        return cls(np.asarray(values), np.cumsum(pmf))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (1-D array of ``values.dtype``)."""
        words = -(-int(size) // 4)
        cells = rng.bit_generator.random_raw(words).view(np.uint16)[:size]
        if self._marked is not None:  # straddling cells give the mark, which no value equals
            out = self._marked.take(cells)
            straddle = np.flatnonzero(out == self._mark)
        else:
            out = self._lookup.take(cells)
            straddle = np.flatnonzero(self._straddles.take(cells))
        if straddle.size:
            u = rng.random(straddle.size)
            u += cells[straddle]
            u *= 2.0**-_LOOKUP_BITS
            j = np.minimum(np.searchsorted(self.cdf, u, side="right"), self.values.size - 1)
            out[straddle] = self.values[j]
        return out


def _outside_value(values: np.ndarray) -> Any:
    """A value of ``values.dtype`` that is not in ``values`` (integer or float supports), or None."""
    dt = values.dtype
    if dt.kind in "ui":
        info = np.iinfo(dt)
        lo, hi = int(values.min()), int(values.max())
        for cand in (info.max, info.min, hi + 1, lo - 1):
            if info.min <= cand <= info.max and not np.any(values == cand):
                return dt.type(cand)
        return None
    if dt.kind == "f" and not np.any(np.isneginf(values)):
        return dt.type(-np.inf)
    return None


# --------------------------------------------------------------------------- pmfs


def _poisson_range(lam: float) -> np.ndarray:
    """Counts ``n`` with non-negligible Poisson(lam) mass: ``lam +- 12 sd`` (float64)."""
    sd = math.sqrt(lam)
    lo = max(0, int(math.floor(lam - _TAIL_SD * sd - 12.0)))
    hi = int(math.ceil(lam + _TAIL_SD * sd + 24.0))
    return np.arange(lo, hi + 1, dtype=np.float64)


def _log_poisson(n: np.ndarray, lam: float) -> np.ndarray:
    from scipy.special import gammaln

    return n * math.log(lam) - lam - gammaln(n + 1.0)


def poisson_pmf(lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf of ``Poisson(lam)`` over ``lam +- 12 sd`` (renormalised; dropped mass < 1e-30).

    Returns
    -------
    (n, pmf) : (numpy.ndarray, numpy.ndarray)
        Counts (float64) and probabilities (float64, summing to 1).
    """
    lam = float(lam)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be finite and > 0, got {lam!r}")
    n = _poisson_range(lam)
    p = np.exp(_log_poisson(n, lam))
    return n, p / p.sum()


def _bins(z_lo: float, z_hi: float, scale: float, offset: float, max_adu: int) -> np.ndarray:
    """ADU values ``k`` whose bins ``rint(z / scale + offset) = k`` meet ``[z_lo, z_hi]``, clipped."""
    k_lo = max(0, int(math.floor(z_lo / scale + offset - 1.0)))
    k_hi = min(int(max_adu), int(math.ceil(z_hi / scale + offset + 1.0)))
    return np.arange(max(0, min(k_lo, max_adu)), max(k_hi, min(k_lo, max_adu)) + 1)


def _pmf_from_cdf(k: np.ndarray, cdf_at_upper_edges: np.ndarray) -> np.ndarray:
    """pmf of the clipped values ``k`` from ``F`` at the upper edges of all bins but the last."""
    f = np.concatenate([[0.0], np.clip(cdf_at_upper_edges, 0.0, 1.0), [1.0]])
    f = np.maximum.accumulate(f)
    return np.diff(f)


def linear_adu_pmf(lam: float, a: float, sd_adu: float, offset: float, max_adu: int) -> tuple[np.ndarray, np.ndarray]:
    """pmf of ``clip(rint(a·Poisson(lam) + Normal(0, sd_adu) + offset), 0, max_adu)``.

    Parameters
    ----------
    lam : float
        Expected photo-electrons, > 0.
    a : float
        Conversion, ADU per electron, > 0.
    sd_adu : float
        Read-noise standard deviation, ADU, > 0.
    offset : float
        Offset added before rounding, ADU.
    max_adu : int
        Largest output value.

    Returns
    -------
    (k, pmf) : (numpy.ndarray of int64, numpy.ndarray of float64)
        Output values and their probabilities (sum 1).
    """
    from scipy.special import ndtr

    n, pn = poisson_pmf(lam)
    z_lo, z_hi = a * n[0] - _TAIL_SD * sd_adu, a * n[-1] + _TAIL_SD * sd_adu
    k = _bins(z_lo, z_hi, 1.0, offset, max_adu)
    edges = k[:-1] + 0.5 - offset
    cdf = np.empty(edges.size)
    step = max(1, int(_BLOCK_ELEMENTS // n.size))
    for i in range(0, edges.size, step):
        cdf[i : i + step] = ndtr((edges[i : i + step, None] - a * n[None, :]) / sd_adu) @ pn
    return k, _pmf_from_cdf(k, cdf)


def _em_output_density(lam: float, gain: float, y: np.ndarray) -> np.ndarray:
    """Density (per electron) of the EM register's output for ``n >= 1`` input electrons, at ``y >= 0``.

    ``h(y) = sum_{n>=1} Poisson(n; lam) Gamma(y; shape n, scale gain)``; it integrates to
    ``1 - exp(-lam)`` (the rest is the atom at 0).
    """
    from scipy.special import gammaln

    n = _poisson_range(lam)
    n = n[n >= 1]
    log_w = _log_poisson(n, lam) - gammaln(n) - n * math.log(gain)
    out = np.zeros(y.size)
    with np.errstate(divide="ignore"):
        log_y = np.log(y)
    step = max(1, int(_BLOCK_ELEMENTS // n.size))
    for i in range(0, y.size, step):
        ly, yy = log_y[i : i + step], y[i : i + step]
        with np.errstate(invalid="ignore"):
            terms = (n[:, None] - 1.0) * ly[None, :]
        terms[:, yy == 0] = np.where(n == 1, 0.0, -np.inf)[:, None]  # y^0 = 1 at y = 0
        terms += log_w[:, None] - yy[None, :] / gain
        out[i : i + step] = np.exp(terms).sum(axis=0)
    return out


def _em_output_upper(lam: float, gain: float) -> float:
    """EM-register output (e⁻) exceeded with probability < :data:`_TAIL_P` (on a grid of ``gain / 4``)."""
    from scipy.special import gammaincc

    n = _poisson_range(lam)
    n = n[n >= 1]
    w = np.exp(_log_poisson(n, lam))
    y = np.arange(1, int(4 * (n[-1] + _TAIL_SD * math.sqrt(n[-1]) + 24.0)) + 1) * (gain / 4.0)
    tail = np.zeros(y.size)
    for i in range(0, y.size, 256):
        tail[i : i + 256] = w @ gammaincc(n[:, None], y[None, i : i + 256] / gain)
    below = np.flatnonzero(tail < _TAIL_P)
    return float(y[below[0]] if below.size else y[-1])


def emccd_adu_pmf(
    lam: float, gain: float, sigma_e: float, e_per_adu: float, baseline: float, max_adu: int, *, refine: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """pmf of one EMCCD pixel: ``clip(rint((Gamma(Poisson(lam), gain) + Normal(0, sigma_e)) / e_per_adu + baseline))``.

    Parameters
    ----------
    lam : float
        Expected photo-electrons (incl. spurious charge), > 0.
    gain : float
        Mean EM gain, > 1 (``Gamma(0, gain) = 0``).
    sigma_e : float
        Read-noise standard deviation, e⁻, > 0.
    e_per_adu : float
        e⁻ per ADU, > 0.
    baseline : float
        Offset added before rounding, ADU.
    max_adu : int
        Largest output value.
    refine : int
        Grid refinement factor (tests: a finer grid must give the same pmf).

    Returns
    -------
    (k, pmf) : (numpy.ndarray of int64, numpy.ndarray of float64)
        Output values and their probabilities (sum 1).
    """
    from scipy.special import ndtr

    y_max = _em_output_upper(lam, gain)
    dy = min(sigma_e, gain) / (32.0 * refine)
    m = -(-int(math.ceil(y_max / dy)) // 4) * 4
    y = np.linspace(0.0, m * dy, m + 1)
    w = np.tile([14.0, 32.0, 12.0, 32.0], m // 4 + 1)[: m + 1]  # composite Boole (5-point Newton-Cotes)
    w[0] = w[-1] = 7.0
    wh = w * (2.0 * dy / 45.0) * _em_output_density(lam, gain, y)
    k = _bins(-_TAIL_SD * sigma_e, y[-1] + _TAIL_SD * sigma_e, e_per_adu, baseline, max_adu)
    edges = (k[:-1] + 0.5 - baseline) * e_per_adu
    atom = math.exp(-lam)
    cdf = np.empty(edges.size)
    step = max(1, int(_BLOCK_ELEMENTS // y.size))
    for i in range(0, edges.size, step):
        e = edges[i : i + step]
        cdf[i : i + step] = atom * ndtr(e / sigma_e) + ndtr((e[:, None] - y[None, :]) / sigma_e) @ wh
    return k, _pmf_from_cdf(k, cdf)


# --------------------------------------------------------------------------- cached samplers


def _work_emccd(lam: float, gain: float, sigma_e: float, e_per_adu: float) -> float:
    y_max = gain * (lam + 8.0 * math.sqrt(lam) + 40.0)  # about _em_output_upper (cheap bound)
    points = y_max / (min(sigma_e, gain) / 32.0)
    bins = (y_max + 2 * _TAIL_SD * sigma_e) / e_per_adu
    return points * (bins + 2 * _TAIL_SD * math.sqrt(lam) + 40)


@built_once(64)
def emccd_sampler(
    lam: float, gain: float, sigma_e: float, e_per_adu: float, baseline: float, max_adu: int, dtype: str
) -> DiscreteSampler | None:
    """Cached :class:`DiscreteSampler` of :func:`emccd_adu_pmf` (values of ``dtype``), or None.

    None when the chain is not tabulated: no read noise, no EM gain (use :func:`linear_sampler`),
    ``lam`` not > 0, or a table above :data:`MAX_TABLE_WORK`.
    """
    if not (lam > 0 and gain > 1 and sigma_e > 0) or _work_emccd(lam, gain, sigma_e, e_per_adu) > MAX_TABLE_WORK:
        return None
    k, pmf = emccd_adu_pmf(lam, gain, sigma_e, e_per_adu, baseline, max_adu)
    return DiscreteSampler.from_pmf(k.astype(dtype), pmf)


@built_once(64)
def linear_sampler(
    lam: float, a: float, sd_adu: float, offset: float, max_adu: int, dtype: str
) -> DiscreteSampler | None:
    """Cached :class:`DiscreteSampler` of :func:`linear_adu_pmf` (values of ``dtype``), or None.

    None without read noise (ties), for ``lam`` not > 0, or above :data:`MAX_TABLE_WORK`.
    """
    if not (lam > 0 and a > 0 and sd_adu > 0):
        return None
    n_count = 2 * _TAIL_SD * math.sqrt(lam) + 40
    bins = a * n_count + 2 * _TAIL_SD * sd_adu
    if n_count * bins > MAX_TABLE_WORK:
        return None
    k, pmf = linear_adu_pmf(lam, a, sd_adu, offset, max_adu)
    return DiscreteSampler.from_pmf(k.astype(dtype), pmf)


@built_once(64)
def poisson_sampler(lam: float) -> DiscreteSampler:
    """Cached :class:`DiscreteSampler` of ``Poisson(lam)`` (float32 counts), ``lam`` > 0."""
    n, pmf = poisson_pmf(lam)
    return DiscreteSampler.from_pmf(n.astype(np.float32), pmf)
