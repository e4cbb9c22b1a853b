"""Frame blocks shared by every stack format: ordered blocks for writers, lazy chunks for readers.

Writers that must see frames in order (TIFF pages, HDF5 rows) take :func:`ordered_blocks`: blocks
of whole frames computed ``prefetch`` ahead (:func:`z2t_dask.engine.streaming.iter_frame_blocks`;
peak memory bounded by a few blocks, never by the number of frames), with a ``gc.collect()`` every
``gc_every`` blocks and free heap memory returned to the OS every :data:`RELEASE_EVERY_BLOCKS`
blocks; or, not streaming, the whole stack computed at once after the memory budget accepted it.

Openers of single-file formats take :func:`lazy_stack`: a dask array whose chunks of whole frames
(about :data:`READ_CHUNK_BYTES`) each open the file themselves, so it computes on a cluster too.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import FormatError

__all__ = [
    "READ_CHUNK_BYTES",
    "RELEASE_EVERY_BLOCKS",
    "collect_every",
    "describe",
    "frame_units",
    "in_memory",
    "lazy_stack",
    "ordered_blocks",
]

#: Blocks written between two returns of free heap memory to the OS (ordered writers).
RELEASE_EVERY_BLOCKS = 256
#: Target bytes of one chunk of a stack opened by :func:`lazy_stack`.
READ_CHUNK_BYTES = 16 * 2**20


def frame_units(dtype: Any) -> str:
    """Units of frames of a dtype: ``"ADU"`` for unsigned integers (a camera), else ``"photons"``."""
    return "ADU" if np.dtype(dtype).kind == "u" else "photons"


def describe(frames: Any) -> str:
    """``"the TxYxX dtype stack"``, the name of a stack in memory-budget messages."""
    return f"the {'x'.join(str(int(s)) for s in frames.shape)} {frames.dtype} stack"


def in_memory(frames: Any, *, scheduler: Any = "threads", memory_budget_bytes: float | None = None) -> np.ndarray:
    """The whole stack computed at once, if about twice it fits the budget (else MemoryBudgetError).

    Parameters
    ----------
    frames : dask.array.Array or numpy.ndarray
        The stack ``(T, Y, X)``.
    scheduler
        Dask scheduler (resolved).
    memory_budget_bytes : float, optional
        Memory allowed (bytes); default the available memory.
    """
    from z2t_dask.engine.streaming import compute_in_memory

    return compute_in_memory(frames, scheduler=scheduler, budget_bytes=memory_budget_bytes, what=describe(frames))


def collect_every(blocks: Iterator[Any], every: int, release: Callable[[], Any] | None = None) -> Iterator[Any]:
    """Pass ``blocks`` through; ``gc.collect()`` every ``every`` blocks (0: never) and ``release()``
    every :data:`RELEASE_EVERY_BLOCKS` blocks (None: never)."""
    for i, block in enumerate(blocks):
        yield block
        if every and (i + 1) % every == 0:
            gc.collect()
        if release is not None and (i + 1) % RELEASE_EVERY_BLOCKS == 0:
            release()


def ordered_blocks(
    frames: Any,
    *,
    scheduler: Any = "threads",
    prefetch: int = 2,
    streaming: bool = True,
    memory_budget_bytes: float | None = None,
    gc_every: int = 0,
    release: Callable[[], Any] | None = None,
    post: Callable[[np.ndarray], Any] | None = None,
) -> Iterator[Any]:
    """Blocks of whole frames in order: streamed (bounded memory) or, not streaming, the whole stack.

    Parameters
    ----------
    frames : dask.array.Array or numpy.ndarray
        The stack ``(T, Y, X)``.
    scheduler
        Dask scheduler (resolved: not ``"auto"``).
    prefetch : int
        Blocks computed ahead.
    streaming : bool
        False: one block, the whole stack (MemoryBudgetError beyond ``memory_budget_bytes``).
    memory_budget_bytes, gc_every, release
        See :func:`in_memory` and :func:`collect_every`.
    post : callable, optional
        Applied to each block where it was computed; its result is yielded instead
        (:func:`~z2t_dask.engine.streaming.iter_frame_blocks`).
    """
    from z2t_dask.engine.streaming import iter_frame_blocks

    if not streaming:
        whole = in_memory(frames, scheduler=scheduler, memory_budget_bytes=memory_budget_bytes)
        return iter([whole if post is None else post(whole)])
    blocks = iter_frame_blocks(frames, prefetch=prefetch, scheduler=scheduler, post=post)
    return collect_every(blocks, gc_every, release)


def lazy_stack(
    path: str | os.PathLike[str], read_frames: Callable[[str, int, int], np.ndarray], shape: tuple[int, ...], dtype: Any
) -> Any:
    """A single-file stack as a lazy dask array ``(T, Y, X)`` of chunks of whole frames.

    Parameters
    ----------
    path : path-like
        The file.
    read_frames : callable
        ``read_frames(path, t0, t1) -> (t1 - t0, Y, X) array``; a module-level function (picklable),
        called by every chunk, which opens the file itself.
    shape : tuple of int
        ``(T, Y, X)``, or ``(Y, X)`` for a single frame.
    dtype : dtype-like
        Pixel type.

    Raises
    ------
    FormatError
        If ``shape`` is not that of a frame stack.
    """
    import dask.array as da
    from dask.base import tokenize

    p = Path(path)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) not in (3, 4):  # (T, Y, X), or (T, C, Y, X) of a multi-channel stack
        raise FormatError(f"{p}: expected a (T, Y, X) or (T, C, Y, X) stack, got shape {tuple(shape)}")
    t, rest = int(shape[0]), tuple(int(v) for v in shape[1:])
    step = max(1, min(t, READ_CHUNK_BYTES // max(1, int(np.prod(rest)) * np.dtype(dtype).itemsize)))
    chunks = (tuple(min(step, t - a) for a in range(0, t, step)), *((v,) for v in rest))
    stat = p.stat()
    token = tokenize(os.path.abspath(p), stat.st_mtime_ns, stat.st_size)
    return da.map_blocks(
        _read_chunk,
        str(p),
        read_frames,
        chunks=chunks,
        dtype=dtype,
        name=f"z2t-read-{p.name}-{token}",
        meta=np.empty((0,) * len(shape), dtype),
    )


def _read_chunk(
    path: str, read_frames: Callable[[str, int, int], np.ndarray], block_info: dict | None = None
) -> np.ndarray:
    """Frames ``[t0, t1)`` of the chunk dask asks for (task function: picklable)."""
    assert block_info is not None
    (t0, t1) = block_info[None]["array-location"][0]
    return read_frames(path, t0, t1)
