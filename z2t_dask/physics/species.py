"""Dye species of a multi-channel sample: drawn per emitter id, with optional photophysics overrides.

Each emitter belongs to one species of ``emitters.species`` (drawn with the species' fractions)
and splits its photons between the channels by a per-emitter Dirichlet ratio
(:class:`SpeciesTable`, see :mod:`z2t_dask.physics.channels`). A species may also override the
kinetics of the emitters section: ``t_on``, ``t_dark``, ``t_bleach`` (blinking model) and
``lifetime_avg`` (single model), all in frames; :func:`species_kinetics` gives each species'
emitters section with its overrides, or None when no species changes any kinetics (then the
photophysics draws are exactly those of a config without species).

Randomness: species and ratios of emitter ``id`` come from the stream
``(PURPOSE_SPECIES, id // SPECIES_BLOCK)`` (a block of :data:`SPECIES_BLOCK` ids is always drawn
whole), so they depend only on the seed, the species and the id: not on the chunking, the time
segments, or which records a block renders.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from z2t_dask.caching import BuildOnceCache
from z2t_dask.config import EmittersConfig, SimulationConfig
from z2t_dask.physics.random_streams import PURPOSE_SPECIES, stream

__all__ = [
    "KINETIC_KEYS",
    "SPECIES_BLOCK",
    "SpeciesTable",
    "dirichlet_concentration",
    "emitter_species",
    "species_kinetics",
    "species_table",
]

#: Kinetics keys a species may override (frames; ``t_*`` for the blinking model, ``lifetime_avg`` for single).
KINETIC_KEYS = ("t_on", "t_dark", "t_bleach", "lifetime_avg")

#: Emitter ids per species stream (part of the random-stream definition: not a setting).
SPECIES_BLOCK = 4096


def dirichlet_concentration(mean: Sequence[float], spread: float) -> float:
    """Concentration κ of a Dirichlet with mean shares ``mean`` whose shares' s.d. have RMS ``spread``.

    ``Var r_i = m_i (1 - m_i) / (κ + 1)``, so ``κ = Σ m_i (1 - m_i) / (C spread²) - 1``; ``inf`` for
    spread 0 (every emitter at the mean). Raises ValueError when ``spread`` is too large (κ <= 0).
    """
    m = np.asarray(mean, np.float64)
    if spread <= 0:
        return math.inf
    kappa = float(np.sum(m * (1 - m)) / (m.size * spread**2) - 1.0)
    if not kappa > 0:
        raise ValueError(f"ratio_spread {spread} is too large for the mean ratio {list(m)}")
    return kappa


class SpeciesTable:
    """Species and photon split ratios of emitters by id (drawn per block of :data:`SPECIES_BLOCK` ids).

    Parameters
    ----------
    seed : int
        The sample seed.
    fractions : sequence of float
        Share of the emitters of each species (sum 1).
    means : sequence of sequence of float
        Mean ratio (C,) of each species.
    spreads : sequence of float
        ``ratio_spread`` of each species (RMS s.d. of a share).
    brightness : sequence of float, optional
        Photon yield of each species relative to the drawn emitters (default 1: unchanged).
    """

    def __init__(
        self,
        seed: int,
        fractions: Sequence[float],
        means: Sequence[Sequence[float]],
        spreads: Sequence[float],
        brightness: Sequence[float] | None = None,
    ):
        self.seed = int(seed)
        self.fractions = tuple(float(f) for f in fractions)
        self.means = tuple(tuple(float(v) for v in m) for m in means)
        self.spreads = tuple(float(s) for s in spreads)
        b = tuple(float(v) for v in (brightness or [1.0] * len(self.means)))
        self.brightness: tuple[float, ...] | None = None if all(v == 1.0 for v in b) else b
        self.n_channels = len(self.means[0])
        self.kappas = tuple(dirichlet_concentration(m, s) for m, s in zip(self.means, self.spreads))
        self._cache: BuildOnceCache[tuple[np.ndarray, np.ndarray]] = BuildOnceCache(16)

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Species (B,) int16 and ratios (B, C) float32 of ids ``[b·B, (b+1)·B)``."""
        return self._cache.get(int(b), lambda: self._draw(int(b)))

    def _draw(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        rng = stream(self.seed, PURPOSE_SPECIES, b)
        n, c = SPECIES_BLOCK, self.n_channels
        edges = np.cumsum(self.fractions)
        species = np.minimum(np.searchsorted(edges / edges[-1], rng.random(n), side="right"), len(edges) - 1)
        ratio = np.empty((n, c), np.float64)
        for s, (m, kappa) in enumerate(zip(self.means, self.kappas)):
            mean = np.asarray(m)
            sel = species == s
            if not math.isfinite(kappa):
                ratio[sel] = mean
                continue
            nz = mean > 0
            g = np.zeros((n, c))
            g[:, nz] = rng.standard_gamma(kappa * mean[nz], size=(n, int(nz.sum())))  # drawn for every id
            total = g.sum(axis=1, keepdims=True)
            r = np.where(total > 0, g / np.where(total > 0, total, 1.0), mean)
            ratio[sel] = r[sel]
        return species.astype(np.int16), ratio.astype(np.float32)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Species (n,) int16 and ratios (n, C) float32 of emitter ``ids``."""
        ids = np.asarray(ids, np.int64)
        species = np.empty(ids.shape, np.int16)
        ratio = np.empty((*ids.shape, self.n_channels), np.float32)
        blocks = ids // SPECIES_BLOCK
        for b in np.unique(blocks):
            sel = blocks == b
            sp, r = self.block(int(b))
            species[sel] = sp[ids[sel] - b * SPECIES_BLOCK]
            ratio[sel] = r[ids[sel] - b * SPECIES_BLOCK]
        return species, ratio

    def token(self) -> str:
        """A deterministic identifier of the draws (for dask keys)."""
        from dask.base import tokenize

        return tokenize(self.seed, self.fractions, self.means, self.spreads, self.brightness)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cache")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = BuildOnceCache(16)


def _override(species: Any, key: str) -> float | None:
    value = species.get(key) if isinstance(species, Mapping) else getattr(species, key, None)
    return None if value is None else float(value)


def species_kinetics(cfg: EmittersConfig) -> tuple[EmittersConfig, ...] | None:
    """Each species' emitters section with its kinetics overrides (frames), in species order.

    None when there are no species or no override differs from the section's value: the
    photophysics is then drawn with the section's scalar rates, exactly as without species.
    """
    out, changed = [], False
    for s in cfg.species or ():
        over: dict[str, Any] = {k: v for k in KINETIC_KEYS if (v := _override(s, k)) is not None}
        changed = changed or any(v != float(getattr(cfg, k)) for k, v in over.items())
        out.append(dataclasses.replace(cfg, **over))
    return tuple(out) if changed else None


def species_table(seed: int, cfg: SimulationConfig) -> SpeciesTable:
    """The :class:`SpeciesTable` of a resolved multi-channel config (its ``emitters.species``) and seed."""
    sp = cfg.emitters.species
    return SpeciesTable(
        seed,
        [s.fraction for s in sp],
        [s.ratio for s in sp],
        [s.ratio_spread for s in sp],
        brightness=[s.brightness for s in sp],
    )


def emitter_species(seed: int, cfg: SimulationConfig, ids: np.ndarray) -> np.ndarray | None:
    """Species index (n,) int16 of emitters ``ids`` where a species overrides the kinetics, else None.

    The same draws as the truth's ``emitters/species`` column (by id: independent of segments
    and chunks).
    """
    if not cfg.channels or species_kinetics(cfg.emitters) is None:
        return None
    return species_table(seed, cfg).lookup(np.asarray(ids, np.int64))[0]
