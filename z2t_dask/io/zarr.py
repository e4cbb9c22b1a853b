"""OME-Zarr (NGFF) stacks: resumable parallel writer, NGFF metadata and its validation, reader.

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

import math
import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from z2t_dask.errors import NGFFError
from z2t_dask.io.atomic import PARTIAL_STAMP, partial_sibling, resumable_dir
from z2t_dask.io.jsonutil import json_default
from z2t_dask.io.tiff import ZSTD_LEVEL

__all__ = ["NGFF_VERSIONS", "NGFFError", "PROGRESS_DIR", "ZARR_COMPRESSIONS", "ZarrWriteReport",
           "iter_zarr_blocks", "ngff_attributes", "read_ome_zarr", "storage_chunks", "validate_ngff",
           "write_ome_zarr"]

#: NGFF version written for each zarr format.
NGFF_VERSIONS = {2: "0.4", 3: "0.5"}
#: Accepted compression names.
ZARR_COMPRESSIONS = ("zstd", "zlib", "none")
#: Folder (inside the partial output) of per-block completion markers.
PROGRESS_DIR = ".z2t-progress"
#: Group attribute holding the fingerprint of the content.
FINGERPRINT_ATTR = "z2t_fingerprint"
#: Storage chunks are at most this large when several frames fit (bytes, raw).
STORAGE_CHUNK_BYTES = 4 * 2**20
#: Dask blocks stored per ``da.store`` call: the scheduler's state (graph, finished tasks) is
#: bounded by this, not by the length of the stack (memory must not grow with T).
STORE_BATCH_BLOCKS = 256

_SPACE_UNITS = frozenset(
    "angstrom attometer centimeter decimeter exameter femtometer foot gigameter hectometer inch kilometer "
    "megameter meter micrometer mile millimeter nanometer parsec petameter picometer terameter yard "
    "yoctometer yottameter zeptometer zettameter".split())
_TIME_UNITS = frozenset(
    "attosecond centisecond day decisecond exasecond femtosecond gigasecond hectosecond hour kilosecond "
    "megasecond microsecond millisecond minute nanosecond petasecond picosecond second terasecond "
    "yoctosecond yottasecond zeptosecond zettasecond".split())


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


# --------------------------------------------------------------------------- metadata


def ngff_attributes(zarr_format: int, pixel_size_nm: tuple[float, float], *, name: str = "frames",
                    path: str = "0") -> dict[str, Any]:
    """Group attributes declaring one ``(t, y, x)`` image in NGFF 0.4 (zarr v2) or 0.5 (zarr v3).

    Parameters
    ----------
    zarr_format : {2, 3}
        Zarr format of the group.
    pixel_size_nm : (float, float)
        Camera pixel size (x, y) in nm (object space); stored as the y/x scale in micrometer.
    name : str
        Name of the multiscales image.
    path : str
        Array path of the (single) resolution level.
    """
    px_x, px_y = (float(v) for v in pixel_size_nm)
    if not all(math.isfinite(v) and v > 0 for v in (px_x, px_y)):
        raise ValueError(f"pixel_size_nm must be two positive sizes (x_nm, y_nm), got {pixel_size_nm!r}")
    multiscale = {
        "name": str(name),
        "axes": [{"name": "t", "type": "time"},
                 {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": path, "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, px_y / 1000.0, px_x / 1000.0]}]}],
    }
    if zarr_format == 2:
        return {"multiscales": [{"version": NGFF_VERSIONS[2], **multiscale}]}
    if zarr_format == 3:
        return {"ome": {"version": NGFF_VERSIONS[3], "multiscales": [multiscale]}}
    raise ValueError(f"output.zarr_format must be 2 or 3, got {zarr_format!r}")


def _check_axes(axes: Any, where: str, problems: list[str]) -> int:
    """Check NGFF axes; return their number (0 if unusable)."""
    if not isinstance(axes, list) or not 2 <= len(axes) <= 5:
        problems.append(f"{where}.axes must be a list of 2 to 5 axes, got {axes!r}")
        return 0
    names, kinds = [], []
    for i, ax in enumerate(axes):
        if not isinstance(ax, Mapping) or not isinstance(ax.get("name"), str):
            problems.append(f"{where}.axes[{i}] must be an object with a string 'name', got {ax!r}")
            return 0
        names.append(ax["name"])
        kind = ax.get("type")
        kinds.append(kind)
        unit = ax.get("unit")
        if kind == "space" and unit is not None and unit not in _SPACE_UNITS:
            problems.append(f"{where}.axes[{i}] ({ax['name']}): space unit {unit!r} is not an NGFF unit")
        if kind == "time" and unit is not None and unit not in _TIME_UNITS:
            problems.append(f"{where}.axes[{i}] ({ax['name']}): time unit {unit!r} is not an NGFF unit")
    if len(set(names)) != len(names):
        problems.append(f"{where}.axes names must be unique, got {names}")
    n_space, n_time, n_chan = kinds.count("space"), kinds.count("time"), kinds.count("channel")
    if n_space not in (2, 3):
        problems.append(f"{where}.axes must have 2 or 3 axes of type 'space', got {n_space}")
    if n_time > 1 or n_chan > 1:
        problems.append(f"{where}.axes may have at most one 'time' and one 'channel' axis")
    rank = {"time": 0, "channel": 1, "space": 3}
    order = [rank.get(k, 2) for k in kinds]
    if order != sorted(order):
        problems.append(f"{where}.axes must be ordered time, channel, (custom), space; got types {kinds}")
    return len(axes)


def _check_transforms(transforms: Any, ndim: int, where: str, problems: list[str]) -> list[float] | None:
    """Check an NGFF coordinateTransformations list (one scale, then an optional translation)."""
    if not isinstance(transforms, list) or not 1 <= len(transforms) <= 2:
        problems.append(f"{where}.coordinateTransformations must list a scale and an optional translation")
        return None
    kinds = [t.get("type") if isinstance(t, Mapping) else None for t in transforms]
    if kinds[0] != "scale" or (len(kinds) == 2 and kinds[1] != "translation"):
        problems.append(f"{where}.coordinateTransformations must be [scale] or [scale, translation], got {kinds}")
        return None
    scale = None
    for t in transforms:
        key = t["type"]
        values = t.get(key)
        if not isinstance(values, list) or len(values) != ndim or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            problems.append(f"{where} {key} must be {ndim} finite numbers, got {values!r}")
            return None
        if key == "scale":
            if not all(v > 0 for v in values):
                problems.append(f"{where} scale must be positive, got {values}")
            scale = [float(v) for v in values]
    return scale


def validate_ngff(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that a folder is an NGFF image (0.4 for zarr v2, 0.5 for zarr v3); return its multiscales.

    Checks the rules that readers such as napari rely on: the version matches the zarr format;
    ``multiscales`` is a non-empty list; axes are 2-5 uniquely named axes with 2-3 of type
    space, at most one time and one channel axis, in time-channel-space order, with NGFF units;
    every dataset path is an array of the axes' dimensionality whose first transformation is a
    positive scale of that length (optionally followed by a translation), levels ordered from
    the finest; zarr v3 ``dimension_names`` (when present) equal the axis names.

    Returns
    -------
    dict
        The first multiscales entry (with its ``version``).

    Raises
    ------
    NGFFError
        Listing every problem found (the message names the file and the field).
    """
    import zarr

    root = Path(path)
    try:
        group = zarr.open_group(store=str(root), mode="r")
    except Exception as exc:  # noqa: BLE001 - report any failure to open as a layout error
        raise NGFFError(f"{root}: not a zarr group ({exc})") from None
    zf = group.metadata.zarr_format
    attrs = dict(group.attrs)
    problems: list[str] = []
    if zf == 3:
        ome = attrs.get("ome")
        if not isinstance(ome, Mapping):
            raise NGFFError(f"{root}: zarr v3 group without an 'ome' attribute (NGFF 0.5)")
        version = ome.get("version")
        multiscales = ome.get("multiscales")
        if version != NGFF_VERSIONS[3]:
            problems.append(f"ome.version must be {NGFF_VERSIONS[3]!r} for zarr v3, got {version!r}")
    else:
        multiscales = attrs.get("multiscales")
        version = None
    if not isinstance(multiscales, list) or not multiscales:
        raise NGFFError(f"{root}: 'multiscales' must be a non-empty list, got {multiscales!r}")
    for m, ms in enumerate(multiscales):
        where = f"multiscales[{m}]"
        if not isinstance(ms, Mapping):
            problems.append(f"{where} must be an object")
            continue
        if zf == 2 and ms.get("version") != NGFF_VERSIONS[2]:
            problems.append(f"{where}.version must be {NGFF_VERSIONS[2]!r} for zarr v2, got {ms.get('version')!r}")
        ndim = _check_axes(ms.get("axes"), where, problems)
        datasets = ms.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            problems.append(f"{where}.datasets must be a non-empty list")
            continue
        previous = None
        for d, ds in enumerate(datasets):
            dwhere = f"{where}.datasets[{d}]"
            p = ds.get("path") if isinstance(ds, Mapping) else None
            if not isinstance(p, str):
                problems.append(f"{dwhere}.path must be a string")
                continue
            try:
                arr = zarr.open_array(store=str(root / p), mode="r")
            except Exception:  # noqa: BLE001
                problems.append(f"{dwhere}.path {p!r} is not an array in {root}")
                continue
            if ndim and arr.ndim != ndim:
                problems.append(f"{dwhere} array {p!r} has {arr.ndim} dimensions but there are {ndim} axes")
            names = getattr(arr.metadata, "dimension_names", None)
            axes_names = [a["name"] for a in ms["axes"]] if ndim else None
            if names is not None and axes_names is not None and list(names) != axes_names:
                problems.append(f"{dwhere} dimension_names {list(names)} differ from the axes {axes_names}")
            scale = _check_transforms(ds.get("coordinateTransformations"), ndim or arr.ndim, dwhere, problems)
            if scale is not None and previous is not None and any(a > b for a, b in zip(previous, scale)):
                problems.append(f"{dwhere} scale {scale} is finer than the previous level {previous}")
            previous = scale if scale is not None else previous
        if "coordinateTransformations" in ms:
            _check_transforms(ms["coordinateTransformations"], ndim, f"{where}", problems)
    if problems:
        raise NGFFError(f"{root}: not a valid NGFF image:\n  " + "\n  ".join(problems))
    first = dict(multiscales[0])
    first.setdefault("version", version)
    return first


