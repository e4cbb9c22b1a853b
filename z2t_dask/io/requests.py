"""What a stack format's functions receive and return: :class:`WriteRequest` and :class:`StackInfo`.

A :class:`~z2t_dask.io.registry.StackFormat` entry's ``store`` function receives one validated
:class:`WriteRequest` (frames, path, compression, pixel size in nm, provenance, units, scheduler
and streaming options); its ``info`` function returns a :class:`StackInfo` (shape, dtype, pixel
size, units, provenance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StackInfo", "WriteRequest", "pixel_size_pair"]


@dataclass(frozen=True)
class StackInfo:
    """What a stack on disk declares about itself (nothing of the pixels is read).

    Attributes
    ----------
    format : str
        Registry name of the format.
    shape : tuple of int
        ``(T, Y, X)``.
    dtype : numpy.dtype
        Pixel type.
    pixel_size_nm : (float, float) or None
        Camera pixel size ``(x, y)`` in nm, None when the file does not declare one.
    units : str or None
        ``"ADU"`` (camera counts) or ``"photons"``, None when the file does not say.
    attrs : dict
        Provenance as written (:meth:`z2t_dask.Sample.attrs`: ``seed`` int, ``config`` JSON string, ...);
        empty for files written by other tools.
    extra : dict
        Format-specific facts (e.g. ``n_series``, ``bigtiff`` and ``compression`` of a TIFF).
    """

    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size_nm: tuple[float, float] | None = None
    units: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class WriteRequest:
    """One write of a ``(T, Y, X)`` stack, validated, as a format's ``store`` function receives it.

    Attributes
    ----------
    path : pathlib.Path
        Output file or folder (its parent exists).
    frames : dask.array.Array
        The stack (lazy; a NumPy array is wrapped as one block).
    compression : str
        A compression the format offers (``"none"`` for none).
    pixel_size_nm : (float, float)
        Camera pixel size ``(x, y)`` in nm.
    attrs : dict
        Provenance to store (JSON-serialisable values).
    units : str
        Pixel units (``"ADU"`` or ``"photons"``).
    scheduler
        Dask scheduler for the blocks, resolved (``"auto"`` became the active Client or threads).
    prefetch : int
        Blocks computed ahead of an ordered writer.
    streaming : bool
        False: the whole stack is computed at once (the memory budget was checked).
    memory_budget_bytes : float or None
        Budget of a non-streaming write (None: the available memory).
    gc_every : int
        Ordered writers run ``gc.collect()`` every this many blocks (0: never).
    release : callable or None
        Returns free heap memory to the OS (called every
        :data:`~z2t_dask.io.blocks.RELEASE_EVERY_BLOCKS` blocks, or between zarr store batches).
    options : dict
        Format options (e.g. ``bigtiff``, ``zarr_format``, ``fingerprint``, ``tile``).

    A plain class, not a dataclass, on purpose: ``dask.delayed`` does not look inside it, so a
    deferred write keeps its frames lazy until the write itself streams them.
    """

    __slots__ = (
        "attrs",
        "compression",
        "frames",
        "gc_every",
        "memory_budget_bytes",
        "options",
        "path",
        "pixel_size_nm",
        "prefetch",
        "release",
        "scheduler",
        "streaming",
        "units",
    )

    def __init__(
        self,
        *,
        path: Path,
        frames: Any,
        compression: str,
        pixel_size_nm: tuple[float, float],
        attrs: dict[str, Any],
        units: str,
        scheduler: Any,
        prefetch: int,
        streaming: bool,
        memory_budget_bytes: float | None,
        gc_every: int,
        release: Callable[[], Any] | None,
        options: dict[str, Any],
    ) -> None:
        self.path = path
        self.frames = frames
        self.compression = compression
        self.pixel_size_nm = pixel_size_nm
        self.attrs = attrs
        self.units = units
        self.scheduler = scheduler
        self.prefetch = prefetch
        self.streaming = streaming
        self.memory_budget_bytes = memory_budget_bytes
        self.gc_every = gc_every
        self.release = release
        self.options = options

    def blocks(self, post: Callable[[np.ndarray], Any] | None = None) -> Iterator[Any]:
        """Blocks of whole frames in order: streamed (bounded memory) or the whole stack at once.

        ``post`` is applied to each block where it was computed (its result is yielded instead; see
        :func:`~z2t_dask.io.blocks.ordered_blocks`).
        """
        from z2t_dask.io.blocks import ordered_blocks

        return ordered_blocks(
            self.frames,
            scheduler=self.scheduler,
            prefetch=self.prefetch,
            streaming=self.streaming,
            memory_budget_bytes=self.memory_budget_bytes,
            gc_every=self.gc_every,
            release=self.release,
            post=post,
        )

    def array(self) -> Any:
        """The frames as a dask array to store block by block: lazy, or computed at once when not streaming."""
        import dask.array as da

        from z2t_dask.io.blocks import in_memory

        if self.streaming:
            return self.frames
        data = in_memory(self.frames, scheduler=self.scheduler, memory_budget_bytes=self.memory_budget_bytes)
        return da.from_array(data, chunks=self.frames.chunks)


def pixel_size_pair(pixel_size_nm: Any) -> tuple[float, float]:
    """``(x_nm, y_nm)`` from one size or a pair (ValueError unless two finite positive sizes)."""
    values = (pixel_size_nm, pixel_size_nm) if np.ndim(pixel_size_nm) == 0 else tuple(pixel_size_nm)
    try:
        px = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"pixel_size_nm must be (x_nm, y_nm), got {pixel_size_nm!r}") from None
    if len(px) != 2 or not all(math.isfinite(v) and v > 0 for v in px):
        raise ValueError(f"pixel_size_nm must be two positive sizes (x_nm, y_nm), got {pixel_size_nm!r}")
    return px[0], px[1]
