"""OME-TIFF stacks: streaming writer (one series T×Y×X, one page per frame), readers, registry entry.

Frames arrive from an iterator (e.g. :func:`z2t_dask.engine.streaming.iter_frames`) and are
written page by page with tifffile, so memory stays bounded; the file appears under its
final name only when complete (:func:`z2t_dask.io.atomic.atomic_path`). Compressed pages are
encoded before tifffile sees them (:mod:`z2t_dask.io.tiff_pages`; full-chip frames in a small
thread pool, in parallel with rendering), small files are assembled in memory and written at once,
larger ones through a large buffer; the bytes are those of tifffile's own page-by-page writing.

Provenance (the same as OME-Zarr and HDF5 stacks carry: :meth:`z2t_dask.Sample.attrs` plus
``units``) is stored as JSON in an OME ``CommentAnnotation`` (namespace ``z2t_dask/provenance``) and
read back by :func:`read_ome_tiff_metadata` / :data:`FORMAT` ``.info``. The file is reproducible:
no timestamp, and the OME ``UUID`` is derived from the metadata (same seed and config, same bytes).

Compression choices (measured on noisy 16-bit frames, see the project's dask recipes):
``"zstd"`` level 1 (default; on noisy EMCCD frames 1.9× smaller at ~10 ms per 1200² frame, where
level 3 gains 6 % for 2.6× the time; ~4 ms with the small hash table given to integer frames, see
:mod:`z2t_dask.io.zstd_contexts`), ``"zlib"`` level 1 (deflate, readable
without imagecodecs-zstd, e.g. by older ImageJ), or none. Never a horizontal predictor
(it enlarges shot-noise frames). LZW is not offered: it *enlarges* noisy float32 data
(the original's 40×40×200 float movie grew from 1.28 to 1.47 MB) and is slower than zstd
for integers.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.blocks import lazy_stack
from z2t_dask.io.jsonutil import json_default
from z2t_dask.io.registry import StackFormat, StackInfo, WriteRequest, pixel_size_pair
from z2t_dask.io.space import check_output_space
from z2t_dask.io.tiff_pages import BlockEncoder, FrameFeed, close_quietly, page_data, strip_rows
from z2t_dask.io.tiff_pages import encoder_threads as encoder_threads_for

__all__ = [
    "BIGTIFF_THRESHOLD",
    "COMPRESSIONS",
    "FORMAT",
    "PROVENANCE_NAMESPACE",
    "iter_ome_tiff_blocks",
    "ome_tiff_info",
    "open_ome_tiff",
    "read_ome_tiff",
    "read_ome_tiff_metadata",
    "resolution_per_cm",
    "write_ome_tiff",
]

#: Raw image size (bytes) above which BigTIFF is used when ``bigtiff=None``. Classic TIFF
#: offsets are 32-bit (4 GiB); some readers treat them as signed, hence ~2 GiB minus room
#: for metadata and incompressible data.
BIGTIFF_THRESHOLD = 2**31 - 2**26

#: Zstandard level of ``"zstd"`` (shared with the OME-Zarr writer). Measured on a 1200x1200 EMCCD
#: frame: level 1 10 ms, ratio 1.87; level 3 26 ms, 1.99; level 5 42 ms, 1.99. The OME-TIFF writer adds
#: :data:`~z2t_dask.io.zstd_contexts.ZSTD_INTEGER_PARAMS` for camera frames in ADU (~4 ms, ratio 1.86).
ZSTD_LEVEL = 1

#: Files whose raw image size is at most this (bytes) are assembled in memory and written to their
#: temporary in one ``write`` (a 40x40x200 float32 training movie: 1.3 MB): tifffile's page-by-page
#: seek/tell/write calls each cost a system call (and a GIL hand-off to the render threads) on a file.
SMALL_FILE_BYTES = 8 * 2**20

#: Write buffer (bytes) of larger files: tifffile writes each strip (~130 KB compressed of a 1200x1200 uint16
#: page) with its own call; buffered, a page costs ~4 system calls instead of ~15 (each hands the GIL over).
WRITE_BUFFER_BYTES = 4 * 2**20

#: Compressed pages are encoded here (:mod:`z2t_dask.io.tiff_pages`: large frames where their blocks are
#: rendered or in a thread pool, in parallel with rendering) and handed to tifffile as encoded strips:
#: tifffile's own bytes, except zstd strips of unsigned integers (the same pixels; see
#: :data:`~z2t_dask.io.zstd_contexts.ZSTD_INTEGER_PARAMS`). False: tifffile encodes (the tests' reference).
PRE_ENCODE = True

#: Accepted compression names -> (tifffile codec, codec arguments).
COMPRESSIONS: dict[str | None, tuple[str | None, dict[str, int] | None]] = {
    None: (None, None),
    "none": (None, None),
    "zstd": ("zstd", {"level": ZSTD_LEVEL}),
    "zlib": ("zlib", {"level": 1}),
}

#: Namespace of the OME CommentAnnotation holding the provenance JSON.
PROVENANCE_NAMESPACE = "z2t_dask/provenance"

_OME_DTYPES = frozenset(
    np.dtype(t) for t in ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
)


def resolution_per_cm(pixel_size_nm_x: float, pixel_size_nm_y: float) -> tuple[float, float]:
    """TIFF ``XResolution``, ``YResolution`` of a pixel size: pixels per centimetre (``1e7 / nm``).

    Written with ``ResolutionUnit`` = 3 (centimetre), the unit of baseline TIFF that ImageJ's own
    TIFF reader (and PIL, GDAL, ...) understand; ImageJ shows centimetre pixels this small in µm.
    Anisotropic pixels get different X and Y values. tifffile stores each as a 32-bit rational
    (relative error below 1e-9 for camera pixels of 1 nm to 100 µm).
    """
    return 1e7 / float(pixel_size_nm_x), 1e7 / float(pixel_size_nm_y)


def _compression(compression: str | None, dtype: np.dtype) -> tuple[str | None, dict[str, int] | None]:
    key = compression.lower() if isinstance(compression, str) else compression
    if key == "lzw":
        kind = "float" if dtype.kind == "f" else "integer"
        raise FormatError(
            f"compression 'lzw' is not offered ({kind} data): LZW enlarges noisy float frames "
            "and is slower than zstd; use 'zstd' (default), 'zlib' or None"
        )
    if key not in COMPRESSIONS:
        raise FormatError(f"compression must be one of None, 'none', 'zstd', 'zlib', got {compression!r}")
    return COMPRESSIONS[key]


def _shape3(shape: Any) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be (T, Y, X), got {shape!r}") from None
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"shape must be (T, Y, X) with positive sizes, got {shape!r}")
    return out[0], out[1], out[2]


def _content_uuid(*parts: Any) -> str:
    """An OME ``UUID`` derived from the file's metadata (reproducible; no clock, no random)."""
    text = json.dumps(parts, default=json_default, sort_keys=True)
    return f"urn:uuid:{uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=5)}"