# --------------------------------------------------------------------------- writing


def _compressors(zarr_format: int, compression: str | None) -> Any:
    key = "none" if compression is None else str(compression).lower()
    if key not in ZARR_COMPRESSIONS:
        raise ValueError(f"output.zarr_compression must be one of {', '.join(ZARR_COMPRESSIONS)}, got {compression!r}")
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


def storage_chunks(chunks: tuple[tuple[int, ...], ...], itemsize: int,
                   target_bytes: int = STORAGE_CHUNK_BYTES) -> tuple[int, int, int]:
    """Zarr chunk shape for a dask array: every dask block covers whole storage chunks.

    Along y and x the storage chunk is the dask tile (or a common divisor of irregular
    tiles); along t it is the largest divisor of the dask chunk whose chunk stays within
    ``target_bytes`` (one frame per chunk for large frames, so viewers read single frames).
    """
    ct, ty, tx = (_common(c) for c in chunks)
    frame = ty * tx * int(itemsize)
    st = max([d for d in range(1, ct + 1) if ct % d == 0 and d * frame <= target_bytes] or [1])
    return st, ty, tx


def block_key(region: tuple[slice, ...]) -> str:
    """Marker name of the block at ``region`` (absolute slices)."""
    return "_".join(f"{s.start}-{s.stop}" for s in region)


