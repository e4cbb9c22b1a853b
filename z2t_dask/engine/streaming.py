"""Bounded, ordered streaming of a lazy (dask) stack, block by block or frame by frame.

Writers that must see frames in order (TIFF pages, HDF5 appends) consume these iterators:
up to ``prefetch`` blocks are computed ahead in a small thread pool while the caller
writes the current one, so compute and I/O overlap and memory stays bounded by
``prefetch + 1`` blocks. Never hand a dask array to ``tifffile.imwrite`` directly (it
materialises the array or recomputes blocks per page).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from z2t_dask.errors import MemoryBudgetError

__all__ = [
    "MemoryBudgetError",
    "available_memory_bytes",
    "block_bounds",
    "compute_in_memory",
    "dask_get",
    "iter_frame_blocks",
    "iter_frames",
    "require_memory",
    "resolve_scheduler",
]


def _is_dask(array: Any) -> bool:
    return hasattr(array, "dask") and hasattr(array, "chunks") and hasattr(array, "compute")


def resolve_scheduler(scheduler: Any = "auto") -> Any:
    """The scheduler to compute blocks with.

    Parameters
    ----------
    scheduler : str, callable or None
        ``"auto"``: the active ``distributed`` Client if one is the default scheduler (a
        sample's graph then runs on the cluster's workers), else ``"threads"``. Anything else
        (``"threads"``, ``"sync"``, ``None`` = dask's default, ``client.get``) is returned as is.
    """
    if not (isinstance(scheduler, str) and scheduler == "auto"):
        return scheduler
    import dask

    active = dask.config.get("scheduler", None)
    if active in ("dask.distributed", "distributed"):
        return None
    return "threads"


def dask_get(scheduler: Any) -> Any:
    """``scheduler`` as dask itself would resolve it for a dask array, without importing ``distributed``.

    Dask resolves a scheduler name by first importing ``distributed`` to look for a Client (about
    0.5 s of a fresh process that never uses one: a single sample written from a script or the
    command line). A local scheduler's name (``"threads"``, ``"sync"``, ``"processes"``, ...)
    always means dask's own function for it, Client or not, so it is returned as that function;
    ``None`` (dask's default) means the threaded scheduler when ``distributed`` was never imported
    (no Client can exist) and no ``scheduler`` is configured. Anything else is returned as is.
    """
    try:
        from dask.base import named_schedulers
    except ImportError:  # pragma: no cover - an older or newer dask: its own resolution
        return scheduler
    if isinstance(scheduler, str):
        return named_schedulers.get(scheduler.lower(), scheduler)
    if scheduler is None and "distributed" not in sys.modules:
        import dask

        if dask.config.get("scheduler", None) is None and dask.config.get("get", None) is None:
            return named_schedulers["threads"]
    return scheduler


def available_memory_bytes() -> int:
    """Memory available to new allocations now (psutil, else ``/proc/meminfo`` MemAvailable), bytes."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a test dependency
        pass
    try:  # pragma: no cover
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    import os  # pragma: no cover

    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))  # pragma: no cover


def require_memory(array: Any, *, budget_bytes: float | None = None, what: str = "the stack") -> int:
    """Check that a whole stack can be held in memory; return the bytes it needs.

    Parameters
    ----------
    array : array-like with ``shape`` and ``dtype``
        The stack (nothing is computed).
    budget_bytes : float, optional
        Memory allowed (bytes); default :func:`available_memory_bytes`.
    what : str
        Name of the stack in the error message.

    Raises
    ------
    MemoryBudgetError
        If about twice the stack's size (the result plus the blocks it is assembled from)
        exceeds the budget. The message says how much memory it would need.
    """
    nbytes = int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    need = 2 * nbytes
    budget = available_memory_bytes() if budget_bytes is None else float(budget_bytes)
    source = "render.memory_budget_mb" if budget_bytes is not None else "the available memory"
    if need > budget:
        raise MemoryBudgetError(
            f"not streaming would hold {what} in memory: it needs about {need / 2**20:,.0f} MiB "
            f"(2 x {nbytes / 2**20:,.0f} MiB for shape {tuple(array.shape)} {np.dtype(array.dtype)}) but "
            f"{source} is {budget / 2**20:,.0f} MiB; use streaming (the default; drop --no-streaming)"
        )
    return need


def compute_in_memory(
    array: Any, *, budget_bytes: float | None = None, scheduler: Any = "threads", what: str = "the stack"
) -> np.ndarray:
    """Compute a whole (dask) stack into memory after :func:`require_memory` accepted it.

    Parameters
    ----------
    array : dask.array.Array or numpy.ndarray
        The stack.
    budget_bytes, what
        As in :func:`require_memory` (MemoryBudgetError when it does not fit).
    scheduler
        As in :func:`iter_frame_blocks`.
    """
    require_memory(array, budget_bytes=budget_bytes, what=what)
    if not _is_dask(array):
        return np.asarray(array)
    return np.asarray(array.compute(scheduler=dask_get(scheduler)))


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
    array: Any, prefetch: int = 2, scheduler: str | None = "threads", post: Callable[[np.ndarray], Any] | None = None
) -> Iterator[Any]:
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
    post : callable, optional
        Applied to each computed block in the thread that computed it (a prefetch thread; the
        caller's for ``prefetch=0`` or a NumPy array); its result is yielded instead of the block.
        Work that follows the computation (e.g. a writer's compression) then runs in parallel
        with the other blocks' computation, while the block is still in the cache.

    Yields
    ------
    numpy.ndarray
        Block ``array[t0:t1]`` of shape (t1 - t0, ...), in increasing ``t0`` (or ``post`` of it).

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
        if not array.shape[0]:
            return iter([])
        return iter([array]) if post is None else (post(block) for block in [array])
    return _iter_dask_blocks(array, int(prefetch), scheduler, post)


def _iter_dask_blocks(
    array: Any, prefetch: int, scheduler: str | None, post: Callable[[np.ndarray], Any] | None = None
) -> Iterator[Any]:
    """Generator behind :func:`iter_frame_blocks` for dask arrays (arguments validated)."""
    bounds = block_bounds(array)
    get = dask_get(scheduler)

    def compute(t0: int, t1: int) -> Any:
        block = np.asarray(array[t0:t1].compute(scheduler=get))
        return block if post is None else post(block)

    if prefetch == 0:
        for t0, t1 in bounds:
            block = compute(t0, t1)
            yield block
            del block
        return

    pending: deque[Future[Any]] = deque()
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


def iter_frames(array: Any, prefetch: int = 2, scheduler: str | None = "threads") -> Iterator[np.ndarray]:
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
