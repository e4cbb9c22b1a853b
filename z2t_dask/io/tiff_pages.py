"""The pages of :func:`z2t_dask.io.tiff.write_ome_tiff`: the checked frame feed, and pre-encoded strips.

:class:`FrameFeed` flattens frames/blocks into (Y, X) pages and checks their shape, dtype and count.
Compressed pages are encoded off the writer thread (:func:`page_data`):

tifffile (2026.3.3) compresses a page's strips one after the other in the thread that writes the file
(on a 2-core machine its own pool has one worker), so a full-chip movie is compressed serially
while the render threads wait. tifffile also accepts an iterator of *already encoded* strips
(``bytes``), written as they come with their lengths as the strip byte counts. This module produces
exactly those strips: the same rows per strip (:func:`strip_rows`, tifffile's rule) and, except for
zstd-compressed integer frames (the same pixels in other zstd frames, see :mod:`z2t_dask.io.zstd_contexts`),
the same codec function with the same arguments (``tifffile.TIFF.COMPRESSORS``), so the file is
byte-identical to tifffile's own. Large frames are encoded by the threads that render their blocks
(:class:`BlockEncoder`, when the writer is given one) or in a small thread pool (zstd and deflate release
the GIL) with a bounded number of frames in flight (:func:`encoded_strips`); small ones inline.

zstd strips come from :mod:`z2t_dask.io.zstd_contexts` (reused contexts; camera frames in ADU with a
small hash table, :data:`~z2t_dask.io.zstd_contexts.ZSTD_INTEGER_PARAMS`).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from z2t_dask.io.zstd_contexts import ZSTD_INTEGER_PARAMS, Encoder, zstd_encoder

__all__ = [
    "ENCODER_THREADS_MAX",
    "BlockEncoder",
    "EncodedBlock",
    "POOL_MIN_FRAME_BYTES",
    "FrameFeed",
    "close_quietly",
    "encoded_strips",
    "encoder_threads",
    "page_data",
    "strip_encoder",
    "strip_rows",
]

#: tifffile's target size of a compressed strip (bytes): ``rowsperstrip = 262144 // row bytes``.
STRIP_TARGET_BYTES = 262144

#: Frames smaller than this (bytes, raw) are encoded inline: a thread hand-off costs more than it saves.
POOL_MIN_FRAME_BYTES = 256 * 1024

#: At most this many encoder threads (more gain nothing against two render threads on small machines).
ENCODER_THREADS_MAX = 4


def strip_rows(height: int, width: int, itemsize: int) -> int:
    """Rows per strip tifffile uses for a compressed, non-tiled, single-sample page.

    Parameters
    ----------
    height, width : int
        Page size in pixels (rows, columns).
    itemsize : int
        Bytes per pixel.

    Returns
    -------
    int
        ``262144 // (width * itemsize)`` clamped to ``[1, height]`` (tifffile's ``TiffWriter.write``).
    """
    rows = STRIP_TARGET_BYTES // (int(width) * int(itemsize))
    return min(max(rows, 1), int(height))


def encoder_threads(frame_bytes: int, n_frames: int) -> int:
    """Encoder threads for frames of ``frame_bytes`` raw bytes: 0 (inline) for small or single frames, else
    the CPUs this process may run on, at most :data:`ENCODER_THREADS_MAX`."""
    if frame_bytes < POOL_MIN_FRAME_BYTES or n_frames < 2:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's or taskset's share, not the host's count
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(ENCODER_THREADS_MAX, cpus))


def strip_encoder(codec: str, args: dict[str, Any] | None, dtype: Any = None) -> Encoder:
    """The function that encodes one strip for ``compression=codec, compressionargs=args``.

    Parameters
    ----------
    codec : {"zstd", "zlib"}
        tifffile compression name.
    args : dict, optional
        tifffile ``compressionargs`` (``{"level": n}``).
    dtype : numpy dtype, optional
        The frames' dtype: zstd strips of unsigned integers (camera frames in ADU) are compressed with
        :data:`ZSTD_INTEGER_PARAMS` (see the module notes); others as tifffile would.

    Returns
    -------
    callable
        ``encode(strip) -> bytes`` (thread-safe).
    """
    from tifffile import COMPRESSION, TIFF

    kwargs = dict(args or {})
    if codec == "zstd" and set(kwargs) <= {"level"}:
        integer = dtype is not None and np.dtype(dtype).kind == "u"
        return zstd_encoder(int(kwargs.get("level", 5)), ZSTD_INTEGER_PARAMS if integer else None)
    tag = {"zstd": COMPRESSION.ZSTD, "zlib": COMPRESSION.ADOBE_DEFLATE}[codec]
    compressor = TIFF.COMPRESSORS[tag]
    return lambda data: compressor(data, **kwargs)


# --------------------------------------------------------------------------- strips of frames


class EncodedBlock:
    """The pages of one block (file dtype, C-contiguous) with each page's encoded strips (:class:`BlockEncoder`)."""

    __slots__ = ("key", "pages", "strips")

    def __init__(self, pages: np.ndarray, strips: list[list[bytes]], key: tuple[Any, ...]) -> None:
        self.pages = pages
        self.strips = strips
        self.key = key


