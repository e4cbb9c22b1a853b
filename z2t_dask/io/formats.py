"""Frame-stack formats: names, file suffixes, inference from a path, and ordered read-back.

================  ====================  ==========================================
format            stack file            writer
================  ====================  ==========================================
``"ome-tiff"``    ``<name>.ome.tiff``   :func:`z2t_dask.io.tiff.write_ome_tiff`
``"ome-zarr"``    ``<name>.ome.zarr/``  :func:`z2t_dask.io.zarr.write_ome_zarr`
``"hdf5"``        ``<name>.h5``         :func:`z2t_dask.io.hdf5.write_hdf5_stack`
================  ====================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from z2t_dask.errors import FormatError

__all__ = ["COMPRESSIONS", "FORMATS", "SUFFIXES", "check_compression", "format_from_path", "iter_stack_blocks",
           "normalise_format", "stack_filename"]

#: Accepted format names (``output.format``, ``--format``, ``Sample.save(format=...)``).
FORMATS = ("ome-tiff", "ome-zarr", "hdf5")
#: Stack file suffix of each format.
SUFFIXES = {"ome-tiff": ".ome.tiff", "ome-zarr": ".ome.zarr", "hdf5": ".h5"}
#: Stack compressions each format offers (no LZW, no predictor anywhere: they enlarge noisy frames).
COMPRESSIONS = {"ome-tiff": ("zstd", "zlib", "none"), "ome-zarr": ("zstd", "zlib", "none"),
                "hdf5": ("none", "zlib", "lzf")}
_ALIASES = {"tiff": "ome-tiff", "tif": "ome-tiff", "ome.tiff": "ome-tiff", "zarr": "ome-zarr",
            "ome.zarr": "ome-zarr", "h5": "hdf5"}


def normalise_format(fmt: str, key: str = "output.format") -> str:
    """The canonical name of a format (``"tiff"`` -> ``"ome-tiff"``, ``"zarr"`` -> ``"ome-zarr"``, ...).

    Raises
    ------
    FormatError
        Naming ``key`` and the accepted formats.
    """
    name = str(fmt).lower().strip()
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        raise FormatError(f"{key}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return name


def check_compression(fmt: str, compression: str | None, key: str = "compression") -> None:
    """Raise FormatError (naming ``key``) unless ``compression`` is None or offered by ``fmt``."""
    fmt = normalise_format(fmt)
    if compression is not None and compression not in COMPRESSIONS[fmt]:
        raise FormatError(f"{key}: {fmt} offers {', '.join(COMPRESSIONS[fmt])}, not {compression!r}")


def stack_filename(name: str, fmt: str) -> str:
    """``<name>.ome.tiff`` / ``<name>.ome.zarr`` / ``<name>.h5``."""
    return f"{name}{SUFFIXES[normalise_format(fmt)]}"


def format_from_path(path: str | os.PathLike[str], default: str | None = "ome-tiff") -> str:
    """The format a path's suffix names (``.zarr`` -> ome-zarr, ``.h5``/``.hdf5`` -> hdf5, ``.tif(f)`` -> ome-tiff).

    Another suffix gives ``default``; with ``default=None`` it raises :class:`~z2t_dask.errors.FormatError`.
    """
    name = Path(path).name.lower().rstrip("/")
    if name.endswith(".zarr"):
        return "ome-zarr"
    if name.endswith((".h5", ".hdf5", ".he5")):
        return "hdf5"
    if name.endswith((".tif", ".tiff")):
        return "ome-tiff"
    if default is None:
        raise FormatError(f"{path}: not a frame stack (expected .ome.tiff, .ome.zarr or .h5)")
    return normalise_format(default)


def iter_stack_blocks(path: str | os.PathLike[str], fmt: str, block_frames: int = 16) -> Iterator[np.ndarray]:
    """Read a written stack back in frame order, ``block_frames`` frames at a time (bounded memory)."""
    fmt = normalise_format(fmt)
    if fmt == "ome-tiff":
        from z2t_dask.io.tiff import iter_ome_tiff_blocks

        return iter_ome_tiff_blocks(path, block_frames)
    if fmt == "ome-zarr":
        from z2t_dask.io.zarr import iter_zarr_blocks

        return iter_zarr_blocks(path, block_frames)
    from z2t_dask.io.hdf5 import iter_hdf5_blocks

    return iter_hdf5_blocks(path, block_frames)
