"""Process allocator tuning for long multi-threaded writes (glibc ``malloc``).

Two glibc behaviours make the resident memory of a long write creep up with the number of
frames although nothing is held:

* every thread that allocates gets its own *arena* (up to 8 per core); render threads, Zarr's
  codec threads and a writer thread fragment many of them;
* the *dynamic mmap threshold*: after a large block (e.g. a 20 MiB temporary of the ground
  truth) is freed, glibc serves later allocations up to that size from the heap instead of
  fresh mappings, and frame buffers of several MiB then stay in fragmented heap memory.

Measured on 1200x1200 OME-Zarr writes (``benchmarks/bench_fullchip.py``, 2 cores): 5,000 frames
peaked at 241 MiB with the defaults and 202 MiB (flat from the first tenth of the write) with at
most two arenas and a fixed 4 MiB mmap threshold. :func:`tune_malloc` caps the arenas and fixes the
thresholds, the run-time equivalent of ``MALLOC_ARENA_MAX=<cores, at least 2>
MALLOC_MMAP_THRESHOLD_=<m> MALLOC_TRIM_THRESHOLD_=<t>``. It is process-wide, affects later
allocations only, and does nothing where the C library is not glibc.

Which thresholds: a 4 MiB threshold maps every rendered block afresh (a block of the default
``render.chunk_mb`` is up to 12 MiB) and faults its pages in again. For full-chip frames that is
~1,000 page faults per frame and a quarter of the frame rate (2026-12-01, 2 cores: W2 render + write
60-64 -> 73-74 frames/s with the blocks from the heap; 1,000 OME-Zarr frames 33 -> 42 frames/s at the
same peak memory, 451 vs 446 MiB). Stacks of frames of :data:`LARGE_FRAME_BYTES` or more therefore
get thresholds above the blocks (:data:`LARGE_MMAP_THRESHOLD`, :data:`LARGE_TRIM_THRESHOLD`, glibc's own
ceilings, fixed). Smaller frames keep 4 MiB (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`): there the
heap's freed blocks raised the peak of 2,000 frames of 192x192 float32 by ~20 MiB (378 -> 397 MiB,
``tests/test_memory.py``'s case), and frames that small are not where the throughput targets are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

__all__ = [
    "ARENA_MAX",
    "LARGE_FRAME_BYTES",
    "LARGE_MMAP_THRESHOLD",
    "LARGE_TRIM_THRESHOLD",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "release_free_memory",
    "tune_malloc",
]

#: Largest number of malloc arenas set by :func:`tune_malloc`: one per core, at least two
#: (glibc's default is eight per core; on many-core cluster nodes fewer would make threads
#: wait for each other's allocations).
ARENA_MAX = max(2, os.cpu_count() or 2)
#: Allocations of at least this many bytes get their own mapping (returned to the OS on free).
MMAP_THRESHOLD = 4 * 2**20
#: Free memory at the top of the heap beyond this is returned to the OS. Fixing the mmap
#: threshold also fixes this one at glibc's 128 KiB default, and trimming that eagerly cost
#: ~20 % of the W2 frame rate (the heap shrank and regrew all the time); 4 MiB costs nothing
#: measurable, while 32 MiB let a 5,000-frame write peak 22 MiB higher.
TRIM_THRESHOLD = 4 * 2**20
#: Frames of at least this many bytes (a 1200x1200 uint16 frame: 2.9 MB) get the large thresholds.
LARGE_FRAME_BYTES = 2**20
#: The mmap threshold for large frames: rendered blocks (at most ``render.chunk_mb``, 12 MiB by
#: default) are reused from the heap.
LARGE_MMAP_THRESHOLD = 32 * 2**20
#: The trim threshold for large frames (twice the mmap threshold, glibc's own ratio): a few freed
#: blocks are kept for the next ones.
LARGE_TRIM_THRESHOLD = 64 * 2**20

#: glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _ = libc.gnu_get_libc_version  # glibc only (AttributeError elsewhere)
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(enabled: bool = True, frame_bytes: int = 0) -> bool:
    """Cap glibc's malloc arenas at :data:`ARENA_MAX`; fix its mmap and trim thresholds.

    Parameters
    ----------
    enabled : bool
        False does nothing (``render.tune_malloc: false``).
    frame_bytes : int
        Bytes of one frame of the stack about to be written: :data:`LARGE_FRAME_BYTES` or more sets
        :data:`LARGE_MMAP_THRESHOLD` and :data:`LARGE_TRIM_THRESHOLD`, less (or 0) :data:`MMAP_THRESHOLD`
        and :data:`TRIM_THRESHOLD` (see the module notes).

    Returns
    -------
    bool
        True when the settings were applied (glibc), False otherwise.
    """
    if not enabled:
        return False
    libc = _libc()
    if libc is None:
        return False
    large = frame_bytes >= LARGE_FRAME_BYTES
    ok = [
        libc.mallopt(param, value) == 1
        for param, value in (
            (_M_ARENA_MAX, ARENA_MAX),
            (_M_MMAP_THRESHOLD, LARGE_MMAP_THRESHOLD if large else MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, LARGE_TRIM_THRESHOLD if large else TRIM_THRESHOLD),
        )
    ]
    return all(ok)


def release_free_memory() -> bool:
    """Return the free memory of every malloc arena to the OS (``malloc_trim(0)``; glibc only).

    Cheap enough (milliseconds) to call between large steps: after the ground truth is built,
    between batches of stored blocks. Returns True when memory was released.
    """
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)
