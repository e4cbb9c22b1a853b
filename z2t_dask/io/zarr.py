"""OME-Zarr (NGFF) stacks: resumable parallel writer, reader, registry entry (NGFF metadata: :mod:`~z2t_dask.io.ngff`).

Layout of ``<name>.ome.zarr`` (one image, one resolution level)::

    zarr.json | .zgroup + .zattrs    group; NGFF "multiscales" (axes t, y, x; scale [1, y_um, x_um]),
                                     z2t provenance under "z2t", the write fingerprint
    0/                               array (T, Y, X), chunks (frames, rows, cols)

* ``zarr_format=3`` (default): zarr v3, NGFF 0.5 (``attributes.ome``), core ``ZstdCodec`` /
  ``GzipCodec`` so any v3 reader opens it, ``dimension_names = ["t", "y", "x"]``.
* ``zarr_format=2``: zarr v2, NGFF 0.4 (``.zattrs.multiscales``), ``numcodecs.Zstd`` / ``Zlib``,
  ``/`` chunk separator (required by NGFF 0.4).

Axes: ``t`` is of type time with scale 1 (one frame; frames carry no exposure time, so no unit),
``y`` and ``x`` are space in micrometer with the camera pixel size in the object plane.

Writing (the measured recipe): the arrays are created first (``create_array``), then the dask
blocks are stored with ``da.store(..., lock=False)``. Every dask block covers whole storage
chunks, so concurrent writers never touch the same chunk (no lock, no read-modify-write), and
with a distributed Client the workers write their own blocks in parallel. Never
``da.to_zarr(mode="w")`` (it locks every write) nor ``da.to_zarr(existing_array)`` (it rechunks).

Resume: the writer fills a fixed hidden folder ``.<name>.ome.zarr.partial`` and records each
stored block as an empty marker file in ``.z2t-progress/`` after its chunks are written; a rerun
with the same fingerprint stores only the blocks without a marker, then renames the folder to
its final name. The result equals an uninterrupted write (the blocks are deterministic).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any, Literal

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io.atomic import PARTIAL_STAMP, partial_sibling, resumable_dir
from z2t_dask.io.jsonutil import json_default
from z2t_dask.io.ngff import NGFF_VERSIONS, NGFFError, ngff_attributes, pixel_size_from_ngff, validate_ngff
from z2t_dask.io.registry import StackFormat, StackInfo, WriteRequest
from z2t_dask.io.tiff import ZSTD_LEVEL
from z2t_dask.io.zarr_progress import PROGRESS_DIR, MarkedTarget, block_key, block_regions

log = logging.getLogger("z2t_dask")

__all__ = [
    "FORMAT",
    "NGFF_VERSIONS",
    "PROGRESS_DIR",
    "ZARR_COMPRESSIONS",
    "NGFFError",
    "ZarrWriteReport",
    "iter_zarr_blocks",
    "ngff_attributes",
    "ome_zarr_info",
    "read_ome_zarr",
    "storage_chunks",
    "validate_ngff",
    "write_ome_zarr",
]

#: Accepted compression names.
ZARR_COMPRESSIONS = ("zstd", "zlib", "none")
#: Group attribute holding the fingerprint of the content.
FINGERPRINT_ATTR = "z2t_fingerprint"
#: Storage chunks are at most this large when several frames fit (bytes, raw).
STORAGE_CHUNK_BYTES = 4 * 2**20
#: Dask blocks stored per ``da.store`` call: the scheduler's state (graph, finished tasks) is
#: bounded by this, not by the length of the stack (memory must not grow with T).
STORE_BATCH_BLOCKS = 256


@dataclass
class ZarrWriteReport:
    """What :func:`write_ome_zarr` did.

    Attributes
    ----------
    path : pathlib.Path
        The final OME-Zarr folder.
    blocks_total : int
        Dask blocks of the stack.
    blocks_written : int
        Blocks computed and stored by this call.
    blocks_skipped : int
        Blocks already stored by an earlier, interrupted call (or all of them when the
        finished output already existed with the same fingerprint).
    """

    path: Path
    blocks_total: int
    blocks_written: int
    blocks_skipped: int


# --------------------------------------------------------------------------- writing


def _compressors(zarr_format: int, compression: str | None) -> Any:
    key = "none" if compression is None else str(compression).lower()
    if key not in ZARR_COMPRESSIONS:
        raise FormatError(f"output.zarr_compression must be one of {', '.join(ZARR_COMPRESSIONS)}, got {compression!r}")
    if key == "none":
        return None
    if zarr_format == 3:
        from zarr.codecs import GzipCodec, ZstdCodec

        return ZstdCodec(level=ZSTD_LEVEL) if key == "zstd" else GzipCodec(level=1)
    import numcodecs

    return numcodecs.Zstd(level=ZSTD_LEVEL) if key == "zstd" else numcodecs.Zlib(level=1)


def _common(sizes: tuple[int, ...]) -> int:
    """Largest size dividing every chunk boundary (all chunks but the last)."""
    inner = [int(s) for s in sizes[:-1]] or [int(sizes[0])]
    out = 0
    for s in inner:
        out = gcd(out, s)
    return max(out, 1)


def storage_chunks(
    chunks: tuple[tuple[int, ...], ...], itemsize: int, target_bytes: int = STORAGE_CHUNK_BYTES
) -> tuple[int, int, int]:
    """Zarr chunk shape for a dask array: every dask block covers whole storage chunks.

    Along y and x the storage chunk is the dask tile (or a common divisor of irregular
    tiles); along t it is the largest divisor of the dask chunk whose chunk stays within
    ``target_bytes`` (one frame per chunk for large frames, so viewers read single frames).
    """
    if len(chunks) == 4:  # (T, C, Y, X) of a multi-channel stack: one channel per storage chunk
        st, ty, tx = storage_chunks((chunks[0], chunks[2], chunks[3]), itemsize, target_bytes)
        return st, 1, ty, tx  # type: ignore[return-value]
    ct, ty, tx = (_common(c) for c in chunks)
    frame = ty * tx * int(itemsize)
    st = max([d for d in range(1, ct + 1) if ct % d == 0 and d * frame <= target_bytes] or [1])
    return st, ty, tx


def _read_fingerprint(path: Path) -> str | None:
    import zarr

    try:
        value = zarr.open_group(store=str(path), mode="r").attrs.get(FINGERPRINT_ATTR)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not resumable
        return None
    return value if isinstance(value, str) else None


def _default_fingerprint(array: Any, zarr_format: int, compression: str | None) -> str:
    from dask.base import tokenize

    return tokenize(
        getattr(array, "name", None) or tokenize(array),
        array.shape,
        array.chunks,
        str(array.dtype),
        zarr_format,
        compression,
    )


def _create(
    work: Path,
    array: Any,
    *,
    store_chunks: tuple[int, int, int],
    zarr_format: Literal[2, 3],
    compression: str | None,
    attributes: dict[str, Any],
    fingerprint: str,
) -> None:
    """Create the group and its array (fingerprint written last: a half-created group is redone)."""
    import shutil

    import zarr

    for child in work.iterdir():
        if child.name != PARTIAL_STAMP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    group = zarr.open_group(store=str(work), mode="a", zarr_format=zarr_format)
    extra: dict[str, Any] = (
        {"dimension_names": ("t", "c", "y", "x") if array.ndim == 4 else ("t", "y", "x")}
        if zarr_format == 3
        else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    )
    group.create_array(
        "0",
        shape=array.shape,
        dtype=array.dtype,
        chunks=store_chunks,
        compressors=_compressors(zarr_format, compression),
        fill_value=0,
        config={"write_empty_chunks": True},
        **extra,
    )
    group.attrs.update(attributes)
    group.attrs[FINGERPRINT_ATTR] = fingerprint


def write_ome_zarr(
    path: str | os.PathLike[str],
    array: Any,
    *,
    pixel_size_nm: tuple[float, float],
    zarr_format: Literal[2, 3] = 3,
    compression: str | None = "zstd",
    attrs: Mapping[str, Any] | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
    scheduler: Any = "threads",
    overwrite: bool = False,
    resume: bool = True,
    between_batches: Callable[[], Any] | None = None,
) -> ZarrWriteReport:
    """Write a (T, Y, X) dask array as an OME-Zarr image, in parallel, resumably and atomically.

    Parameters
    ----------
    path : path-like
        Output folder, conventionally ``<name>.ome.zarr``.
    array : dask.array.Array or numpy.ndarray
        The stack; each dask block becomes one or more whole zarr chunks.
    pixel_size_nm : (float, float)
        Camera pixel size (x, y) in nm.
    zarr_format : {3, 2}
        Zarr v3 with NGFF 0.5 (default) or zarr v2 with NGFF 0.4.
    compression : {"zstd", "zlib", "none"}
        Zstd level 1 (default), zlib/gzip level 1, or uncompressed.
    attrs : mapping, optional
        Provenance stored under the group attribute ``"z2t"`` (JSON-serialisable).
    name : str, optional
        Image name in the NGFF metadata (default: the folder name without ``.ome.zarr``).
    fingerprint : str, optional
        Identity of the content, used to resume an interrupted write. Default: a token of the
        dask array's name (deterministic for z2t stacks), shape, chunks, dtype and codec.
    scheduler : str, callable or None
        Dask scheduler for ``da.store`` (``None`` = the active distributed Client: the
        workers then write their blocks in parallel).
    overwrite : bool
        Replace an existing output with a different fingerprint.
    resume : bool
        Continue an interrupted write with the same fingerprint, and return at once when the
        finished output already has it. False starts afresh.
    between_batches : callable, optional
        Called after each ``da.store`` of at most :data:`STORE_BATCH_BLOCKS` blocks (e.g.
        :func:`z2t_dask.engine.allocator.release_free_memory`).

    Returns
    -------
    ZarrWriteReport
        Path and counts of written / skipped blocks.
    """
    import dask.array as da

    final = Path(path)
    if not hasattr(array, "dask"):
        array = da.from_array(np.asarray(array), chunks=array.shape)
    if array.ndim not in (3, 4):
        raise ValueError(f"array must be (T, Y, X) or (T, C, Y, X), got shape {array.shape}")
    store_chunks = storage_chunks(array.chunks, array.dtype.itemsize)
    compressors = _compressors(zarr_format, compression)  # validates before anything is created
    del compressors
    fp = fingerprint or _default_fingerprint(array, zarr_format, compression)
    regions = list(block_regions(array.chunks))
    if resume and (final.exists() and _read_fingerprint(final) == fp):
        return ZarrWriteReport(final, len(regions), 0, len(regions))
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists with other content (pass overwrite=True to replace it)")
    if not resume:
        import shutil

        shutil.rmtree(partial_sibling(final), ignore_errors=True)
    label = name or final.name.removesuffix(".ome.zarr").removesuffix(".zarr")
    attributes = {**ngff_attributes(zarr_format, pixel_size_nm, name=label), "z2t": _jsonable(dict(attrs or {}))}
    if array.ndim == 4:  # axes t, c, y, x and the NGFF omero channels (z2t_dask.io.channels)
        from z2t_dask.io.channels import channel_table_from_attrs, ngff_with_channels

        table = channel_table_from_attrs(attrs)
        attributes = ngff_with_channels(attributes, table, int(array.shape[1]), array.dtype)
    with resumable_dir(final, fingerprint=fp, overwrite=overwrite) as work:
        progress = work / PROGRESS_DIR
        if _read_fingerprint(work) != fp:
            _create(
                work,
                array,
                store_chunks=store_chunks,
                zarr_format=zarr_format,
                compression=compression,
                attributes=attributes,
                fingerprint=fp,
            )
        progress.mkdir(exist_ok=True)
        done = set(os.listdir(progress))
        todo = [(idx, reg) for idx, reg in regions if block_key(reg) not in done]
        if todo:
            target: Any = MarkedTarget(str(work / "0"), str(progress))  # a da.store target (__setitem__)
            store_blocks(array, todo, target, scheduler=scheduler, between_batches=between_batches)
        import shutil

        shutil.rmtree(progress)
    return ZarrWriteReport(final, len(regions), len(todo), len(regions) - len(todo))


def store_blocks(
    array: Any, todo: list, target: Any, *, scheduler: Any = None, between_batches: Callable[[], None] | None = None
) -> None:
    """Store the blocks ``todo`` (``(index, region)`` pairs) of dask ``array`` into ``target`` in bounded batches.

    ``target`` is a ``da.store`` target (``__setitem__``) that marks each block done; ``between_batches`` runs
    after every batch (progress, interrupts).
    """
    import dask.array as da

    from z2t_dask.engine.streaming import dask_get

    get = dask_get(scheduler)  # a local scheduler's name without importing distributed
    sources, targets = _sources(array, todo)
    for group in store_batches(sources):
        da.store(
            [sources[i] for i in group],
            [target] * len(group),
            regions=[targets[i] for i in group],
            lock=False,
            compute=True,
            scheduler=get,
        )
        if between_batches is not None:
            between_batches()


def store_batches(sources: list, limit: int | None = None) -> Iterator[list[int]]:
    """Indices of ``sources`` in consecutive groups of at most ``limit`` (default
    :data:`STORE_BATCH_BLOCKS`) dask blocks; a source larger than that forms a group alone."""
    limit = STORE_BATCH_BLOCKS if limit is None else limit
    group: list[int] = []
    blocks = 0
    for i, source in enumerate(sources):
        n = math.prod(source.numblocks)
        if group and blocks + n > limit:
            yield group
            group, blocks = [], 0
        group.append(i)
        blocks += n
    if group:
        yield group


def _sources(
    array: Any, todo: list[tuple[tuple[int, ...], tuple[slice, ...]]], limit: int | None = None
) -> tuple[list, list]:
    """Dask sources and regions for the blocks still to store: runs of complete frame-chunk rows
    (at most ``limit`` blocks each) as one slice, the blocks of partly stored rows one by one."""
    by_row: dict[int, list] = {}
    for idx, reg in todo:
        by_row.setdefault(idx[0], []).append((idx, reg))
    per_row = math.prod(len(c) for c in array.chunks[1:])
    max_rows = max(1, (STORE_BATCH_BLOCKS if limit is None else limit) // per_row)
    starts = np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(int)
    sources, regions = [], []
    run: list[int] = []

    def flush() -> None:
        if run:
            t0, t1 = int(starts[run[0]]), int(starts[run[-1] + 1])
            sources.append(array[t0:t1])
            regions.append((slice(t0, t1), *(slice(0, s) for s in array.shape[1:])))
            run.clear()

    for row in sorted(by_row):
        blocks = by_row[row]
        if len(blocks) == per_row and (not run or (run[-1] == row - 1 and len(run) < max_rows)):
            run.append(row)
            continue
        flush()
        if len(blocks) == per_row:
            run.append(row)
            continue
        for idx, reg in blocks:
            sources.append(array.blocks[idx])
            regions.append(reg)
    flush()
    return sources, regions


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=json_default))


# --------------------------------------------------------------------------- reading


def _open_array(path: str | os.PathLike[str], level: str = "0") -> Any:
    """The zarr array of an image level (FormatError, naming the folder, if there is none)."""
    import zarr

    try:
        return zarr.open_array(store=str(Path(path) / level), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is a layout error of the user's folder
        raise FormatError(f"{path}: no zarr array '{level}' (not an OME-Zarr image written by z2t: {exc})") from None


def read_ome_zarr(path: str | os.PathLike[str], level: str = "0") -> Any:
    """The image of an OME-Zarr folder as a lazy dask array (T, Y, X) (``da.from_zarr``)."""
    import dask.array as da

    return da.from_zarr(_open_array(path, level))


def iter_zarr_blocks(path: str | os.PathLike[str], block_frames: int = 16) -> Iterator[np.ndarray]:
    """Yield the frames of an OME-Zarr image in order, ``block_frames`` at a time (bounded memory)."""
    arr = _open_array(path)
    for t0 in range(0, arr.shape[0], max(1, int(block_frames))):
        yield arr[t0 : t0 + block_frames]


def _open_frames(path: str | os.PathLike[str]) -> Any:
    frames = read_ome_zarr(path)
    if frames.ndim not in (3, 4):
        raise FormatError(f"{path}: expected a (T, Y, X) or (T, C, Y, X) stack, got shape {frames.shape}")
    return frames


def ome_zarr_info(path: str | os.PathLike[str]) -> StackInfo:
    """Shape, dtype, pixel size (NGFF scale), units and provenance (group attribute ``z2t``) of an OME-Zarr."""
    import zarr

    arr = _open_array(path)
    attrs: dict[str, Any] = dict(zarr.open_group(store=str(path), mode="r").attrs)
    prov: dict[str, Any] = attrs["z2t"] if isinstance(attrs.get("z2t"), dict) else {}
    units = prov.get("units")
    return StackInfo(
        format="ome-zarr",
        shape=tuple(int(v) for v in arr.shape),
        dtype=np.dtype(arr.dtype),
        pixel_size_nm=pixel_size_from_ngff(attrs),
        units=units if isinstance(units, str) else None,
        attrs=dict(prov),
        extra={"zarr_format": arr.metadata.zarr_format, "chunks": tuple(arr.chunks)},
    )


def _store(request: WriteRequest) -> Path:
    """Registry writer: blocks stored in parallel (by the workers with a Client), resumably.

    Options: ``zarr_format`` (3), ``fingerprint`` (identity of the content, to resume), ``overwrite``
    (True: replace an output of other content, as the single-file formats do), ``resume`` (True),
    ``name`` (NGFF image name). ``prefetch`` is unused (blocks are stored in any order).
    """
    options = dict(request.options)
    report = write_ome_zarr(
        request.path,
        request.array(),
        pixel_size_nm=request.pixel_size_nm,
        zarr_format=options.pop("zarr_format", 3),
        compression=request.compression,
        attrs={**request.attrs, "units": request.units},
        fingerprint=options.pop("fingerprint", None),
        scheduler=request.scheduler,
        overwrite=options.pop("overwrite", True),
        resume=options.pop("resume", True),
        name=options.pop("name", None),
        between_batches=request.release,
        **options,
    )
    log.info("%s: %d blocks written, %d already there", report.path, report.blocks_written, report.blocks_skipped)
    return report.path


def _exists(path: str | os.PathLike[str]) -> bool:
    return Path(path).exists()


#: The registry entry of OME-Zarr stacks (``<name>.ome.zarr/``).
FORMAT = StackFormat(
    name="ome-zarr",
    suffix=".ome.zarr",
    suffixes=(".ome.zarr", ".zarr"),
    aliases=("zarr", "ome.zarr"),
    compressions=ZARR_COMPRESSIONS,
    default_compression="zstd",
    store=_store,
    open=_open_frames,
    info=ome_zarr_info,
    iter_blocks=iter_zarr_blocks,
    probe=_exists,
    resumable=True,
    is_dir=True,
)
