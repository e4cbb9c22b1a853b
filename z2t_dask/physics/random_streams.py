"""The deterministic random streams of a sample (no global random state, ever).

Every draw of a sample comes from ``numpy.random.SeedSequence(seed, spawn_key=(purpose, ...))``:
the stream of ``(seed, purpose, *keys)`` is independent of every other key and O(1) to create,
so frame ``t``'s noise or time segment ``k``'s emitters are the same whatever the chunking, the
worker count or the scheduler.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PURPOSE_CHANNEL_NOISE",
    "PURPOSE_DIPOLE",
    "PURPOSE_EMITTERS",
    "PURPOSE_NOISE",
    "PURPOSE_SPECIES",
    "stream",
]

#: Spawn-key purpose of the emitter (ground-truth) streams: ``(0,)`` for the segment counts and
#: one-segment samples, ``(0, 1, k)`` for time segment ``k`` (see :mod:`z2t_dask.physics.truth`).
PURPOSE_EMITTERS = 0
#: Spawn-key purpose of the camera-noise streams ``(1, frame, block_row, block_col)``.
PURPOSE_NOISE = 1
#: Spawn-key purpose of the dye-species draws (species and photon split ratio per emitter) of a
#: multi-channel sample: ``(13, block)`` for emitter ids ``[block·4096, (block+1)·4096)``
#: (:mod:`z2t_dask.physics.channels`; 13 = the issue that added it, clear of other new purposes).
PURPOSE_SPECIES = 13
#: Spawn-key purpose of the camera noise of channel ``c`` of a multi-channel sample:
#: ``(14, c, frame, block_row, block_col)`` (a single-channel sample keeps ``PURPOSE_NOISE``).
PURPOSE_CHANNEL_NOISE = 14
#: Spawn-key purpose of the fixed-dipole orientations (``emitters.dipole = "fixed"``):
#: ``(12, block)`` for emitter ids ``[block·4096, (block+1)·4096)`` (:func:`z2t_dask.physics.emitters.dipole_angles`;
#: 12 = the issue that added it). Keyed by id, so an emitter's orientation is the same whatever the segmenting.
PURPOSE_DIPOLE = 12


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """The random stream of ``(seed, purpose, *keys)``: independent, O(1) to create, never global."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(purpose), *map(int, keys))))
