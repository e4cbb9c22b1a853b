"""OME-Zarr stacks straight on a store (``s3://``, ``gs://``, ``memory://``): resumable parallel writes, lazy reads.

The same layout and bytes as :mod:`z2t_dask.io.zarr` (group + array ``0``, NGFF metadata, the
``z2t`` provenance and write fingerprint), but written at its final keys: a store has no rename.
Every dask block is stored by whoever computes it (the workers of a distributed Client write their
own chunks through fsspec), then marked done with an empty object
``.z2t-progress/<block>``. The prefix holds ``.z2t-progress/_open`` from before the group is
created until every block is stored, so:

* fingerprint matches and no ``_open``: the image is complete (returned at once);
* fingerprint matches and ``_open``: an interrupted write, resumed (only unmarked blocks stored);
* anything else: the prefix is cleared and written afresh.

Whether the *sample folder* is complete is decided by its marker, written after the image
(:mod:`z2t_dask.io.remote`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io.ngff import ngff_attributes, pixel_size_from_ngff
from z2t_dask.io.registry import StackInfo
from z2t_dask.io.remote import RemoteFolder
from z2t_dask.io.zarr import (
    FINGERPRINT_ATTR,
    ZarrWriteReport,
    _compressors,
    _default_fingerprint,
    _jsonable,
    storage_chunks,
    store_blocks,
)
from z2t_dask.io.zarr_progress import PROGRESS_DIR, block_key, block_regions

__all__ = ["OPEN_MARK", "RemoteMarkedTarget", "read_ome_zarr_url", "remote_zarr_info", "write_ome_zarr_url"]

#: Object (under ``.z2t-progress/``) present while an image on a store is incomplete.
OPEN_MARK = "_open"


def _store(folder: RemoteFolder, read_only: bool) -> Any:
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(folder.url, storage_options=folder.storage_options or None, read_only=read_only)


class RemoteMarkedTarget:
    """``da.store`` target on a store: writes a block into the array ``0``, then its progress object.

    Pickles as the image's :class:`RemoteFolder` (URL + storage options), so each worker opens the
    store itself and writes the chunks it computed.
    """

    def __init__(self, image: RemoteFolder) -> None:
        self.image = image
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"image": self.image}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.image, self._array = state["image"], None

    def _open(self) -> Any:
        if self._array is None:
            import zarr

            arr = zarr.open_array(store=_store(self.image / "0", read_only=False), mode="r+")
            self._array = arr.with_config({"write_empty_chunks": True})
        return self._array

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        self._open()[region] = value
        (self.image / PROGRESS_DIR / block_key(region)).write_bytes(b"")


def _read_fingerprint(image: RemoteFolder) -> str | None:
    import zarr

    try:
        value = zarr.open_group(store=_store(image, read_only=True), mode="r").attrs.get(FINGERPRINT_ATTR)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not resumable
        return None
    return value if isinstance(value, str) else None


def _create(
    image: RemoteFolder,
    array: Any,
    *,
    zarr_format: Literal[2, 3],
    compression: str | None,
    attributes: dict[str, Any],
    fingerprint: str,
) -> None:
    """Clear the prefix, mark it open, create group and array (fingerprint written last)."""
    import zarr

    image.rmtree()
    (image / PROGRESS_DIR / OPEN_MARK).write_bytes(b"")
    group = zarr.open_group(store=_store(image, read_only=False), mode="a", zarr_format=zarr_format)
    extra: dict[str, Any] = (
        {"dimension_names": ("t", "y", "x")}
        if zarr_format == 3
        else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    )
    group.create_array(
        "0",
        shape=array.shape,
        dtype=array.dtype,
        chunks=storage_chunks(array.chunks, array.dtype.itemsize),
        compressors=_compressors(zarr_format, compression),
        fill_value=0,
        config={"write_empty_chunks": True},
        **extra,
    )
    group.attrs.update(attributes)
    group.attrs[FINGERPRINT_ATTR] = fingerprint


def write_ome_zarr_url(
    image: RemoteFolder,
    array: Any,
    *,
    pixel_size_nm: tuple[float, float],
    zarr_format: Literal[2, 3] = 3,
    compression: str | None = "zstd",
    attrs: Mapping[str, Any] | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
    scheduler: Any = "threads",
    between_batches: Callable[[], Any] | None = None,
) -> ZarrWriteReport:
    """Write a (T, Y, X) dask array as an OME-Zarr image at a URL, resumably (see the module docstring).

    Parameters
    ----------
    image
        The image folder on the store, conventionally ``.../<name>.ome.zarr``.
    array
        The stack (dask or NumPy); each dask block becomes whole zarr chunks.
    pixel_size_nm
        Camera pixel size (x, y) in nm.
    zarr_format, compression, attrs, name, fingerprint, scheduler, between_batches
        As :func:`z2t_dask.io.zarr.write_ome_zarr` (an image of another fingerprint is replaced).

    Returns
    -------
    ZarrWriteReport
        ``path`` is the image's URL; counts of written and skipped blocks.
    """
    import dask.array as da

    if not hasattr(array, "dask"):
        array = da.from_array(np.asarray(array), chunks=array.shape)
    if array.ndim != 3:
        raise ValueError(f"array must be (T, Y, X), got shape {array.shape}")
    _compressors(zarr_format, compression)  # validates before anything is created
    fp = fingerprint or _default_fingerprint(array, zarr_format, compression)
    regions = list(block_regions(array.chunks))
    progress = image / PROGRESS_DIR
    existing = image.listing()  # one LIST: an empty prefix needs no metadata reads
    same = bool(existing) and _read_fingerprint(image) == fp
    if same and f"{PROGRESS_DIR}/{OPEN_MARK}" not in existing:
        return ZarrWriteReport(image.url, len(regions), 0, len(regions))  # type: ignore[arg-type]
    done = {k.split("/", 1)[1] for k in existing if k.startswith(PROGRESS_DIR + "/")} if same else set()
    if not same:
        label = name or image.name.removesuffix(".ome.zarr").removesuffix(".zarr")
        attributes = {**ngff_attributes(zarr_format, pixel_size_nm, name=label), "z2t": _jsonable(dict(attrs or {}))}
        _create(image, array, zarr_format=zarr_format, compression=compression, attributes=attributes, fingerprint=fp)
    todo = [(idx, reg) for idx, reg in regions if block_key(reg) not in done]
    if todo:
        target: Any = RemoteMarkedTarget(image)
        store_blocks(array, todo, target, scheduler=scheduler, between_batches=between_batches)
    progress.rmtree(keep=(OPEN_MARK,))
    (progress / OPEN_MARK).unlink(missing_ok=True)  # last: from here on the image is complete
    return ZarrWriteReport(image.url, len(regions), len(todo), len(regions) - len(todo))  # type: ignore[arg-type]


def _open_array(image: RemoteFolder, level: str = "0") -> Any:
    import zarr

    try:
        return zarr.open_array(store=_store(image / level, read_only=True), mode="r")
    except Exception as exc:  # noqa: BLE001 - any failure to open is a layout error of the user's image
        raise FormatError(
            f"{image.url}: no zarr array '{level}' (not an OME-Zarr image written by z2t: {exc})"
        ) from None


def read_ome_zarr_url(image: RemoteFolder, level: str = "0") -> Any:
    """The image of an OME-Zarr on a store as a lazy dask array (T, Y, X); chunks are read when computed."""
    import dask.array as da

    frames = da.from_zarr(_open_array(image, level))
    if frames.ndim != 3:
        raise FormatError(f"{image.url}: expected a (T, Y, X) stack, got shape {frames.shape}")
    return frames


def remote_zarr_info(image: RemoteFolder) -> StackInfo:
    """Shape, dtype, pixel size, units and provenance of an OME-Zarr on a store (as ``ome_zarr_info``)."""
    import zarr

    arr = _open_array(image)
    attrs: dict[str, Any] = dict(zarr.open_group(store=_store(image, read_only=True), mode="r").attrs)
    prov: dict[str, Any] = attrs["z2t"] if isinstance(attrs.get("z2t"), dict) else {}
    units = prov.get("units")
    return StackInfo(
        format="ome-zarr",
        shape=tuple(int(v) for v in arr.shape),
        dtype=np.dtype(arr.dtype),
        pixel_size_nm=pixel_size_from_ngff(attrs),
        units=units if isinstance(units, str) else None,
        attrs=dict(prov),
        extra={"zarr_format": arr.metadata.zarr_format, "chunks": tuple(arr.chunks), "url": image.url},
    )
