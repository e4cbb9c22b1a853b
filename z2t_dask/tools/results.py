"""Open what z2t wrote: a sample folder's frame stack (lazily), its provenance and its ground truth.

>>> import z2t_dask as z2t
>>> s = z2t.open_sample("output/sample_000")     # doctest: +SKIP
>>> s.frames                                     # dask array (T, Y, X), read lazily   # doctest: +SKIP
>>> s.attrs["seed"], s.pixel_size_nm             # provenance stored with the stack    # doctest: +SKIP
>>> s.records["xyz"][s.records["frame_ix"] == 0]  # truth of frame 0 (x, y px; z µm)   # doctest: +SKIP

Stacks are whatever the format registry (:mod:`z2t_dask.io.formats`) knows: ``<name>.ome.tiff``
(chunks of whole pages), ``<name>.ome.zarr`` (OME-Zarr, image ``0``) or ``<name>.h5`` (dataset
``frames``). Nothing is read until computed. Frames are ``(T, Y, X)``; pixel ``(r, c)`` has its
centre at ``(y=r, x=c)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from z2t_dask.physics.emitters import EmitterTable, Records

__all__ = ["SampleFolder", "find_stack", "open_sample", "open_stack", "stack_format"]


def stack_format(path: str | os.PathLike) -> str:
    """The registry name of a stack's format (``"ome-tiff"``, ``"ome-zarr"``, ``"hdf5"``) from its suffix.

    Raises
    ------
    FormatError
        For a suffix that names no registered format (a ValueError too).
    """
    from z2t_dask.io.formats import format_from_path

    return format_from_path(path, default=None)


def find_stack(folder: str | os.PathLike) -> Path | None:
    """The frame stack of a sample folder, or None (see :func:`z2t_dask.io.formats.find_stack`).

    ``<folder name>.ome.tiff|.ome.zarr|.h5`` first (z2t's naming), else the only stack in the
    folder (e.g. the original tool's ``simulation_40.ome.tiff``).
    """
    from z2t_dask.io.formats import find_stack as find

    return find(folder)


def open_stack(path: str | os.PathLike) -> Any:
    """A frame stack as a lazy dask array ``(T, Y, X)`` (first image series of a TIFF).

    Every chunk opens the file itself, so the array also computes on a distributed cluster
    (TIFF and HDF5: chunks of about 16 MiB of whole frames; OME-Zarr: its own chunks).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If it is not a frame stack (suffix or content); a ValueError too.
    """
    from z2t_dask.io.formats import open_frames

    return open_frames(path)


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
        ``"ome-tiff"``, ``"ome-zarr"`` or ``"hdf5"`` (a registered format name).
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
        frames = open_stack(self.stack)
        if frames.ndim == 3 and self.attrs.get("channels_layout") == "split-view":  # one chip -> (T, C, Y, X)
            from z2t_dask.sample.channels import split_channels

            frames = split_channels(frames, self.attrs)
        return frames

    @cached_property
    def stack_info(self) -> Any:
        """What the stack declares (:class:`~z2t_dask.io.registry.StackInfo`: shape, dtype, pixel size,
        units, provenance), or None without a stack."""
        if self.stack is None:
            return None
        from z2t_dask.io.formats import read_stack_info

        return read_stack_info(self.stack, self.format)

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance as written with the stack (:meth:`z2t_dask.Sample.attrs`: ``seed``, ``config`` JSON,
        ``conventions``, ``zmap``, ``psf``, ``z2t_version``, ``pixel_size_nm``, ...; every format carries it).

        Without a stack, or for a stack of another tool, the root attributes of ``emitters.h5``
        (JSON decoded); empty when neither has any.
        """
        info = self.stack_info
        if info is not None and info.attrs:
            return dict(info.attrs)
        return dict(self.truth.attrs or {}) if self.truth is not None else {}

    @property
    def pixel_size_nm(self) -> tuple[float, float] | None:
        """Camera pixel size ``(x, y)`` in nm declared by the stack (None if it declares none)."""
        info = self.stack_info
        return None if info is None else info.pixel_size_nm

    @property
    def records(self) -> Records:
        """Per-(emitter, frame) truth: ``xyz`` (x, y px; z µm), ``phot``, ``frame_ix``, ``id``, ``inside``.

        The same type as ``simulate(...).records`` (columns by attribute or key). ``inside`` is
        computed from the image size when the file lacks it (original files).
        """
        if self.truth is None:
            raise FileNotFoundError(f"{self.path}: no emitters.h5")
        return Records.from_mapping(self.truth.records, self.image_shape)

    @property
    def emitters(self) -> EmitterTable:
        """Per-emitter truth: ``xyz`` (x, y px; z µm), ``intensity``, ``t0``, ``on_time``, ``id``.

        The same type as ``simulate(...).emitters`` (columns by attribute or key).
        """
        if self.truth is None:
            raise FileNotFoundError(f"{self.path}: no emitters.h5")
        return EmitterTable.from_mapping(self.truth.emitters)

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


def open_sample(folder: str | os.PathLike, *, storage_options: dict[str, Any] | None = None) -> SampleFolder:
    """Open a sample folder (``<name>.ome.tiff|.ome.zarr|.h5`` + ``emitters.h5``) lazily.

    ``folder`` may be a URL (``s3://bucket/run/sample_001``, ``memory://...``) of a complete folder
    written by z2t (:func:`z2t_dask.tools.remote.open_remote_sample`; ``storage_options`` for its
    fsspec file system).

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or holds neither a stack nor an ``emitters.h5``.
    """
    from z2t_dask.io.emitters_h5 import read_emitters_h5
    from z2t_dask.io.remote import is_url

    if is_url(folder):  # a store: tools/remote.py
        from z2t_dask.tools.remote import open_remote_sample

        return open_remote_sample(str(folder), storage_options)
    p = Path(folder)
    if not p.is_dir():
        raise FileNotFoundError(f"sample folder not found: {p}")
    stack = find_stack(p)
    truth = read_emitters_h5(p / "emitters.h5") if (p / "emitters.h5").is_file() else None
    if stack is None and truth is None:
        raise FileNotFoundError(f"{p}: neither a frame stack nor emitters.h5 (not a sample folder)")
    return SampleFolder(path=p, stack=stack, format=stack_format(stack) if stack else None, truth=truth)
