"""Detection channels: registration, dye species, photon split ratios and per-channel truth.

A multi-channel sample images each emitter through ``C`` detection channels (a dichroic splits
its emission). Here, in pure NumPy:

* **registration** — channel ``c`` sees an emitter at reference (ROI) position ``(x, y)`` at
  ``A_c @ (x, y, 1)`` in its own pixels (:func:`affine_matrix`, :func:`apply_affine`), with its
  focal plane offset ``z_offset_um`` (z in this channel = ``z - z_offset_um``);
* **dye species and ratios** — each emitter belongs to one species (drawn with the species'
  fractions) and splits its photons between the channels by a per-emitter ratio ``r`` (C,),
  ``r >= 0``, ``sum(r) = 1``, drawn from a **Dirichlet** distribution with mean ``m`` (the
  species' ``ratio``) and concentration ``κ = Σ m_i (1 - m_i) / (C s²) - 1`` where ``s`` is
  ``ratio_spread``, the RMS over channels of the standard deviation of a share (``Var r_i =
  m_i (1 - m_i) / (κ + 1)``). For ``C = 2`` this is exactly a Beta distribution of the first
  share (``Beta(κ m_0, κ m_1)``); one Dirichlet for every ``C`` keeps the ratios in [0, 1] and
  summing to 1 by construction (a clipped normal would not). Draws are ratios of Gamma
  variables (``standard_gamma``), channels with mean share 0 get exactly 0;
* **photons per channel** — ``phot_ch[c] = phot × r_c × efficiency_c`` (float64 products,
  stored float32): the channels' photons divided by their efficiencies sum to the record's
  photons (to float32 rounding).

Randomness: species and ratios of emitter ``id`` come from the stream
``(PURPOSE_SPECIES, id // SPECIES_BLOCK)`` (a block of :data:`SPECIES_BLOCK` ids is always drawn
whole), so they depend only on the seed, the species and the id: not on the chunking, the time
segments, or which records a block renders. Existing streams are untouched.

Units: x, y in camera pixels (x = column, y = row; pixel ``(r, c)`` centred at ``(y=r, x=c)``),
z in µm, photons per frame, angles in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from z2t_dask.caching import BuildOnceCache
from z2t_dask.physics.aberrations import AberrationField
from z2t_dask.physics.emitters import EmitterTable, Records, inside_image
from z2t_dask.physics.species import SPECIES_BLOCK, SpeciesTable, dirichlet_concentration
from z2t_dask.physics.truth import InMemoryTruth, RecordWindow, SegmentedTruth, Truth, TruthPart
from z2t_dask.physics.truth_parts import compact_window, join_windows

__all__ = [
    "SPECIES_BLOCK",
    "ChannelGeometry",
    "ChannelTruth",
    "ChannelView",
    "SpeciesTable",
    "StoredSpecies",
    "affine_matrix",
    "apply_affine",
    "channel_columns",
    "channel_photons",
    "species_photons",
    "dirichlet_concentration",
]


def affine_matrix(
    shift_px: Sequence[float] = (0.0, 0.0),
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    centre_px: Sequence[float] | None = None,
    affine: Sequence[Sequence[float]] | None = None,
    image_shape: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """The (2, 3) affine map from reference (ROI) pixels to a channel's pixels.

    ``affine`` given: that matrix. Otherwise ``x_ch = scale · R(θ) · (x - c) + c + shift`` with
    ``R(θ) = [[cos θ, -sin θ], [sin θ, cos θ]]`` (θ = ``rotation_deg``, from +x towards +y) and
    ``c`` = ``centre_px`` or the image centre ``((W - 1) / 2, (H - 1) / 2)`` of ``image_shape``
    ``(H, W)``. All in px.
    """
    if affine is not None:
        return np.asarray(affine, np.float64).reshape(2, 3)
    h, w = image_shape
    cx, cy = ((w - 1) / 2.0, (h - 1) / 2.0) if centre_px is None else (float(centre_px[0]), float(centre_px[1]))
    th = math.radians(float(rotation_deg))
    lin = float(scale) * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    moved = lin[:, 0] * cx + lin[:, 1] * cy  # element-wise, not a BLAS product: the same bits on any machine
    t = np.array([cx, cy]) - moved + np.asarray(shift_px, np.float64)
    return np.concatenate([lin, t[:, None]], axis=1)


def apply_affine(a: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points ``xy`` (..., 2) px mapped by the (2, 3) matrix ``a``: float64 (..., 2); row-wise (no mixing)."""
    xy = np.asarray(xy, np.float64)
    x, y = xy[..., 0], xy[..., 1]
    return np.stack([a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]], axis=-1)