def write_ome_tiff(
    path: str | os.PathLike[str],
    frames: Iterable[Any],
    *,
    shape: tuple[int, int, int],
    dtype: Any,
    pixel_size_nm: float | tuple[float, float],
    compression: str | None = "zstd",
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    bigtiff: bool | None = None,
    channels: list[dict[str, Any]] | None = None,
    encoder_threads: int | None = None,
    block_encoder: BlockEncoder | None = None,
) -> Path:
    """Write frames, in order, as a single-series OME-TIFF (T, Y, X), atomically.

    A ``shape`` (T, C, Y, X) writes a multi-channel series (axes ``TCYX``, pages T-major, OME
    ``Channel`` names, emission wavelengths and colours from ``channels``, the channel table:
    :func:`z2t_dask.io.channels.ome_channel_metadata`); ``frames`` then yields (t, C, Y, X) blocks.

    Parameters
    ----------
    path : path-like
        Output file, conventionally ``*.ome.tiff``. Replaced if it exists.
    frames : iterable of arrays
        (Y, X) frames or (t, Y, X) blocks in frame order (e.g. ``iter_frame_blocks``);
        consumed once. Values are cast to ``dtype`` when that is a same-kind cast.
    shape : (int, int, int)
        (T, Y, X) of the whole movie; exactly T frames must be yielded.
    dtype : dtype-like
        Pixel type (uint8/16/32, int8/16/32, float32 or float64).
    pixel_size_nm : float or (float, float)
        Camera pixel size (x, y) in nm, stored as OME ``PhysicalSizeX/Y`` in µm and in every page's
        TIFF tags ``XResolution`` / ``YResolution`` (pixels per cm, ``ResolutionUnit`` = centimetre;
        see :func:`resolution_per_cm`) for readers that ignore the OME-XML.
    compression : {"zstd", "zlib", "none", None}
        ``"zstd"`` level 1 (default), ``"zlib"`` (deflate) level 1, or uncompressed.
        No predictor. ``"lzw"`` raises :class:`~z2t_dask.errors.FormatError` (it enlarges noisy data).
    description : str, optional
        Free text for the OME ``Image/Description``.
    metadata : mapping, optional
        Provenance (JSON-serialisable; NumPy scalars/arrays and paths are converted),
        stored as JSON in an OME ``CommentAnnotation`` with namespace
        ``"z2t_dask/provenance"``; read back by :func:`read_ome_tiff_metadata`. The OME ``UUID``
        is derived from all the metadata, so the same inputs give the same bytes.
    bigtiff : bool, optional
        Force BigTIFF on/off; default: BigTIFF when the raw size exceeds
        ``BIGTIFF_THRESHOLD`` (~1.94 GiB).
    encoder_threads : int, optional
        Threads compressing pages while frames are rendered and written (0: in the writing thread);
        default: up to :data:`~z2t_dask.io.tiff_pages.ENCODER_THREADS_MAX` (at most the CPU count) for
        frames of 256 KiB or more, else 0. The file's bytes do not depend on it. At most
        ``2 * encoder_threads`` frames are held beyond the current block.
    block_encoder : BlockEncoder, optional
        The :func:`block_encoder` the blocks of ``frames`` were passed through where they were
        computed (``post`` of :func:`~z2t_dask.engine.streaming.iter_frame_blocks`): their strips are
        written as they came, and ``encoder_threads`` is not used. The same bytes.

    Returns
    -------
    pathlib.Path
        The final path.

    Raises
    ------
    ValueError
        Bad parameters, a frame of the wrong shape/dtype, or a frame count different from
        ``shape[0]`` (no file is left behind).
    OutputSpaceError
        An uncompressed file larger than the file-size limit or the free disk space (refused before
        writing), or a full disk / file-size limit met while writing (nothing left behind).
    """
    import tifffile

    final = Path(path)
    full_shape = tuple(int(s) for s in shape) if isinstance(shape, (tuple, list)) else shape
    multi = isinstance(full_shape, tuple) and len(full_shape) == 4  # (T, C, Y, X): T x C pages
    shape3 = _shape3((full_shape[0] * full_shape[1], *full_shape[2:]) if multi else shape)
    dt = np.dtype(dtype)
    if dt not in _OME_DTYPES:
        raise FormatError(f"OME-TIFF stores {', '.join(sorted(str(d) for d in _OME_DTYPES))}, not {dt}")
    px_x, px_y = pixel_size_pair(pixel_size_nm)
    codec, codec_args = _compression(compression, dt)
    if bigtiff is None:
        bigtiff = math.prod(shape3) * dt.itemsize > BIGTIFF_THRESHOLD
    ome: dict[str, Any] = {
        "axes": "TYX",
        "PhysicalSizeX": px_x / 1000.0,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": px_y / 1000.0,
        "PhysicalSizeYUnit": "µm",
    }
    if multi:
        from z2t_dask.io.channels import ome_channel_metadata

        ome.update(ome_channel_metadata(list(channels or []), full_shape[1]))
    if description is not None:
        ome["Description"] = str(description)
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ValueError(f"metadata must be a mapping (provenance), got {type(metadata).__name__}")
        text = json.dumps(dict(metadata), default=json_default, sort_keys=True)
        ome["CommentAnnotation"] = {"Namespace": PROVENANCE_NAMESPACE, "Value": text}
    ome["UUID"] = _content_uuid(
        shape3,
        str(dt),
        [px_x, px_y],
        codec,
        codec_args,
        description,
        ome.get("CommentAnnotation"),
        *([ome["Channel"]] if multi else []),
    )

    if codec is None:  # uncompressed: the size is known, refuse what cannot fit before writing
        check_output_space(final, math.prod(shape3) * dt.itemsize, what="the OME-TIFF")
    feed = FrameFeed(frames, shape3, dt)
    options: dict[str, Any] = {
        "shape": full_shape if multi else shape3,
        "dtype": dt,
        "bigtiff": bool(bigtiff),
        "ome": True,
        "photometric": "minisblack",
        "compression": codec,
        "compressionargs": codec_args,
        "predictor": None,
        "resolution": resolution_per_cm(px_x, px_y),
        "resolutionunit": tifffile.RESUNIT.CENTIMETER,
        "metadata": ome,
    }
    data = page_data(
        feed, shape3, dt, codec, codec_args, encoder_threads, pre_encode=PRE_ENCODE, block_encoder=block_encoder
    )
    try:
        with atomic_path(final) as tmp:
            if math.prod(shape3) * dt.itemsize <= SMALL_FILE_BYTES:
                buffer = io.BytesIO()
                tifffile.imwrite(buffer, data, **options)
                feed.finish()
                with open(tmp, "wb") as fh:
                    fh.write(buffer.getbuffer())
            else:  # a large buffer: one write per page or two, not one per strip (each hands the GIL over)
                with open(tmp, "wb", buffering=WRITE_BUFFER_BYTES) as fh:
                    tifffile.imwrite(fh, data, **options)
                feed.finish()
    finally:
        close_quietly(data)  # stops encoder threads when tifffile failed midway
    return final