class BlockEncoder:
    """``post`` of a block iterator: a block's pages and their strips, encoded where the block was computed.

    Given to :func:`z2t_dask.engine.streaming.iter_frame_blocks` (``post``), it runs in the prefetch
    threads right after each block is rendered (the pages still in the cache), so that rendering and
    compression share the cores without a hand-off to an encoder pool; :func:`page_data` then passes the
    strips on. The strips are those :func:`strip_encoder` gives (the same bytes as encoding in the
    writer). Blocks it cannot encode as pages of ``dtype`` (another rank, a dtype that does not cast
    ``same_kind``) are passed on unchanged: the writer's checks name the problem.

    Parameters
    ----------
    codec, args
        tifffile compression name and ``compressionargs`` (:func:`strip_encoder`).
    dtype : numpy dtype
        The file's dtype.
    rows : int
        Rows per strip (:func:`strip_rows`).
    """

    def __init__(self, codec: str, args: dict[str, Any] | None, dtype: Any, rows: int) -> None:
        self.dtype = np.dtype(dtype)
        self.rows = int(rows)
        self.key = (codec, tuple(sorted((args or {}).items())), self.dtype.str, self.rows)
        self._encode = strip_encoder(codec, args, self.dtype)

    def __call__(self, block: Any) -> Any:
        arr = np.asarray(block)
        if arr.ndim not in (2, 3, 4) or not np.can_cast(arr.dtype, self.dtype, casting="same_kind"):
            return block
        pages = np.ascontiguousarray(arr.reshape(-1, *arr.shape[-2:]), dtype=self.dtype)
        return EncodedBlock(pages, [self.encode_page(page) for page in pages], self.key)

    def encode_page(self, page: np.ndarray) -> list[bytes]:
        """The encoded strips of one (Y, X) page of the file's dtype."""
        return _encode_frame(np.ascontiguousarray(page), self.rows, self._encode)