def channel_photons(phot: np.ndarray, ratio: np.ndarray, efficiency: float) -> np.ndarray:
    """Photons of a channel: ``phot × ratio × efficiency`` in float64, returned float32 (the stored values)."""
    return (np.asarray(phot, np.float64) * np.asarray(ratio, np.float64) * float(efficiency)).astype(np.float32)


def species_photons(phot: np.ndarray, species: np.ndarray, brightness: Sequence[float] | None) -> np.ndarray:
    """Photons with each emitter's species brightness: ``phot × brightness[species]`` (float64 product,
    float32 result); ``phot`` itself when there is no brightness override."""
    if brightness is None:
        return np.asarray(phot)
    factor = np.asarray(brightness, np.float64)[np.asarray(species, np.int64)]
    return (np.asarray(phot, np.float64) * factor).astype(np.float32)


@dataclass(frozen=True)
class ChannelGeometry:
    """What the truth needs of one channel: its registration, focal offset and efficiency.

    Attributes
    ----------
    name : str
    affine : tuple
        The (2, 3) map reference px -> channel px, row by row.
    z_offset_um : float
        The channel's focal plane relative to the reference one (µm, + = deeper).
    efficiency : float
        Detection efficiency of the path (0..1).
    image_shape : (int, int)
        ``(H, W)`` of the channel's image, px.
    """

    name: str
    affine: tuple[tuple[float, float, float], tuple[float, float, float]]
    z_offset_um: float
    efficiency: float
    image_shape: tuple[int, int]

    @property
    def matrix(self) -> np.ndarray:
        """The (2, 3) float64 affine matrix."""
        return np.asarray(self.affine, np.float64)


def channel_columns(
    channels: Sequence[ChannelGeometry],
    species: SpeciesTable | StoredSpecies,
    em_ids: np.ndarray,
    rec_ids: np.ndarray,
    rec_phot: np.ndarray,
    rec_xy: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The per-channel truth columns of emitters ``em_ids`` and records (``rec_ids``, photons, x, y px).

    Returns ``(emitter columns, record columns)``: ``species`` (N,) int16 and ``ratio`` (N, C)
    float32; ``phot_ch`` (M, C) float32 photons (:func:`channel_photons`), ``xy_ch`` (M, C, 2)
    float32 x, y in each channel's pixels and ``inside_ch`` (M, C) bool (inside that channel's image).
    """
    n_ch = len(channels)
    sp, ratio = species.lookup(np.asarray(em_ids, np.int64))
    _, rec_ratio = species.lookup(np.asarray(rec_ids, np.int64))
    m = int(np.shape(rec_ids)[0])
    phot_ch = np.empty((m, n_ch), np.float32)
    xy_ch = np.empty((m, n_ch, 2), np.float64)
    for c, ch in enumerate(channels):
        phot_ch[:, c] = channel_photons(rec_phot, rec_ratio[:, c], ch.efficiency)
        xy_ch[:, c] = apply_affine(ch.matrix, np.asarray(rec_xy)[:, :2])
    inside_ch = np.stack([inside_image(xy_ch[:, c], ch.image_shape) for c, ch in enumerate(channels)], axis=1)
    return (
        {"species": sp, "ratio": ratio},
        {"phot_ch": phot_ch, "xy_ch": xy_ch.astype(np.float32), "inside_ch": inside_ch.reshape(m, n_ch)},
    )


class StoredSpecies:
    """Species and ratios given per emitter (e.g. read from a multi-channel ``emitters.h5``), by id.

    Parameters
    ----------
    species : ndarray (N,) int
        Species index of emitters ``0..N-1``.
    ratio : ndarray (N, C) float
        Photon split ratio of each emitter (rows sum to 1).
    """

    def __init__(self, species: np.ndarray, ratio: np.ndarray):
        self.species = np.asarray(species, np.int16)
        self.ratio = np.asarray(ratio, np.float32)
        self.n_channels = int(self.ratio.shape[1])
        self.brightness: tuple[float, ...] | None = None  # stored photons already carry each species' yield

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Species (n,) int16 and ratios (n, C) float32 of emitter ``ids`` (rows of the given arrays)."""
        ids = np.asarray(ids, np.int64)
        return self.species[ids], self.ratio[ids]

    def token(self) -> str:
        """A deterministic identifier of the arrays (for dask keys)."""
        from dask.base import tokenize

        return tokenize(self.species, self.ratio)


