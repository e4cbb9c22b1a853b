"""Bounded, ordered streaming of a lazy (dask) stack, block by block or frame by frame.

Writers that must see frames in order (TIFF pages, HDF5 appends) consume these iterators:
up to ``prefetch`` blocks are computed ahead in a small thread pool while the caller
writes the current one, so compute and I/O overlap and memory stays bounded by
``prefetch + 1`` blocks. Never hand a dask array to ``tifffile.imwrite`` directly (it
materialises the array or recomputes blocks per page).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["block_bounds", "iter_frame_blocks", "iter_frames"]


def _is_dask(array: Any) -> bool:
    return hasattr(array, "dask") and hasattr(array, "chunks") and hasattr(array, "compute")


def block_bounds(array: Any) -> list[tuple[int, int]]:
    """Frame ranges ``[(t0, t1), ...]`` of the chunks along axis 0.

    Parameters
    ----------
    array : dask.array.Array or numpy.ndarray
        Stack of shape (T, ...); a NumPy array counts as a single block.

    Returns
    -------
    list of (int, int)
        Half-open frame ranges in order; empty chunks are skipped.
    """
    if _is_dask(array):
        sizes = array.chunks[0]
    else:
        sizes = (int(np.shape(array)[0]),)
    bounds, t0 = [], 0
    for size in sizes:
        if size:
            bounds.append((t0, t0 + int(size)))
        t0 += int(size)
    return bounds


def iter_frame_blocks(
    array: Any, prefetch: int = 2, scheduler: str | None = "threads"
) -> Iterator[np.ndarray]:
    """Yield computed blocks ``array[t0:t1]`` in frame order, prefetching ahead.

    Parameters
    ----------
    array : dask.array.Array or numpy.ndarray
        Stack (T, Y, X) (any ndim >= 1), chunked along axis 0; chunks along the other
        axes are allowed (each yielded block spans the full Y and X). A NumPy array is
        yielded as one block.
    prefetch : int
        Number of blocks computed ahead in a thread pool (>= 0). At most ``prefetch + 1``
        blocks are held by this iterator: the one just yielded and those in flight.
        0 computes each block in the calling thread when it is requested.
    scheduler : str or None
        Passed to ``block.compute(scheduler=...)``: ``"threads"`` (default),
        ``"sync"``/``"synchronous"``, ``"processes"``, or None for dask's default, which
        is the active ``distributed`` Client if there is one.

    Yields
    ------
    numpy.ndarray
        Block ``array[t0:t1]`` of shape (t1 - t0, ...), in increasing ``t0``.

    Notes
    -----
    Closing the generator early (``break``, an exception in the consumer) cancels blocks
    not yet started and waits for running ones to finish.
    """
    if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
        raise ValueError(f"prefetch must be an integer >= 0, got {prefetch!r}")
    if not _is_dask(array):
        array = np.asarray(array)
    if array.ndim < 1:
        raise ValueError(f"array must have at least one (frame) axis, got shape {array.shape}")
    if not _is_dask(array):
        return iter([array] if array.shape[0] else [])
    return _iter_dask_blocks(array, int(prefetch), scheduler)


def _iter_dask_blocks(array: Any, prefetch: int, scheduler: str | None) -> Iterator[np.ndarray]:
    """Generator behind :func:`iter_frame_blocks` for dask arrays (arguments validated)."""
    bounds = block_bounds(array)

    def compute(t0: int, t1: int) -> np.ndarray:
        return np.asarray(array[t0:t1].compute(scheduler=scheduler))

    if prefetch == 0:
        for t0, t1 in bounds:
            block = compute(t0, t1)
            yield block
            del block
        return

    pending: deque[Future[np.ndarray]] = deque()
    executor = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="z2t-prefetch")
    try:
        todo = iter(bounds)
        for t0, t1 in todo:
            pending.append(executor.submit(compute, t0, t1))
            if len(pending) == prefetch:
                break
        while pending:
            block = pending.popleft().result()
            for t0, t1 in todo:  # refill: keep `prefetch` in flight while the caller works
                pending.append(executor.submit(compute, t0, t1))
                break
            yield block
            del block
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


def iter_frames(
    array: Any, prefetch: int = 2, scheduler: str | None = "threads"
) -> Iterator[np.ndarray]:
    """Yield single frames (Y, X) in order, from :func:`iter_frame_blocks`.

    Parameters
    ----------
    array, prefetch, scheduler
        As in :func:`iter_frame_blocks`.

    Yields
    ------
    numpy.ndarray
        Frame ``array[t]`` (a view into its computed block).
    """
    return _frames_of(iter_frame_blocks(array, prefetch=prefetch, scheduler=scheduler))


def _frames_of(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Flatten blocks into frames; closing this generator closes ``blocks`` (stops prefetch)."""
    try:
        for block in blocks:
            yield from block
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
