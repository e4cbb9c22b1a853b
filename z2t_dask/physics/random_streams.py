"""The deterministic random streams of a sample (no global random state, ever).

Every draw of a sample comes from ``numpy.random.SeedSequence(seed, spawn_key=(purpose, ...))``:
the stream of ``(seed, purpose, *keys)`` is independent of every other key and O(1) to create,
so frame ``t``'s noise or time segment ``k``'s emitters are the same whatever the chunking, the
worker count or the scheduler.

Speed: :func:`stream` is called for every frame and noise block, and NumPy's ``SeedSequence``
costs ~20 us of Python per stream. The same hash (NumPy's ``SeedSequence`` mixing and
``generate_state``, written out on Python ints) is computed here, the part that depends only on
``(seed, purpose)`` once per process; ``PCG64`` is seeded from those words exactly as from the
``SeedSequence`` (same state, same draws; tests/test_speed_physics.py checks it), and the
generator's ``seed_seq`` stands for the real ``SeedSequence``, built only if asked for.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.random.bit_generator import ISpawnableSeedSequence

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
    """The random stream of ``(seed, purpose, *keys)``: independent, O(1) to create, never global.

    Exactly ``numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(purpose, *keys)))``
    (same generator state, same draws), created without NumPy's Python-level ``SeedSequence``.
    """
    seed, purpose, spawn = int(seed), int(purpose), tuple(map(int, keys))
    words = _state_words(seed, purpose, spawn) if seed >= 0 and purpose >= 0 else None
    if words is None:  # negative values (NumPy's error) or an unusually long key: the plain definition
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose, *spawn)))
    return np.random.Generator(np.random.PCG64(_StreamSeed(seed, (purpose, *spawn), words)))


# NumPy's SeedSequence (numpy/random/bit_generator.pyx), pool size 4, on Python ints.
_MASK32 = 0xFFFFFFFF
_MIX_L = 0xCA01F9DD
_MIX_R = 0x4973F715
_MAX_EXTRA_WORDS = 64


def _hash_constants(init: int, mult: int, n: int) -> tuple[int, ...]:
    out = [init]
    for _ in range(n):
        out.append((out[-1] * mult) & _MASK32)
    return tuple(out)


#: The successive hash constants of ``mix_entropy`` (INIT_A, MULT_A) and ``generate_state`` (INIT_B, MULT_B).
_HASH_A = _hash_constants(0x43B0D7E5, 0x931E8875, 16 + 4 * _MAX_EXTRA_WORDS + 1)
_HASH_B = _hash_constants(0x8B51F9DD, 0x58F38DED, 9)
_PACK_8_UINT32 = struct.Struct("<8I").pack


def _uint32_words(n: int) -> list[int]:
    """NumPy's ``_int_to_uint32_array`` of ``n >= 0``: little-endian 32-bit words, ``[0]`` for 0."""
    if n == 0:
        return [0]
    out = []
    while n > 0:
        out.append(n & _MASK32)
        n >>= 32
    return out


@lru_cache(maxsize=8192)
def _hashed(word: int, call: int) -> tuple[int, int, int, int]:
    """``MIX_R * hashmix(word)`` for the 4 pool words, the first at hashmix call ``call`` (the frame and block
    numbers of a batch's streams recur at the same calls from sample to sample)."""
    a = _HASH_A
    out = []
    for i in range(call, call + 4):
        h = ((word ^ a[i]) * a[i + 1]) & _MASK32
        out.append(_MIX_R * (h ^ (h >> 16)))
    return out[0], out[1], out[2], out[3]


def _mix_words(pool: tuple[int, int, int, int], words: list[int], call: int) -> tuple[tuple[int, int, int, int], int]:
    """Mix entropy ``words`` into the 4-word pool (``mix_entropy``'s last loop); ``call`` counts hashmix calls."""
    p0, p1, p2, p3 = pool
    for w in words:
        r0, r1, r2, r3 = _hashed(w, call)
        p0 = (_MIX_L * p0 - r0) & _MASK32
        p0 ^= p0 >> 16
        p1 = (_MIX_L * p1 - r1) & _MASK32
        p1 ^= p1 >> 16
        p2 = (_MIX_L * p2 - r2) & _MASK32
        p2 ^= p2 >> 16
        p3 = (_MIX_L * p3 - r3) & _MASK32
        p3 ^= p3 >> 16
        call += 4
    return (p0, p1, p2, p3), call