class FrameFeed:
    """Iterator of (Y, X) frames from frames/blocks, checking shape, dtype and count.

    Blocks may come as :class:`EncodedBlock`: :meth:`pre_encoded` then gives the strips of the frame
    last returned.
    """

    def __init__(self, frames: Iterable[Any], shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self._source = iter(frames)
        self._shape = shape
        self._dtype = dtype
        self._frames = self._flatten()
        self._extra = False
        self._strips: tuple[tuple[Any, ...], list[bytes]] | None = None  # of the next frame, if pre-encoded
        self._last: tuple[tuple[Any, ...], list[bytes]] | None = None  # of the frame last returned
        self.count = 0

    def pre_encoded(self, key: tuple[Any, ...]) -> list[bytes] | None:
        """The strips of the frame last returned, if they came encoded with settings ``key``; else None."""
        last = self._last
        return last[1] if last is not None and last[0] == key else None

    def _flatten(self) -> Iterator[np.ndarray]:
        for item in self._source:
            if isinstance(item, EncodedBlock):
                for page, strips in zip(item.pages, item.strips, strict=True):
                    self._strips = (item.key, strips)
                    yield page
                self._strips = None
                continue
            self._strips = None
            arr = np.asarray(item)
            if arr.ndim == 2:
                yield arr
            elif arr.ndim == 3:
                yield from arr
            elif arr.ndim == 4:  # (t, C, Y, X) blocks of a multi-channel stack: pages T-major
                yield from arr.reshape(-1, *arr.shape[-2:])
            else:
                raise ValueError(f"frames must yield (Y, X) frames or (t, Y, X) blocks, got shape {arr.shape}")

    def __iter__(self) -> FrameFeed:
        return self

    def __next__(self) -> np.ndarray:
        total = self._shape[0]
        if self.count == total:
            self._check_no_extra()
            raise StopIteration
        self._last = None
        try:
            frame = next(self._frames)
        except StopIteration:
            raise ValueError(f"frames yielded {self.count} frames but shape[0] = {total} were declared") from None
        strips, self._strips = self._strips, None
        self.count += 1
        if frame.shape != self._shape[1:]:
            raise ValueError(f"frame {self.count - 1} has shape {frame.shape}, expected {self._shape[1:]} (Y, X)")
        if frame.dtype != self._dtype:
            if not np.can_cast(frame.dtype, self._dtype, casting="same_kind"):
                raise ValueError(
                    f"frame {self.count - 1} has dtype {frame.dtype}, which cannot be stored as {self._dtype}"
                )
            frame = frame.astype(self._dtype)
            strips = None
        self._last = strips
        return np.ascontiguousarray(frame)

    def _check_no_extra(self) -> None:
        if self._extra:
            raise ValueError(f"frames yielded more than the declared shape[0] = {self._shape[0]} frames")
        for _ in self._frames:
            self._extra = True  # said again by finish(): a reader ahead of the writer may have met it first
            raise ValueError(f"frames yielded more than the declared shape[0] = {self._shape[0]} frames")

    def finish(self) -> None:
        """Raise ValueError unless exactly ``shape[0]`` frames were consumed and none remain."""
        if self.count != self._shape[0]:
            raise ValueError(f"{self.count} frames were written but shape[0] = {self._shape[0]}")
        self._check_no_extra()


def _encode_frame(frame: np.ndarray, rows: int, encode: Encoder) -> list[bytes]:
    return [bytes(encode(frame[r : r + rows])) for r in range(0, frame.shape[0], rows)]


#: Strips encoded together by an encoder with a ``many`` method (inline encoding of small frames).
INLINE_BATCH = 64


def _encoded_inline(
    source: Iterator[np.ndarray], rows: int, many: Callable[[list[Any]], list[bytes]]
) -> Iterator[bytes]:
    """The strips of ``source``'s frames encoded :data:`INLINE_BATCH` at a time by ``many``; an error of the
    frames propagates once the strips of the frames before it are yielded (as frame by frame)."""
    batch: list[Any] = []
    while True:
        try:
            frame = next(source)
        except StopIteration:
            break
        except Exception:
            if batch:
                yield from many(batch)
            raise
        batch.extend(frame[r : r + rows] for r in range(0, frame.shape[0], rows))
        if len(batch) >= INLINE_BATCH:
            yield from many(batch)
            batch = []
    if batch:
        yield from many(batch)


def encoded_strips(
    frames: Iterable[np.ndarray],
    encode: Encoder,
    rows: int,
    *,
    threads: int = 0,
    in_flight: int | None = None,
) -> Iterator[bytes]:
    """Yield the encoded strips of each (Y, X) frame, in order (frame by frame, top to bottom).

    Parameters
    ----------
    frames : iterable of numpy.ndarray
        C-contiguous (Y, X) frames of the file's dtype and byte order (e.g. the writer's checked feed).
    encode : callable
        ``encode(strip) -> bytes`` (:func:`strip_encoder`).
    rows : int
        Rows per strip (:func:`strip_rows`).
    threads : int
        Encoder threads; 0 encodes inline, in the consuming thread.
    in_flight : int, optional
        Frames read ahead and being encoded at most (default ``2 * threads``); bounds the memory to
        that many raw frames plus their encoded strips.

    Yields
    ------
    bytes
        One encoded strip.

    Notes
    -----
    An error of ``frames`` or of an encoder propagates to the consumer once the frames before it are
    yielded; closing the generator early cancels frames not yet started and waits for running ones.
    """
    if threads <= 0:
        many = getattr(encode, "many", None)
        if many is None:
            for frame in frames:
                yield from _encode_frame(frame, rows, encode)
            return
        yield from _encoded_inline(iter(frames), rows, many)
        return
    depth = max(1, int(in_flight if in_flight is not None else 2 * threads))
    source = iter(frames)
    pending: deque[Future[list[bytes]]] = deque()
    executor = ThreadPoolExecutor(max_workers=int(threads), thread_name_prefix="z2t-tiff-encode")
    exhausted = False

    def refill() -> None:
        nonlocal exhausted
        while not exhausted and len(pending) < depth:
            frame = next(source, None)
            if frame is None:
                exhausted = True
            else:
                pending.append(executor.submit(_encode_frame, frame, rows, encode))

    try:
        refill()
        while pending:
            strips = pending.popleft().result()
            refill()  # keep `depth` frames encoding while the consumer writes these strips
            yield from strips
            del strips
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


def close_quietly(iterator: Any) -> None:
    """Close a generator (stopping its encoder threads); errors of closing are ignored."""
    close = getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def page_data(
    feed: FrameFeed,
    shape3: tuple[int, int, int],
    dtype: np.dtype,
    codec: str | None,
    codec_args: dict[str, int] | None,
    threads: int | None,
    *,
    pre_encode: bool = True,
    block_encoder: BlockEncoder | None = None,
) -> Iterator[Any]:
    """What tifffile writes: the checked frames, or (compressed and ``pre_encode``) their encoded strips.

    ``threads`` None picks :func:`encoder_threads`; a negative or non-integer value raises ValueError.
    ``block_encoder``: the :class:`BlockEncoder` the feed's blocks went through (its strips are passed
    on; frames that came otherwise are encoded inline by it); it must match ``codec``, ``codec_args``,
    ``dtype`` and the rows per strip (ValueError).
    """
    if codec is None or not pre_encode:
        return feed
    _, height, width = shape3
    if block_encoder is not None:
        key = BlockEncoder(codec, codec_args, dtype, strip_rows(height, width, dtype.itemsize)).key
        if block_encoder.key != key:
            raise ValueError(f"block_encoder encodes {block_encoder.key}, the file needs {key}")
        return _strips_of_encoded_blocks(feed, block_encoder)
    if threads is None:
        threads = encoder_threads(height * width * dtype.itemsize, shape3[0])
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"encoder_threads must be an integer >= 0 or None, got {threads!r}")
    rows = strip_rows(height, width, dtype.itemsize)
    return encoded_strips(feed, strip_encoder(codec, codec_args, dtype), rows, threads=int(threads))


def _strips_of_encoded_blocks(feed: FrameFeed, encoder: BlockEncoder) -> Iterator[bytes]:
    """The strips of each frame of ``feed``: those it came with (:class:`EncodedBlock`), else ``encoder``'s."""
    for frame in feed:
        strips = feed.pre_encoded(encoder.key)
        yield from encoder.encode_page(frame) if strips is None else strips