def _augment(part: TruthPart, channels: Sequence[ChannelGeometry], species: SpeciesTable | StoredSpecies) -> TruthPart:
    """``part`` with the per-channel columns of :func:`channel_columns` in ``extra`` (base arrays shared)."""
    e, r = part.emitters, part.records
    b = species.brightness  # a species' photon yield (photophysics override): photons and intensity scaled
    phot, intensity = r.phot, e.intensity
    if b is not None:
        phot = species_photons(r.phot, species.lookup(r.id)[0], b)
        intensity = species_photons(e.intensity, species.lookup(e.id)[0], b).astype(np.float64)
    em_cols, rec_cols = channel_columns(channels, species, e.id, r.id, phot, r.xyz)
    emitters = EmitterTable(
        xyz=e.xyz, intensity=intensity, t0=e.t0, on_time=e.on_time, id=e.id, extra={**e.extra, **em_cols}
    )
    records = Records(
        xyz=r.xyz, phot=phot, frame_ix=r.frame_ix, id=r.id, inside=r.inside, extra={**r.extra, **rec_cols}
    )
    return TruthPart(emitters=emitters, records=records, phase=part.phase, mag=part.mag, id0=part.id0)


class ChannelTruth(Truth):
    """The truth of a multi-channel sample: the reference truth plus per-channel columns.

    ``parts()`` and ``materialize()`` give the base truth's parts with ``emitters.extra``
    ``species`` (N,) int16 (index into the config's species) and ``ratio`` (N, C) float32, and
    ``records.extra`` ``phot_ch`` (M, C) float32 photons, ``xy_ch`` (M, C, 2) float32 x, y in each
    channel's pixels and ``inside_ch`` (M, C) bool (inside that channel's image). ``window`` is
    the reference one; :meth:`channel` gives what channel ``c`` renders.
    """

    def __init__(self, base: Truth, channels: Sequence[ChannelGeometry], species: SpeciesTable | StoredSpecies):
        self.base = base
        self.channels = tuple(channels)
        self.species = species
        self.frames, self.n_emitters, self.n_records, self.n_modes = (
            base.frames,
            base.n_emitters,
            base.n_records,
            base.n_modes,
        )
        self._full: TruthPart | None = None

    def parts(self) -> Iterator[TruthPart]:
        if self._full is not None:
            yield self._full
            return
        for p in self.base.parts():
            yield _augment(p, self.channels, self.species)

    def window(self, t0: int, t1: int) -> RecordWindow:
        return self.base.window(t0, t1)

    def materialize(self) -> TruthPart:
        if self._full is None:
            self._full = _augment(self.base.materialize(), self.channels, self.species)
        return self._full

    def token(self) -> str:
        from dask.base import tokenize

        return tokenize(self.base.token(), self.channels, self.species.token())

    def channel(self, c: int, field: AberrationField) -> ChannelView:
        """What channel ``c`` renders, with its aberration ``field`` (over the channel's pixels)."""
        return ChannelView(self.base, c, self.channels[c], self.species, field)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_full"] = None
        return state