@lru_cache(maxsize=256)
def _seed_pool(seed: int, purpose: int) -> tuple[tuple[int, int, int, int], int]:
    """The pool after mixing the seed's words (zero-padded to 4) and the purpose's, and the hashmix count."""
    run = _uint32_words(seed)
    entropy = run + [0] * (4 - len(run)) + _uint32_words(purpose)
    if len(entropy) > 4 + _MAX_EXTRA_WORDS // 2:  # so long a seed: _state_words falls back to NumPy
        return (0, 0, 0, 0), len(_HASH_A)
    a = _HASH_A
    pool = []
    for i in range(4):
        h = ((entropy[i] ^ a[i]) * a[i + 1]) & _MASK32
        pool.append(h ^ (h >> 16))
    call = 4
    for src in range(4):
        for dst in range(4):
            if src != dst:
                h = ((pool[src] ^ a[call]) * a[call + 1]) & _MASK32
                call += 1
                x = (_MIX_L * pool[dst] - _MIX_R * (h ^ (h >> 16))) & _MASK32
                pool[dst] = x ^ (x >> 16)
    return _mix_words((pool[0], pool[1], pool[2], pool[3]), entropy[4:], call)


def _state_words(seed: int, purpose: int, keys: tuple[int, ...]) -> np.ndarray | None:
    """``SeedSequence(seed, spawn_key=(purpose, *keys)).generate_state(4, np.uint64)``, or None if too long."""
    pool, call = _seed_pool(seed, purpose)
    words: list[int] = []
    for k in keys:
        if 0 <= k <= _MASK32:
            words.append(k)
        elif k > 0:
            words += _uint32_words(k)
        else:
            return None
    if call + 4 * len(words) + 1 >= len(_HASH_A):
        return None
    (p0, p1, p2, p3), _ = _mix_words(pool, words, call)
    b = _HASH_B
    out = []
    for i, v in enumerate((p0, p1, p2, p3, p0, p1, p2, p3)):
        v = ((v ^ b[i]) * b[i + 1]) & _MASK32
        out.append(v ^ (v >> 16))
    return np.frombuffer(bytearray(_PACK_8_UINT32(*out)), "<u8").astype(np.uint64, copy=False)


class _StreamSeed(ISpawnableSeedSequence):
    """The seed sequence of a stream: its ``generate_state(4, uint64)`` precomputed (what PCG64 asks for);
    anything else is answered by the real ``SeedSequence(seed, spawn_key=key)``, built on first use."""

    __slots__ = ("_entropy", "_key", "_real", "_words")

    def __init__(self, entropy: int, key: tuple[int, ...], words: np.ndarray) -> None:
        self._entropy = entropy
        self._key = key
        self._words = words
        self._real: np.random.SeedSequence | None = None

    @property
    def real(self) -> np.random.SeedSequence:
        """The equivalent ``numpy.random.SeedSequence``."""
        if self._real is None:
            self._real = np.random.SeedSequence(self._entropy, spawn_key=self._key)
        return self._real

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        """``SeedSequence.generate_state``: the precomputed words for ``(4, uint64)``."""
        if n_words == 4 and np.dtype(dtype) == np.uint64:
            return self._words.copy()  # PCG64's own seeding from them: the state of the SeedSequence
        return self.real.generate_state(n_words, dtype)

    def spawn(self, n_children: int) -> list[np.random.SeedSequence]:  # type: ignore[override]
        """``SeedSequence.spawn`` of the real sequence."""
        return self.real.spawn(n_children)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real, name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_StreamSeed, (self._entropy, self._key, self._words))
