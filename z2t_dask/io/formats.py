"""Frame-stack formats: the built-in registry entries and the helpers everything else calls.

================  ====================  ==============================================
format            stack file            entry (writer, opener, info, blocks, probe)
================  ====================  ==============================================
``"ome-tiff"``    ``<name>.ome.tiff``   :data:`z2t_dask.io.tiff.FORMAT`
``"ome-zarr"``    ``<name>.ome.zarr/``  :data:`z2t_dask.io.zarr.FORMAT`
``"hdf5"``        ``<name>.h5``         :data:`z2t_dask.io.hdf5.FORMAT`
================  ====================  ==============================================

Importing this module registers them (:mod:`z2t_dask.io.registry` does so on first use). A new
format is one more :class:`~z2t_dask.io.registry.StackFormat` entry passed to
:func:`~z2t_dask.io.registry.register_format`; every function below, ``Sample.save``,
``open_sample``, ``z2t inspect``, ``z2t preview`` and the command line then know it.

>>> from z2t_dask.io.formats import write_frames, open_frames
>>> write_frames("s.ome.zarr", frames, pixel_size_nm=(100, 100), attrs={"seed": 1})   # doctest: +SKIP
>>> d1 = write_frames("a.ome.tiff", frames, pixel_size_nm=100, compute=False)           # doctest: +SKIP
>>> d2 = write_frames("b.h5", frames, pixel_size_nm=100, compute=False)                 # doctest: +SKIP
>>> dask.compute(d1, d2)        # both writes in one graph                             # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io import hdf5, tiff, zarr
from z2t_dask.io.blocks import frame_units
from z2t_dask.io.registry import StackFormat, StackInfo, detect_format, get_format, register_format, registered_formats

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "SUFFIXES",
    "StackFormat",
    "StackInfo",
    "check_compression",
    "find_stack",
    "format_from_path",
    "frame_units",
    "get_format",
    "iter_stack_blocks",
    "normalise_format",
    "open_frames",
    "read_stack_info",
    "register_format",
    "registered_formats",
    "stack_filename",
    "write_frames",
]

for _entry in (tiff.FORMAT, zarr.FORMAT, hdf5.FORMAT):
    register_format(_entry)

#: The built-in format names (``output.format``, ``--format``, ``Sample.save(format=...)``);
#: :func:`registered_formats` also lists formats registered later.
FORMATS = ("ome-tiff", "ome-zarr", "hdf5")
#: Stack file suffix of each built-in format.
SUFFIXES = {name: get_format(name).suffix for name in FORMATS}
#: Stack compressions each built-in format offers (no LZW, no predictor anywhere: they enlarge noisy frames).
COMPRESSIONS = {name: get_format(name).compressions for name in FORMATS}


def normalise_format(fmt: str, key: str = "output.format") -> str:
    """The canonical name of a format (``"tiff"`` -> ``"ome-tiff"``, ``"zarr"`` -> ``"ome-zarr"``, ...).

    Raises
    ------
    FormatError
        Naming ``key`` and the accepted formats.
    """
    return get_format(fmt, key).name


def check_compression(fmt: str, compression: str | None, key: str = "compression") -> None:
    """Raise FormatError (naming ``key``) unless ``compression`` is None or offered by ``fmt``."""
    get_format(fmt).check_compression(compression, key)


def stack_filename(name: str, fmt: str) -> str:
    """``<name>.ome.tiff`` / ``<name>.ome.zarr`` / ``<name>.h5``."""
    return get_format(fmt).filename(name)


def format_from_path(path: str | os.PathLike[str], default: str | None = "ome-tiff") -> str:
    """The format a path's suffix names (``.zarr`` -> ome-zarr, ``.h5``/``.hdf5`` -> hdf5, ``.tif(f)`` -> ome-tiff).

    Another suffix gives ``default``; with ``default=None`` it raises :class:`~z2t_dask.errors.FormatError`.
    """
    entry = detect_format(path)
    if entry is not None:
        return entry.name
    if default is None:
        known = ", ".join(get_format(n).suffix for n in registered_formats())
        raise FormatError(f"{path}: not a frame stack (expected {known})")
    return normalise_format(default)


def iter_stack_blocks(path: str | os.PathLike[str], fmt: str, block_frames: int = 16) -> Iterator[np.ndarray]:
    """Read a written stack back in frame order, ``block_frames`` frames at a time (bounded memory)."""
    return get_format(fmt).iter_blocks(Path(path), block_frames)


def _existing(path: str | os.PathLike[str], fmt: str | None) -> tuple[Path, StackFormat]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"stack not found: {p}")
    return p, get_format(fmt, "format") if fmt is not None else get_format(format_from_path(p, default=None))


def open_frames(path: str | os.PathLike[str], fmt: str | None = None) -> Any:
    """A frame stack as a lazy dask array ``(T, Y, X)``; the format from the suffix unless given.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If it is not a frame stack (suffix or content).
    """
    p, entry = _existing(path, fmt)
    return entry.open(p)


def read_stack_info(path: str | os.PathLike[str], fmt: str | None = None) -> StackInfo:
    """Shape, dtype, pixel size, units and provenance of a stack (no pixel is read)."""
    p, entry = _existing(path, fmt)
    return entry.info(p)


def write_frames(
    path: str | os.PathLike[str],
    frames: Any,
    *,
    format: str | None = None,
    pixel_size_nm: float | tuple[float, float],
    compression: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    units: str | None = None,
    compute: bool = True,
    **kwargs: Any,
) -> Any:
    """Write a ``(T, Y, X)`` stack in ``format`` (default: from the suffix of ``path``).

    The arguments are those of :meth:`~z2t_dask.io.registry.StackFormat.write` (``scheduler``,
    ``prefetch``, ``streaming``, ``memory_budget_bytes``, ``gc_every``, ``release`` and format options
    pass through); ``units`` defaults to ``"ADU"`` for unsigned integer frames, else ``"photons"``.
    Returns the path, or with ``compute=False`` a ``dask.delayed`` object performing the write.
    """
    entry = get_format(format if format is not None else format_from_path(path, default=None), "format")
    return entry.write(
        path,
        frames,
        compression=compression,
        pixel_size_nm=pixel_size_nm,
        attrs=attrs,
        units=units or frame_units(frames.dtype),
        compute=compute,
        **kwargs,
    )


def find_stack(folder: str | os.PathLike[str]) -> Path | None:
    """The frame stack of a sample folder, or None.

    ``<folder name><suffix>`` of each registered format first (z2t's naming), else the first stack
    in the folder by name (e.g. the original tool's ``simulation_40.ome.tiff``), files of formats
    whose suffix is shared with other content (HDF5: ground truth, Zmaps) last and only when their
    probe finds frames; ``emitters.h5`` is the ground truth, never the stack. Hidden entries
    (temporaries, partial outputs) are ignored.
    """
    folder = Path(folder)
    for name in registered_formats():
        entry = get_format(name)
        p = folder / entry.filename(folder.name)
        if p.exists() and entry.probe(p):
            return p
    found: list[tuple[bool, Path, StackFormat]] = []
    for p in sorted(folder.iterdir()):
        detected = detect_format(p)
        if detected is not None and not p.name.startswith(".") and p.name != "emitters.h5":
            found.append((detected.shared_suffix, p, detected))
    for _shared, p, candidate in sorted(found, key=lambda item: item[0]):
        if candidate.probe(p):
            return p
    return None