class ChannelView(Truth):
    """The records of one channel as its frame blocks render them.

    ``window(t0, t1)`` is the base window with each emitter at its channel position (x, y
    through the channel's affine map, z minus ``z_offset_um``), its Zernike coefficients from
    the channel's own aberration field at that position, and each record's photons
    :func:`channel_photons` (the values of ``records/phot_ch``). Each emitter row depends only on
    its own values, so the bytes do not depend on the chunking.
    """

    def __init__(
        self,
        base: Truth,
        index: int,
        geometry: ChannelGeometry,
        species: SpeciesTable | StoredSpecies,
        field: AberrationField,
    ):
        self.base = base
        self.index = int(index)
        self.geometry = geometry
        self.species = species
        self.field = field
        self._init_cache()
        self.frames, self.n_emitters, self.n_records, self.n_modes = (
            base.frames,
            base.n_emitters,
            base.n_records,
            base.n_modes,
        )

    def _parts_hit(self, t0: int, t1: int) -> list[TruthPart] | None:
        """The base truth's parts whose records reach frames ``[t0, t1)``; None for another kind of truth."""
        b = self.base
        if isinstance(b, SegmentedTruth):
            return [b.segment(s.index) for s in b.segments if s.first_frame < t1 and s.last_frame >= t0]
        if isinstance(b, InMemoryTruth):
            return [b.part]
        return None

    def _emitters(self, part: TruthPart) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(xyz, phase, mag)`` of every emitter of ``part`` in this channel (one field evaluation per part,
        kept in a small per-process cache: a Zmap interpolation costs per call, not per emitter)."""
        key = (int(part.id0), len(part.emitters))
        return self._cache.get(key, lambda: self._compute(np.asarray(part.emitters.xyz, np.float64)))

    def _compute(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        xy = apply_affine(self.geometry.matrix, xyz[:, :2])
        phase, mag = self.field(xy)
        return (
            np.column_stack([xy, xyz[:, 2] - self.geometry.z_offset_um]),
            np.ascontiguousarray(phase, np.float32),
            None if mag is None else np.ascontiguousarray(mag, np.float32),
        )

    def _channel_window(self, w: RecordWindow, xyz: np.ndarray, phase: np.ndarray, mag: Any) -> RecordWindow:
        sp, ratio = self.species.lookup(w.ids)
        phot = species_photons(w.phot, sp, self.species.brightness)  # as the truth's records/phot
        dipole = getattr(w, "em_dipole", None)  # fixed dipoles: the same orientation in every channel
        extra = {} if dipole is None else {"em_dipole": dipole}
        return RecordWindow(
            frame_ix=w.frame_ix,
            ids=w.ids,
            em=w.em,
            phot=channel_photons(phot, ratio[:, self.index], self.geometry.efficiency),
            em_xyz=xyz,
            em_phase=phase,
            em_mag=mag,
            **extra,
        )

    def window(self, t0: int, t1: int) -> RecordWindow:
        parts = self._parts_hit(t0, t1)
        if parts is None:  # any other truth: its window's emitters, evaluated here
            w = compact_window(self.base.window(t0, t1))  # its aberrations are replaced by the channel's
            return self._channel_window(w, *self._compute(np.asarray(w.em_xyz, np.float64)))
        if not parts:
            return self.base.window(t0, t1)  # no records: an empty window
        wins = [self._channel_window(p.window(t0, t1, self.frames), *self._emitters(p)) for p in parts]
        return wins[0] if len(wins) == 1 else join_windows(wins)

    def _init_cache(self) -> None:
        self._cache: BuildOnceCache[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = BuildOnceCache(4)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_cache()

    def parts(self) -> Iterator[TruthPart]:
        return self.base.parts()

    def materialize(self) -> TruthPart:
        return self.base.materialize()

    def token(self) -> str:
        from dask.base import tokenize

        f = self.field
        return tokenize(
            self.base.token(),
            self.index,
            self.geometry,
            self.species.token(),
            f.describe(),
            f.offset_xy,
            f.scale,
            f.fixed,
            f.method,
        )
