"""The stack-format registry: one :class:`StackFormat` entry per frame-stack format, as xarray's backends.

An entry holds everything the package needs to know about a format: its name and aliases, its
file suffixes, the compressions it offers, and five functions: a writer (``store``), a lazy
opener, a reader of its metadata, an ordered block iterator and a content probe. Everything that
needs a format asks the registry (:func:`get_format`, :func:`detect_format`): ``Sample.save``,
``open_stack`` / ``open_sample``, ``z2t inspect``, ``z2t preview`` and the command line. Adding a
format is adding one entry (:func:`register_format`).

Every format is written through one signature, :meth:`StackFormat.write`::

    entry = get_format("ome-zarr")
    entry.write(path, frames, compression=None, pixel_size_nm=(x_nm, y_nm), attrs={...}, units="ADU",
                scheduler="auto", prefetch=2, streaming=True, compute=True, **format_options)

With ``compute=False`` it returns a :class:`dask.delayed.Delayed` that performs the write when
computed, so several writes can share one graph (``dask.compute(d1, d2)``).

This module knows no concrete format (the built-in entries live next to their writers in
:mod:`~z2t_dask.io.tiff`, :mod:`~z2t_dask.io.zarr` and :mod:`~z2t_dask.io.hdf5` and are registered
by :mod:`z2t_dask.io.formats`, loaded on first use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io.requests import StackInfo, WriteRequest, pixel_size_pair

__all__ = [
    "StackFormat",
    "StackInfo",
    "WriteRequest",
    "detect_format",
    "get_format",
    "pixel_size_pair",
    "register_format",
    "registered_formats",
    "unregister_format",
]


@dataclass(frozen=True)
class StackFormat:
    """One frame-stack format of the registry.

    Attributes
    ----------
    name : str
        Canonical name (``"ome-tiff"``), used by ``output.format``, ``--format`` and ``Sample.save``.
    suffix : str
        Suffix of the stack z2t writes (``<name><suffix>`` in a sample folder).
    suffixes : tuple of str
        Lower-case name endings detected as this format (``suffix`` first).
    aliases : tuple of str
        Other accepted names (``"tiff"``, ``"zarr"``, ...).
    compressions : tuple of str
        Compressions offered (``"none"`` included when uncompressed is offered).
    default_compression : str
        Used when a write asks for none in particular (``compression=None``).
    store : callable
        ``store(request: WriteRequest) -> pathlib.Path``: writes atomically (nothing under the final
        name unless complete).
    open : callable
        ``open(path) -> dask.array.Array``: lazy ``(T, Y, X)`` frames; every chunk opens the file
        itself, so the array computes on a cluster too.
    info : callable
        ``info(path) -> StackInfo``: shape, dtype, pixel size, units and provenance.
    iter_blocks : callable
        ``iter_blocks(path, block_frames) -> iterator of (t, Y, X) arrays`` in frame order.
    probe : callable
        ``probe(path) -> bool``: whether an existing path with one of ``suffixes`` holds a stack
        (e.g. an ``.h5`` with a 3-D ``frames`` dataset).
    resumable : bool
        An interrupted write of the same content continues where it stopped (the writer keeps
        its progress under a fixed hidden name; see :func:`z2t_dask.io.atomic.resumable_dir`).
    is_dir : bool
        The stack is a folder.
    shared_suffix : bool
        Files with these suffixes often hold something else (HDF5: ground truth, Zmaps): a folder's
        other stacks are preferred, and such a file counts only when :attr:`probe` finds frames.
    """

    name: str
    suffix: str
    suffixes: tuple[str, ...]
    aliases: tuple[str, ...]
    compressions: tuple[str, ...]
    default_compression: str
    store: Callable[[WriteRequest], Path]
    open: Callable[[Path], Any]
    info: Callable[[Path], StackInfo]
    iter_blocks: Callable[[Path, int], Iterator[np.ndarray]]
    probe: Callable[[Path], bool]
    resumable: bool = False
    is_dir: bool = False
    shared_suffix: bool = False

    def detect(self, path: str | os.PathLike[str]) -> bool:
        """Whether a path's name ends with one of this format's suffixes (nothing is opened)."""
        return Path(path).name.lower().rstrip("/").endswith(self.suffixes)

    def filename(self, name: str) -> str:
        """``<name><suffix>``, the stack of a sample folder called ``name``."""
        return f"{name}{self.suffix}"

    def check_compression(self, compression: str | None, key: str = "compression") -> str:
        """The compression to use: ``compression``, or the default when None.

        Raises
        ------
        FormatError
            Naming ``key``, the format and the compressions it offers.
        """
        if compression is None:
            return self.default_compression
        name = str(compression).lower()
        if name not in self.compressions:
            raise FormatError(f"{key}: {self.name} offers {', '.join(self.compressions)}, not {compression!r}")
        return name

    def write(
        self,
        path: str | os.PathLike[str],
        frames: Any,
        *,
        compression: str | None = None,
        pixel_size_nm: float | tuple[float, float],
        attrs: Mapping[str, Any] | None = None,
        units: str = "ADU",
        scheduler: Any = "auto",
        prefetch: int = 2,
        streaming: bool = True,
        compute: bool = True,
        memory_budget_bytes: float | None = None,
        gc_every: int = 0,
        release: Callable[[], Any] | None = None,
        **format_options: Any,
    ) -> Any:
        """Write a ``(T, Y, X)`` stack in this format, atomically (the one writer signature of every format).

        Parameters
        ----------
        path : path-like
            Output file or folder (conventionally ``<name>`` + :attr:`suffix`); its parent must exist.
        frames : dask.array.Array or numpy.ndarray
            The stack ``(T, Y, X)``, lazy or in memory; the dask chunks are the units written.
        compression : str, optional
            One of :attr:`compressions`; default :attr:`default_compression`.
        pixel_size_nm : float or (float, float)
            Camera pixel size ``(x, y)`` in nm (object plane), stored as the format's physical size.
        attrs : mapping, optional
            Provenance (e.g. :meth:`z2t_dask.Sample.attrs`), stored with the stack and returned by
            :attr:`info` ``(path).attrs``; values JSON-serialisable.
        units : str
            Pixel units: ``"ADU"`` (camera counts) or ``"photons"``.
        scheduler : str, callable or None
            ``"auto"`` (the active distributed Client if any, else threads), ``"threads"``,
            ``"sync"``, ``None`` or ``client.get``.
        prefetch : int
            Blocks computed ahead of an ordered writer (TIFF, HDF5).
        streaming : bool
            False computes the whole stack at once first; refused with
            :class:`~z2t_dask.errors.MemoryBudgetError` (before anything is created) when about
            twice the stack exceeds ``memory_budget_bytes``.
        compute : bool
            False returns a :class:`dask.delayed.Delayed` performing the write (its result is the
            path) instead of writing now; arguments are checked now. ``scheduler="auto"`` is then
            resolved where the write runs (on a distributed worker: its own threads).
        memory_budget_bytes : float, optional
            Budget of ``streaming=False`` (default: the available memory).
        gc_every : int
            Ordered writers collect garbage every this many blocks (0: never).
        release : callable, optional
            Returns free heap memory to the OS (e.g.
            :func:`z2t_dask.engine.allocator.release_free_memory`) every few hundred blocks.
        **format_options
            Options of this format (``ome-tiff``: ``bigtiff``, ``description``; ``ome-zarr``:
            ``zarr_format``, ``fingerprint``, ``overwrite``, ``resume``, ``name``; ``hdf5``: ``tile``).

        Returns
        -------
        pathlib.Path or dask.delayed.Delayed
            The final path, or (``compute=False``) a delayed object computing to it.

        Raises
        ------
        FormatError
            An unknown compression (naming it and the offered ones).
        MemoryBudgetError
            ``streaming=False`` and the stack does not fit the budget.
        """
        import dask.array as da

        from z2t_dask.engine.streaming import require_memory, resolve_scheduler
        from z2t_dask.io.blocks import describe

        if not hasattr(frames, "dask"):
            arr = np.asarray(frames)
            frames = da.from_array(arr, chunks=arr.shape)
        if frames.ndim not in (3, 4) or 0 in frames.shape[1:]:  # (T, C, Y, X): a multi-channel stack
            raise ValueError(f"frames must have shape (T, Y, X) or (T, C, Y, X), got {tuple(frames.shape)}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        request = WriteRequest(
            path=Path(path),
            frames=frames,
            compression=self.check_compression(compression),
            pixel_size_nm=pixel_size_pair(pixel_size_nm),
            attrs=dict(attrs or {}),
            units=str(units),
            # a deferred write resolves "auto" where it runs (a worker computes its own blocks locally)
            scheduler=resolve_scheduler(scheduler) if compute else scheduler,
            prefetch=int(prefetch),
            streaming=bool(streaming),
            memory_budget_bytes=memory_budget_bytes,
            gc_every=int(gc_every or 0),
            release=release,
            options=dict(format_options),
        )
        if not streaming:
            require_memory(frames, budget_bytes=memory_budget_bytes, what=describe(frames))
        if compute:
            return self.store(request)
        return _deferred(self, request)


def _run(entry: StackFormat, request: WriteRequest) -> Path:
    """Task of a deferred write (the scheduler resolved here, in the process that writes)."""
    from z2t_dask.engine.streaming import resolve_scheduler

    request.scheduler = resolve_scheduler(request.scheduler)
    return entry.store(request)


def _deferred(entry: StackFormat, request: WriteRequest) -> Any:
    """A ``dask.delayed`` write; the request is opaque to dask, so its frames stay lazy until written."""
    import dask
    from dask.base import tokenize

    token = tokenize(
        entry.name,
        os.fspath(request.path),
        request.frames.name,
        request.compression,
        request.pixel_size_nm,
        sorted(request.options),
    )
    return dask.delayed(_run, pure=True)(entry, request, dask_key_name=f"z2t-write-{entry.name}-{token}")


_REGISTRY: dict[str, StackFormat] = {}
_LOCK = threading.RLock()  # re-entrant: loading the built-ins registers them
_LOADED = False


def _ensure_builtins() -> None:
    """Register the built-in formats (once, on first use of the registry)."""
    global _LOADED
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                import z2t_dask.io.formats  # noqa: F401 - registers ome-tiff, ome-zarr, hdf5

                _LOADED = True


def register_format(entry: StackFormat, *, replace: bool = False) -> StackFormat:
    """Add a format to the registry (its name, aliases and suffixes become known everywhere).

    Raises
    ------
    ValueError
        If the name or an alias is already taken (and ``replace`` is False).
    """
    with _LOCK:
        if _REGISTRY.get(entry.name) is entry:
            return entry
        taken = {n for n in (entry.name, *entry.aliases) if n in _names() and _names()[n] != entry.name}
        if taken and not replace:
            raise ValueError(f"format names already registered: {sorted(taken)}")
        if entry.name in _REGISTRY and not replace:
            raise ValueError(f"format {entry.name!r} is already registered")
        _REGISTRY[entry.name] = entry
    return entry


def unregister_format(name: str) -> StackFormat:
    """Remove a format from the registry (e.g. one a test registered); returns its entry.

    Raises
    ------
    FormatError
        If no format of that name or alias is registered.
    """
    entry = get_format(name, "format")
    with _LOCK:
        del _REGISTRY[entry.name]
    return entry


def _names() -> dict[str, str]:
    """Every accepted name (canonical and aliases) -> canonical name."""
    out: dict[str, str] = {}
    for entry in _REGISTRY.values():
        out.update({a: entry.name for a in entry.aliases})
        out[entry.name] = entry.name
    return out


def registered_formats() -> tuple[str, ...]:
    """Canonical names of the registered formats, in registration order."""
    _ensure_builtins()
    return tuple(_REGISTRY)


def get_format(name: str | StackFormat, key: str = "output.format") -> StackFormat:
    """The registry entry of a format name or alias (``"tiff"`` -> the ``"ome-tiff"`` entry).

    Raises
    ------
    FormatError
        Naming ``key``, the unknown name and the registered formats.
    """
    if isinstance(name, StackFormat):
        return name
    _ensure_builtins()
    canonical = _names().get(str(name).lower().strip())
    if canonical is None:
        raise FormatError(f"{key}: unknown format {name!r}; use one of {', '.join(_REGISTRY)}")
    return _REGISTRY[canonical]


def detect_format(path: str | os.PathLike[str]) -> StackFormat | None:
    """The format whose suffix a path's name ends with (the longest match wins), or None."""
    _ensure_builtins()
    name = Path(path).name.lower().rstrip("/")
    best, length = None, 0
    for entry in _REGISTRY.values():
        for suffix in entry.suffixes:
            if name.endswith(suffix) and len(suffix) > length:
                best, length = entry, len(suffix)
    return best
