"""Open what z2t wrote: a sample folder's frame stack (lazily) and its ground truth.

>>> import z2t_dask as z2t
>>> s = z2t.open_sample("output/sample_000")     # doctest: +SKIP
>>> s.frames                                     # dask array (T, Y, X), read lazily   # doctest: +SKIP
>>> s.records["xyz"][s.records["frame_ix"] == 0]  # truth of frame 0 (x, y px; z µm)   # doctest: +SKIP

Stacks: ``<name>.ome.tiff`` (through tifffile's zarr store, one chunk per page), ``<name>.ome.zarr``
(OME-Zarr, image ``0``) or ``<name>.h5`` (dataset ``frames``). Nothing is read until computed.
Frames are ``(T, Y, X)``; pixel ``(r, c)`` has its centre at ``(y=r, x=c)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SampleFolder", "find_stack", "stack_format", "open_stack", "open_sample", "inside_mask"]

_TIFF = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
_ZARR = (".ome.zarr", ".zarr")


def stack_format(path: str | os.PathLike) -> str:
    """``"ome-tiff"``, ``"ome-zarr"`` or ``"hdf5"`` from a stack path's suffix.

    Raises
    ------
    ValueError
        For a suffix that names no stack format.
    """
    from z2t_dask.io.formats import format_from_path

    return format_from_path(path, default=None)


def _has_frames(h5: Path) -> bool:
    import h5py

    try:
        with h5py.File(h5, "r") as f:
            return "frames" in f and getattr(f["frames"], "ndim", 0) == 3
    except OSError:
        return False


def find_stack(folder: str | os.PathLike) -> Path | None:
    """The frame stack of a sample folder, or None.

    ``<folder name>.ome.tiff|.ome.zarr|.h5`` first (z2t's naming), else the only TIFF / Zarr /
    HDF5 stack in the folder (e.g. the original tool's ``simulation_40.ome.tiff``).
    """
    folder = Path(folder)
    for suffix in (".ome.tiff", ".ome.zarr", ".h5"):
        p = folder / f"{folder.name}{suffix}"
        if p.exists() and (suffix != ".h5" or _has_frames(p)):
            return p
    found = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name.lower().endswith(_TIFF + _ZARR))
    if not found:
        found = sorted(p for p in folder.glob("*.h5") if p.name != "emitters.h5" and _has_frames(p))
    return found[0] if found else None


#: Target bytes of one chunk of a TIFF / HDF5 stack opened by :func:`open_stack`.
READ_CHUNK_BYTES = 16 * 2**20


def _read_block(path: str, fmt: str, block_info: dict | None = None) -> np.ndarray:
    """Frames ``[t0, t1)`` of a TIFF (first series) or HDF5 ``frames`` stack (task function: picklable)."""
    (t0, t1), _, _ = block_info[None]["array-location"]
    if fmt == "ome-tiff":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tif.asarray(key=range(t0, t1), series=0).reshape(t1 - t0, *series.shape[-2:])
    import h5py

    with h5py.File(path, "r") as f:
        return f["frames"][t0:t1]


def _lazy(path: Path, fmt: str, shape: tuple[int, ...], dtype: Any) -> Any:
    import dask.array as da

    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ValueError(f"{path}: expected a (T, Y, X) stack, got shape {shape}")
    t, h, w = (int(v) for v in shape)
    step = max(1, min(t, READ_CHUNK_BYTES // max(1, h * w * np.dtype(dtype).itemsize)))
    chunks = (tuple(min(step, t - a) for a in range(0, t, step)), (h,), (w,))
    return da.map_blocks(_read_block, str(path), fmt, chunks=chunks, dtype=dtype,
                         name=f"z2t-read-{path.name}-{path.stat().st_mtime_ns}", meta=np.empty((0, 0, 0), dtype))


def open_stack(path: str | os.PathLike) -> Any:
    """A frame stack as a lazy dask array ``(T, Y, X)`` (first image series of a TIFF).

    Every chunk opens the file itself, so the array also computes on a distributed cluster
    (TIFF and HDF5: chunks of about 16 MiB of whole frames; OME-Zarr: its own chunks).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a frame stack (suffix or content).
    """
    import dask.array as da

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"stack not found: {p}")
    fmt = stack_format(p)
    if fmt == "ome-tiff":
        import tifffile

        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
        return _lazy(p, fmt, shape, dtype)
    if fmt == "hdf5":
        import h5py

        with h5py.File(p, "r") as f:
            if "frames" not in f:
                raise ValueError(f"{p}: no dataset 'frames'")
            shape, dtype = tuple(f["frames"].shape), f["frames"].dtype
        return _lazy(p, fmt, shape, dtype)
    try:
        from z2t_dask.io.zarr import read_ome_zarr
    except ImportError:  # the OME-Zarr module is optional in older trees
        import zarr

        frames = da.from_zarr(zarr.open_array(store=str(p / "0"), mode="r"))
    else:
        frames = read_ome_zarr(p)
    if frames.ndim != 3:
        raise ValueError(f"{p}: expected a (T, Y, X) stack, got shape {frames.shape}")
    return frames


def inside_mask(xy: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Emitter centres inside the image: ``-0.5 <= x < W - 0.5`` and ``-0.5 <= y < H - 0.5`` (px)."""
    h, w = image_shape
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    return (xy[:, 0] >= -0.5) & (xy[:, 0] < w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] < h - 0.5)


@dataclass
class SampleFolder:
    """A sample folder opened for reading.

    Attributes
    ----------
    path : Path
        The folder.
    stack : Path or None
        Its frame stack, if any.
    format : str or None
        ``"ome-tiff"``, ``"ome-zarr"`` or ``"hdf5"``.
    truth : EmittersFile or None
        ``emitters.h5`` (emitters, records, zernike coefficients, attributes), if present.
    """

    path: Path
    stack: Path | None
    format: str | None
    truth: Any

    @cached_property
    def frames(self) -> Any:
        """The lazy ``(T, Y, X)`` dask array of the stack (ADU for a camera, photons otherwise)."""
        if self.stack is None:
            raise FileNotFoundError(f"{self.path}: no frame stack (.ome.tiff, .ome.zarr or .h5) in the folder")
        return open_stack(self.stack)

    @property
    def records(self) -> dict[str, np.ndarray]:
        """Per-(emitter, frame) truth: ``xyz`` (x, y px; z µm), ``phot``, ``frame_ix``, ``id``, ``inside``.

        ``inside`` is computed from the image size when the file lacks it (original files).
        """
        if self.truth is None:
            raise FileNotFoundError(f"{self.path}: no emitters.h5")
        rec = dict(self.truth.records)
        if "inside" not in rec:
            shape = self.image_shape
            rec["inside"] = (inside_mask(rec["xyz"][:, :2], shape) if shape is not None
                             else np.ones(len(rec["frame_ix"]), bool))
        rec["inside"] = np.asarray(rec["inside"], bool)
        return rec

    @property
    def config(self) -> dict | None:
        """The resolved config stored with the ground truth (None for the original tool's files)."""
        cfg = (self.truth.attrs or {}).get("config") if self.truth is not None else None
        return cfg if isinstance(cfg, dict) else None

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` px from the stack, else from the stored config."""
        if self.stack is not None:
            return tuple(int(v) for v in self.frames.shape[1:])  # type: ignore[return-value]
        cfg = self.config
        if cfg:
            t = cfg.get("tiff", {})
            if t.get("roi_height") and t.get("roi_width"):
                return int(t["roi_height"]), int(t["roi_width"])
        return None


def open_sample(folder: str | os.PathLike) -> SampleFolder:
    """Open a sample folder (``<name>.ome.tiff|.ome.zarr|.h5`` + ``emitters.h5``) lazily.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or holds neither a stack nor an ``emitters.h5``.
    """
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    p = Path(folder)
    if not p.is_dir():
        raise FileNotFoundError(f"sample folder not found: {p}")
    stack = find_stack(p)
    truth = read_emitters_h5(p / "emitters.h5") if (p / "emitters.h5").is_file() else None
    if stack is None and truth is None:
        raise FileNotFoundError(f"{p}: neither a frame stack nor emitters.h5 (not a sample folder)")
    return SampleFolder(path=p, stack=stack, format=stack_format(stack) if stack else None, truth=truth)