def _tiff(path: str | os.PathLike[str]) -> Any:
    """An open ``tifffile.TiffFile`` (FormatError, naming the file, if it is not a TIFF)."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise FormatError(f"{path}: not a readable TIFF file ({exc})") from None


def read_ome_tiff(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the first series of a TIFF as an array (T, Y, X) (whole file into memory)."""
    with _tiff(path) as tif:
        return tif.series[0].asarray()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_ome_tiff_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read shape, pixel size, description and provenance of an OME-TIFF.

    Parameters
    ----------
    path : path-like
        OME-TIFF file (e.g. written by :func:`write_ome_tiff`, or the original tool's).

    Returns
    -------
    dict
        ``shape`` (tuple), ``dtype`` (numpy dtype), ``axes`` (str), ``n_series`` (int),
        ``bigtiff`` (bool), ``compression`` (str, first page), ``pixel_size_nm``
        ((x, y) in nm, or None), ``description`` (str or None), ``provenance`` (dict,
        empty when absent).
    """
    with _tiff(path) as tif:
        series = tif.series[0]
        page = tif.pages.first
        info: dict[str, Any] = {
            "shape": tuple(series.shape),
            "dtype": series.dtype,
            "axes": series.axes,
            "n_series": len(tif.series),
            "bigtiff": tif.is_bigtiff,
            "compression": page.compression.name.lower(),
            "pixel_size_nm": None,
            "description": None,
            "provenance": {},
        }
        xml = tif.ome_metadata
    if not xml:
        return info
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise FormatError(f"{path}: malformed OME-XML ({exc})") from None
    factor = {"µm": 1000.0, "um": 1000.0, "nm": 1.0, "mm": 1e6, "m": 1e9}
    for element in root.iter():
        name = _local(element.tag)
        if name == "Pixels" and info["pixel_size_nm"] is None and "PhysicalSizeX" in element.attrib:
            sizes = []
            for axis in ("X", "Y"):
                unit = element.attrib.get(f"PhysicalSize{axis}Unit", "µm")
                value = element.attrib.get(f"PhysicalSize{axis}", element.attrib["PhysicalSizeX"])
                sizes.append(float(value) * factor.get(unit, float("nan")))
            info["pixel_size_nm"] = tuple(sizes)
        elif name == "Image" and info["description"] is None:
            for child in element:
                if _local(child.tag) == "Description":
                    info["description"] = child.text or ""
        elif name == "CommentAnnotation" and element.attrib.get("Namespace") == PROVENANCE_NAMESPACE:
            for child in element:
                if _local(child.tag) == "Value" and child.text:
                    try:
                        info["provenance"] = json.loads(child.text)
                    except ValueError:
                        raise FormatError(f"{path}: the {PROVENANCE_NAMESPACE} annotation is not JSON") from None
    return info


def iter_ome_tiff_blocks(path: str | os.PathLike[str], block_frames: int = 16) -> Iterator[np.ndarray]:
    """Yield the frames of a TIFF's first series in order, ``block_frames`` at a time (bounded memory)."""
    with _tiff(path) as tif:
        series = tif.series[0]
        n = int(series.shape[0]) if len(series.shape) in (3, 4) else 1
        step = max(1, int(block_frames))
        for t0 in range(0, n, step):
            if len(series.shape) == 4:  # (T, C, Y, X): C pages per frame
                yield _read_frames(os.fspath(path), t0, min(n, t0 + step))
                continue
            block = tif.asarray(key=range(t0, min(n, t0 + step)), series=0)
            yield block.reshape(-1, *series.shape[-2:])


# --------------------------------------------------------------------------- registry entry


def _read_frames(path: str, t0: int, t1: int) -> np.ndarray:
    """Frames ``[t0, t1)`` of a TIFF's first series (a task function of :func:`open_ome_tiff`)."""
    with _tiff(path) as tif:
        series = tif.series[0]
        if len(series.shape) == 4:  # (T, C, Y, X): C pages per frame
            c = int(series.shape[1])
            return tif.asarray(key=range(t0 * c, t1 * c), series=0).reshape(t1 - t0, *series.shape[1:])
        return tif.asarray(key=range(t0, t1), series=0).reshape(t1 - t0, *series.shape[-2:])


def open_ome_tiff(path: str | os.PathLike[str]) -> Any:
    """A TIFF's first series as a lazy dask array ``(T, Y, X)`` (chunks of whole frames, ~16 MiB)."""
    with _tiff(path) as tif:
        series = tif.series[0]
        shape, dtype = tuple(series.shape), series.dtype
    return lazy_stack(path, _read_frames, shape, dtype)


def ome_tiff_info(path: str | os.PathLike[str]) -> StackInfo:
    """Shape, dtype, pixel size, units and provenance of a TIFF (see :func:`read_ome_tiff_metadata`)."""
    meta = read_ome_tiff_metadata(path)
    shape = meta["shape"] if len(meta["shape"]) != 2 else (1, *meta["shape"])
    prov = meta["provenance"] if isinstance(meta["provenance"], dict) else {}
    units = prov.get("units")
    return StackInfo(
        format="ome-tiff",
        shape=tuple(int(v) for v in shape),
        dtype=np.dtype(meta["dtype"]),
        pixel_size_nm=meta["pixel_size_nm"],
        units=units if isinstance(units, str) else None,
        attrs=dict(prov),
        extra={k: meta[k] for k in ("axes", "n_series", "bigtiff", "compression", "description")},
    )


def block_encoder(shape: tuple[int, ...], dtype: Any, compression: str | None) -> BlockEncoder | None:
    """The encoder of whole blocks where they are computed, for a stack of large compressed pages, else None.

    Pages that :func:`write_ome_tiff` would compress in an encoder pool (256 KiB or more, see
    :func:`~z2t_dask.io.tiff_pages.encoder_threads`) are compressed by the threads that compute their
    blocks instead (the W2 full chip on 2 cores: ~10-30 % more frames/s than rendering in two threads
    and compressing in two others). None for uncompressed or small pages, or without :data:`PRE_ENCODE`.
    ``shape`` is the stack's (T, Y, X) or (T, C, Y, X); ``dtype`` and ``compression`` the file's.
    """
    dt = np.dtype(dtype)
    codec, args = _compression(compression, dt)
    height, width = int(shape[-2]), int(shape[-1])
    pages = math.prod(int(n) for n in shape[:-2])
    if codec is None or not PRE_ENCODE or encoder_threads_for(height * width * dt.itemsize, pages) == 0:
        return None
    return BlockEncoder(codec, args, dt, strip_rows(height, width, dt.itemsize))


def _store(request: WriteRequest) -> Path:
    """Registry writer: frames streamed page by page in order (through the active Client if any); large
    compressed pages are compressed by the threads that compute their blocks (:func:`block_encoder`)."""
    options = dict(request.options)
    bigtiff = options.pop("bigtiff", None)
    description = options.pop("description", None)
    if options:
        raise TypeError(f"ome-tiff: unknown format options {sorted(options)} (bigtiff, description)")
    frames = request.frames
    # a stack computed whole (not streaming) is one block: its pages go to the encoder pool instead
    encoder = block_encoder(frames.shape, frames.dtype, request.compression) if request.streaming else None
    return write_ome_tiff(
        request.path,
        request.blocks(post=encoder),
        shape=frames.shape,
        dtype=frames.dtype,
        pixel_size_nm=request.pixel_size_nm,
        compression=request.compression,
        description=description,
        metadata={**request.attrs, "units": request.units},
        bigtiff=bigtiff,
        channels=_channel_table(request.attrs) if frames.ndim == 4 else None,
        block_encoder=encoder,
    )


def _channel_table(attrs: Any) -> list[dict[str, Any]]:
    from z2t_dask.io.channels import channel_table_from_attrs

    return channel_table_from_attrs(attrs)


def _is_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_file()


#: The registry entry of OME-TIFF stacks (``<name>.ome.tiff``).
FORMAT = StackFormat(
    name="ome-tiff",
    suffix=".ome.tiff",
    suffixes=(".ome.tiff", ".ome.tif", ".tiff", ".tif"),
    aliases=("tiff", "tif", "ome.tiff"),
    compressions=("zstd", "zlib", "none"),
    default_compression="zstd",
    store=_store,
    open=open_ome_tiff,
    info=ome_tiff_info,
    iter_blocks=iter_ome_tiff_blocks,
    probe=_is_file,
)
