"""HDF5 frame stacks: block-wise ``frames`` datasets (h5py), the stack file ``<name>.h5``, readers, registry entry.

A stack file holds one dataset ``frames`` (T, Y, X), written block by block in frame order
from an iterator (bounded memory; HDF5 files cannot take concurrent writers, so with a
distributed Client the blocks are funnelled through the client), HDF5 chunks of one frame
(or one tile of a frame), and attributes::

    /                 provenance (config, seed, version, conventions: JSON strings)
    /frames           units ("ADU" or "photons"), axes = "TYX",
                      element_size_um = [1, y_um, x_um] (Fiji's HDF5 convention; t in frames),
                      pixel_size_nm = [x_nm, y_nm]

The file appears under its final name only when complete (:func:`~z2t_dask.io.atomic.atomic_path`):
a killed HDF5 writer leaves an unreadable file, so it is never resumed, only redone. Files carry no
timestamps (every object is created with ``track_times=False``), so the same sample gives the same
bytes. Files are opened with :func:`~z2t_dask.io.h5files.h5_writer`: a write that fails (disk full,
file-size limit) is an exception naming the file, never the crash the HDF5 library meets when it closes
such a file; an uncompressed stack that cannot fit is refused before writing
(:func:`~z2t_dask.io.space.check_output_space`).

Compression: none (default: the fastest, ~585 MB/s measured), ``"zlib"`` (gzip level 1) or
``"lzf"``; all are built into h5py, so every HDF5 reader opens the file without plugins.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.engine.streaming import iter_frame_blocks
from z2t_dask.errors import FormatError
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.blocks import lazy_stack
from z2t_dask.io.h5files import h5_writer, raise_if_write_failed
from z2t_dask.io.jsonutil import json_default
from z2t_dask.io.registry import StackFormat, StackInfo, WriteRequest, pixel_size_pair
from z2t_dask.io.space import check_output_space

__all__ = [
    "FORMAT",
    "FRAME_COMPRESSIONS",
    "decode_attr",
    "encode_attr",
    "hdf5_stack_info",
    "iter_hdf5_blocks",
    "open_hdf5_stack",
    "read_hdf5_stack",
    "write_frames_dataset",
    "write_hdf5_stack",
]

#: Accepted compression names -> h5py ``create_dataset`` options (built-in filters only).
FRAME_COMPRESSIONS: dict[str | None, dict[str, Any]] = {
    None: {},
    "none": {},
    "zlib": {"compression": "gzip", "compression_opts": 1},
    "gzip": {"compression": "gzip", "compression_opts": 1},
    "lzf": {"compression": "lzf"},
}


def encode_attr(key: str, value: Any) -> Any:
    """Attribute value for HDF5: dicts/lists/tuples/None -> JSON strings, paths -> str."""
    if isinstance(value, (dict, list, tuple)) or value is None:
        try:
            return json.dumps(value, default=json_default, sort_keys=True)
        except TypeError as exc:
            raise ValueError(f"attrs[{key!r}] cannot be stored as JSON: {exc}") from None
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (str, bytes, bool, int, float, np.generic)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    raise ValueError(
        f"attrs[{key!r}] must be a str, number, bool, numeric array, dict or list, got {type(value).__name__}"
    )


def decode_attr(value: Any) -> Any:
    """Inverse of :func:`encode_attr` (JSON strings of objects/arrays decoded, bytes to str)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str) and (value[:1] in ("{", "[") or value == "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _frames_pair(frames: Any) -> tuple[tuple[int, int, int], Any] | None:
    """Recognise the ``((T, Y, X), iterable)`` form; return it normalised, else None."""
    if not (isinstance(frames, tuple) and len(frames) == 2 and isinstance(frames[0], (tuple, list))):
        return None
    shape = tuple(int(s) for s in frames[0])
    if len(shape) not in (3, 4) or min(shape) < 0 or 0 in shape[1:]:  # (T, C, Y, X): multi-channel
        raise ValueError(f"frames shape must be (T, Y, X) or (T, C, Y, X), got {frames[0]!r}")
    return shape, frames[1]  # type: ignore[return-value]


def _chunks(y: int, x: int, tile: tuple[int, int] | None) -> tuple[int, int, int]:
    if tile is None:
        return 1, y, x
    return 1, max(1, min(int(tile[0]), y)), max(1, min(int(tile[1]), x))


def _cast(block: np.ndarray, dtype: np.dtype | None, t0: int) -> np.ndarray:
    if dtype is None or block.dtype == dtype:
        return block
    if not np.can_cast(block.dtype, dtype, casting="same_kind"):
        raise ValueError(f"frames block at frame {t0} has dtype {block.dtype}, which cannot be stored as {dtype}")
    return block.astype(dtype)


def write_frames_dataset(
    group: Any,
    frames: Any,
    *,
    name: str = "frames",
    compression: str | None = None,
    tile: tuple[int, int] | None = None,
    dtype: Any = None,
) -> int:
    """Write ``frames`` as dataset ``name`` of an open h5py group, block by block, in frame order.

    Parameters
    ----------
    group : h5py.Group or h5py.File
        Where the dataset is created.
    frames : array (T, Y, X), ((T, Y, X), iterable) or iterable
        A NumPy/dask array (streamed with :func:`~z2t_dask.engine.streaming.iter_frame_blocks`), a
        ``(shape, iterable)`` pair (the frame count is checked against ``shape[0]``), or an
        iterable of (Y, X) frames / (t, Y, X) blocks (the dataset grows).
    name : str
        Dataset name.
    compression : {None, "none", "zlib", "gzip", "lzf"}
        Built-in HDF5 filter (gzip at level 1).
    tile : (int, int), optional
        HDF5 chunk rows and columns; default one whole frame per chunk.
    dtype : dtype-like, optional
        Stored dtype (same-kind casts only); default the first block's.

    Returns
    -------
    int
        Number of frames written.
    """
    if compression not in FRAME_COMPRESSIONS:
        raise FormatError(f"compression must be one of None, 'none', 'zlib', 'gzip', 'lzf', got {compression!r}")
    opts = FRAME_COMPRESSIONS[compression]
    dt = None if dtype is None else np.dtype(dtype)
    is_array = isinstance(frames, np.ndarray) or (hasattr(frames, "dask") and hasattr(frames, "chunks"))
    if is_array:
        if frames.ndim != 3 or 0 in frames.shape[1:]:
            raise ValueError(f"frames must have shape (T, Y, X), got {tuple(frames.shape)}")
        t, y, x = (int(s) for s in frames.shape)
        dset = group.create_dataset(
            name,
            shape=(t, y, x),
            dtype=dt or frames.dtype,
            chunks=_chunks(y, x, tile) if t else None,
            track_times=False,
            **opts,
        )
        t0 = 0
        for block in iter_frame_blocks(frames):
            dset[t0 : t0 + block.shape[0]] = _cast(block, dt, t0)
            raise_if_write_failed(dset)
            t0 += block.shape[0]
        _flush(dset)
        return t
    pair = _frames_pair(frames)
    declared, source = pair if pair is not None else (None, frames)
    dset = None
    t0 = 0
    for item in source:
        block = np.asarray(item)
        if block.ndim == 2:
            block = block[np.newaxis]
        if block.ndim != (len(declared) if declared is not None else 3):
            raise ValueError(f"frames must yield (Y, X) frames or (t, Y, X) blocks, got shape {block.shape}")
        if dset is None:
            y, x = block.shape[-2:]
            if declared is not None and block.shape[1:] != declared[1:]:
                raise ValueError(f"frames block has frame shape {block.shape[1:]}, expected {declared[1:]}")
            first = declared[0] if declared is not None else 0
            mid = tuple(block.shape[1:-2])  # (C,) of a (T, C, Y, X) stack: one channel per HDF5 chunk
            dset = group.create_dataset(
                name,
                shape=(first, *mid, y, x),
                maxshape=(first if declared is not None else None, *mid, y, x),
                dtype=dt or block.dtype,
                chunks=(1, *(1 for _ in mid), *_chunks(y, x, tile)[1:]),
                track_times=False,
                **opts,
            )
        elif block.shape[1:] != dset.shape[1:]:
            raise ValueError(f"frames block has frame shape {block.shape[1:]}, expected {dset.shape[1:]}")
        stop = t0 + block.shape[0]
        if declared is not None:
            if stop > declared[0]:
                raise ValueError(f"frames yielded more than the declared {declared[0]} frames")
        else:
            dset.resize(stop, axis=0)
        dset[t0:stop] = _cast(block, dt, t0)
        raise_if_write_failed(dset)
        t0 = stop
    if dset is None:
        raise ValueError("frames yielded no frames")
    if declared is not None and t0 != declared[0]:
        raise ValueError(f"frames yielded {t0} frames but {declared[0]} were declared")
    _flush(dset)
    return t0


def _flush(dset: Any) -> None:
    """Write a dataset's cached chunks now, while it is open, and raise a write that failed."""
    dset.file.flush()
    raise_if_write_failed(dset)


def write_hdf5_stack(
    path: str | os.PathLike[str],
    frames: Iterable[Any],
    *,
    shape: tuple[int, int, int],
    dtype: Any,
    pixel_size_nm: tuple[float, float],
    compression: str | None = "none",
    tile: tuple[int, int] | None = None,
    attrs: Mapping[str, Any] | None = None,
    units: str = "ADU",
) -> Path:
    """Write an HDF5 stack file (dataset ``frames`` (T, Y, X)) from frames in order, atomically.

    Parameters
    ----------
    path : path-like
        Output file, conventionally ``<name>.h5``; replaced if it exists.
    frames : iterable of arrays
        (Y, X) frames or (t, Y, X) blocks in frame order (e.g. ``iter_frame_blocks``); exactly
        ``shape[0]`` frames.
    shape : (int, int, int)
        (T, Y, X).
    dtype : dtype-like
        Stored pixel type (uint16 ADU or float32 photons).
    pixel_size_nm : (float, float)
        Camera pixel size (x, y) in nm.
    compression : {"none", None, "zlib", "lzf"}
        See :data:`FRAME_COMPRESSIONS`.
    tile : (int, int), optional
        HDF5 chunk rows/columns (default one frame per chunk).
    attrs : mapping, optional
        Root attributes (provenance; dicts and lists become JSON strings).
    units : str
        ``units`` attribute of ``frames``.

    Returns
    -------
    pathlib.Path
        The final path.

    Raises
    ------
    OutputSpaceError
        An uncompressed stack larger than the file-size limit or the free disk space (refused before
        writing), or a full disk / file-size limit met while writing (nothing left behind).
    """
    px_x, px_y = pixel_size_pair(pixel_size_nm)
    shape3 = tuple(int(s) for s in shape)  # (T, Y, X), or (T, C, Y, X) of a multi-channel stack
    if len(shape3) not in (3, 4) or min(shape3) < 1:
        raise ValueError(f"shape must be (T, Y, X) or (T, C, Y, X) with positive sizes, got {shape!r}")
    encoded = {str(k): encode_attr(str(k), v) for k, v in dict(attrs or {}).items()}
    final = Path(path)
    if not FRAME_COMPRESSIONS.get(compression):  # uncompressed: the size is known, refuse what cannot fit
        check_output_space(final, math.prod(shape3) * np.dtype(dtype).itemsize, what="the HDF5 stack")
    with atomic_path(final) as tmp:
        with h5_writer(tmp) as f:
            for key, value in encoded.items():
                f.attrs[key] = value
            write_frames_dataset(f, (shape3, frames), compression=compression, tile=tile, dtype=dtype)
            d = f["frames"]
            d.attrs["units"] = str(units)
            d.attrs["axes"] = "TYX"
            d.attrs["element_size_um"] = np.array([1.0, px_y / 1000.0, px_x / 1000.0])
            if len(shape3) == 4:  # multi-channel: axes TCYX and the channel names
                from z2t_dask.io.channels import channel_table_from_attrs

                names = [str(c.get("name", f"ch{i}")) for i, c in enumerate(channel_table_from_attrs(attrs))]
                d.attrs["axes"] = "TCYX"
                d.attrs["element_size_um"] = np.array([1.0, 1.0, px_y / 1000.0, px_x / 1000.0])
                d.attrs["channel_names"] = encode_attr("channel_names", names[: shape3[1]])
            d.attrs["pixel_size_nm"] = np.array([px_x, px_y])
    return final


def _h5(path: str | os.PathLike[str], dataset: str = "frames") -> Any:
    """An open h5py file holding ``dataset`` (FormatError, naming the file, otherwise)."""
    import h5py

    if not Path(path).exists():
        raise FileNotFoundError(f"stack not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        f.close()
        raise FormatError(f"{path}: no dataset '{dataset}'")
    return f


def read_hdf5_stack(path: str | os.PathLike[str], dataset: str = "frames") -> np.ndarray:
    """Read a whole ``frames`` dataset (T, Y, X) into memory."""
    with _h5(path, dataset) as f:
        return f[dataset][()]


def iter_hdf5_blocks(
    path: str | os.PathLike[str], block_frames: int = 16, dataset: str = "frames"
) -> Iterator[np.ndarray]:
    """Yield ``frames`` of an HDF5 file in order, ``block_frames`` frames at a time (bounded memory)."""
    with _h5(path, dataset) as f:
        d = f[dataset]
        for t0 in range(0, d.shape[0], max(1, int(block_frames))):
            yield d[t0 : t0 + block_frames]


def _read_frames(path: str, t0: int, t1: int) -> np.ndarray:
    """Frames ``[t0, t1)`` of ``frames`` (a task function of :func:`open_hdf5_stack`)."""
    with _h5(path) as f:
        return f["frames"][t0:t1]


def open_hdf5_stack(path: str | os.PathLike[str]) -> Any:
    """The ``frames`` dataset as a lazy dask array ``(T, Y, X)`` (chunks of whole frames, ~16 MiB)."""
    with _h5(path) as f:
        shape, dtype = tuple(f["frames"].shape), f["frames"].dtype
    return lazy_stack(path, _read_frames, shape, dtype)


def hdf5_stack_info(path: str | os.PathLike[str]) -> StackInfo:
    """Shape, dtype, pixel size, units (attributes of ``frames``) and provenance (root attributes)."""
    with _h5(path) as f:
        d = f["frames"]
        px = d.attrs.get("pixel_size_nm")
        units = decode_attr(d.attrs["units"]) if "units" in d.attrs else None
        attrs = {str(k): _plain(v) for k, v in f.attrs.items()}
        shape = tuple(int(v) for v in d.shape)
        return StackInfo(
            format="hdf5",
            shape=shape if len(shape) != 2 else (1, *shape),
            dtype=np.dtype(d.dtype),
            pixel_size_nm=None if px is None else (float(px[0]), float(px[1])),
            units=units if isinstance(units, str) else None,
            attrs=attrs,
            extra={"chunks": d.chunks, "compression": d.compression},
        )


def _plain(value: Any) -> Any:
    """An attribute as written (strings stay strings: JSON is not decoded), NumPy scalars as Python ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _has_frames(path: str | os.PathLike[str]) -> bool:
    """Whether a file is HDF5 with a 3-D ``frames`` dataset (False for anything unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "frames" in f and getattr(f["frames"], "ndim", 0) in (3, 4)  # (T, Y, X) or (T, C, Y, X)
    except OSError:
        return False


def _store(request: WriteRequest) -> Path:
    """Registry writer: frames written in order (HDF5 takes one writer), chunks of one frame or, for a
    tiled stack, one tile (option ``tile`` overrides)."""
    options = dict(request.options)
    frames = request.frames
    tiled = len(frames.chunks[-2]) > 1 or len(frames.chunks[-1]) > 1
    tile = options.pop("tile", frames.chunksize[-2:] if tiled else None)
    if options:
        raise TypeError(f"hdf5: unknown format options {sorted(options)} (tile)")
    return write_hdf5_stack(
        request.path,
        request.blocks(),
        shape=frames.shape,
        dtype=frames.dtype,
        pixel_size_nm=request.pixel_size_nm,
        compression=request.compression,
        tile=tile,
        attrs=request.attrs,
        units=request.units,
    )


#: The registry entry of HDF5 stacks (``<name>.h5``, dataset ``frames``).
FORMAT = StackFormat(
    name="hdf5",
    suffix=".h5",
    suffixes=(".h5", ".hdf5", ".he5"),
    aliases=("h5",),
    compressions=("none", "zlib", "lzf"),
    default_compression="none",
    store=_store,
    open=open_hdf5_stack,
    info=hdf5_stack_info,
    iter_blocks=iter_hdf5_blocks,
    probe=_has_frames,
    shared_suffix=True,
)