def _block_regions(chunks: tuple[tuple[int, ...], ...]) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(block index, absolute region) of every dask block, in C order."""
    starts = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    for idx in np.ndindex(*(len(c) for c in chunks)):
        yield idx, tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))


class _MarkedTarget:
    """``da.store`` target: writes a block into the zarr array, then marks the block done.

    Picklable (holds paths only; each process opens the array once), so distributed workers
    write their own blocks.
    """

    def __init__(self, array_path: str, progress_path: str) -> None:
        self.array_path = array_path
        self.progress_path = progress_path
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"array_path": self.array_path, "progress_path": self.progress_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._array = None

    def _open(self) -> Any:
        if self._array is None:
            import zarr

            self._array = zarr.open_array(store=self.array_path, mode="r+").with_config({"write_empty_chunks": True})
        return self._array

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        self._open()[region] = value
        with open(os.path.join(self.progress_path, block_key(region)), "w"):
            pass


def _read_fingerprint(path: Path) -> str | None:
    import zarr

    try:
        return zarr.open_group(store=str(path), mode="r").attrs.get(FINGERPRINT_ATTR)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not resumable
        return None


def _default_fingerprint(array: Any, zarr_format: int, compression: str | None) -> str:
    from dask.base import tokenize

    return tokenize(getattr(array, "name", None) or tokenize(array), array.shape, array.chunks, str(array.dtype),
                    zarr_format, compression)


def _create(work: Path, array: Any, *, store_chunks: tuple[int, int, int], zarr_format: int,
            compression: str | None, attributes: dict[str, Any], fingerprint: str) -> None:
    """Create the group and its array (fingerprint written last: a half-created group is redone)."""
    import shutil

    import zarr

    for child in work.iterdir():
        if child.name != PARTIAL_STAMP:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    group = zarr.open_group(store=str(work), mode="a", zarr_format=zarr_format)
    extra: dict[str, Any] = ({"dimension_names": ("t", "y", "x")} if zarr_format == 3
                             else {"chunk_key_encoding": {"name": "v2", "separator": "/"}})
    group.create_array("0", shape=array.shape, dtype=array.dtype, chunks=store_chunks,
                       compressors=_compressors(zarr_format, compression), fill_value=0,
                       config={"write_empty_chunks": True}, **extra)
    group.attrs.update(attributes)
    group.attrs[FINGERPRINT_ATTR] = fingerprint


def write_ome_zarr(path: str | os.PathLike[str], array: Any, *, pixel_size_nm: tuple[float, float],
                   zarr_format: int = 3, compression: str | None = "zstd", attrs: Mapping[str, Any] | None = None,
                   name: str | None = None, fingerprint: str | None = None, scheduler: Any = "threads",
                   overwrite: bool = False, resume: bool = True,
                   between_batches: Callable[[], Any] | None = None) -> ZarrWriteReport:
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
    if array.ndim != 3:
        raise ValueError(f"array must be (T, Y, X), got shape {array.shape}")
    store_chunks = storage_chunks(array.chunks, array.dtype.itemsize)
    compressors = _compressors(zarr_format, compression)  # validates before anything is created
    del compressors
    fp = fingerprint or _default_fingerprint(array, zarr_format, compression)
    regions = list(_block_regions(array.chunks))
    if resume and (final.exists() and _read_fingerprint(final) == fp):
        return ZarrWriteReport(final, len(regions), 0, len(regions))
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists with other content (pass overwrite=True to replace it)")
    if not resume:
        import shutil

        shutil.rmtree(partial_sibling(final), ignore_errors=True)
    label = name or final.name.removesuffix(".ome.zarr").removesuffix(".zarr")
    attributes = {**ngff_attributes(zarr_format, pixel_size_nm, name=label),
                  "z2t": _jsonable(dict(attrs or {}))}
    with resumable_dir(final, fingerprint=fp, overwrite=overwrite) as work:
        progress = work / PROGRESS_DIR
        if _read_fingerprint(work) != fp:
            _create(work, array, store_chunks=store_chunks, zarr_format=zarr_format, compression=compression,
                    attributes=attributes, fingerprint=fp)
        progress.mkdir(exist_ok=True)
        done = set(os.listdir(progress))
        todo = [(idx, reg) for idx, reg in regions if block_key(reg) not in done]
        if todo:
            sources, targets = _sources(array, todo)
            target = _MarkedTarget(str(work / "0"), str(progress))
            for group in _store_batches(sources):
                da.store([sources[i] for i in group], [target] * len(group), regions=[targets[i] for i in group],
                         lock=False, compute=True, scheduler=scheduler)
                if between_batches is not None:
                    between_batches()
        import shutil

        shutil.rmtree(progress)
    return ZarrWriteReport(final, len(regions), len(todo), len(regions) - len(todo))


def _store_batches(sources: list, limit: int | None = None) -> Iterator[list[int]]:
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


def _sources(array: Any, todo: list[tuple[tuple[int, ...], tuple[slice, ...]]],
             limit: int | None = None) -> tuple[list, list]:
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
            regions.append((slice(t0, t1), slice(0, array.shape[1]), slice(0, array.shape[2])))
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


def read_ome_zarr(path: str | os.PathLike[str], level: str = "0") -> Any:
    """The image of an OME-Zarr folder as a lazy dask array (T, Y, X) (``da.from_zarr``)."""
    import dask.array as da
    import zarr

    arr = zarr.open_array(store=str(Path(path) / level), mode="r")
    return da.from_zarr(arr)


def iter_zarr_blocks(path: str | os.PathLike[str], block_frames: int = 16) -> Iterator[np.ndarray]:
    """Yield the frames of an OME-Zarr image in order, ``block_frames`` at a time (bounded memory)."""
    import zarr

    arr = zarr.open_array(store=str(Path(path) / "0"), mode="r")
    for t0 in range(0, arr.shape[0], max(1, int(block_frames))):
        yield arr[t0 : t0 + block_frames]
