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
most two arenas and a fixed 4 MiB mmap threshold. But a 4 MiB threshold maps every rendered block
(5 frames of 1200x1200 uint16: 14 MiB) afresh and faults its pages in: ~1,000 page faults per frame,
a quarter of the W2 frame rate (2026-12-01: 60-64 -> 73-74 frames/s for render + write with blocks
from the heap; 2,000 OME-Zarr frames 35 -> 45 frames/s for 20 MiB more peak memory, 298 -> 318 MiB;
the defaults: 358 MiB). So :func:`tune_malloc` caps the arenas and fixes the thresholds above the
blocks (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`), the run-time equivalent of
``MALLOC_ARENA_MAX=<cores, at least 2> MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864``
(the largest values glibc's dynamic thresholds reach; fixed, they no longer follow the largest block
freed). It is process-wide, affects later allocations only, and does nothing where the C library is
not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "release_free_memory", "tune_malloc"]

#: Largest number of malloc arenas set by :func:`tune_malloc`: one per core, at least two
#: (glibc's default is eight per core; on many-core cluster nodes fewer would make threads
#: wait for each other's allocations).
ARENA_MAX = max(2, os.cpu_count() or 2)
#: Allocations of at least this many bytes get their own mapping (returned to the OS on free);
#: smaller ones, e.g. rendered blocks of the default ``render.chunk_mb``, are reused from the heap.
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap beyond this is returned to the OS. Fixing the mmap
#: threshold also fixes this one at glibc's 128 KiB default, and trimming that eagerly cost
#: ~20 % of the W2 frame rate (the heap shrank and regrew all the time); twice the mmap
#: threshold (glibc's own ratio) keeps a few freed blocks for the next ones.
TRIM_THRESHOLD = 64 * 2**20

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


def tune_malloc(enabled: bool = True) -> bool:
    """Cap glibc's malloc arenas at :data:`ARENA_MAX`; fix its mmap and trim thresholds.

    Parameters
    ----------
    enabled : bool
        False does nothing (``render.tune_malloc: false``).

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
    ok = [
        libc.mallopt(param, value) == 1
        for param, value in (
            (_M_ARENA_MAX, ARENA_MAX),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
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
