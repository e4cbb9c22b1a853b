"""The pages of :func:`z2t_dask.io.tiff.write_ome_tiff`: the checked frame feed, and pre-encoded strips.

:class:`FrameFeed` flattens frames/blocks into (Y, X) pages and checks their shape, dtype and count.
Compressed pages are encoded off the writer thread (:func:`page_data`):

tifffile (2026.3.3) compresses a page's strips one after the other in the thread that writes the file
(on a 2-core machine its own pool has one worker), so a full-chip movie is compressed serially
while the render threads wait. tifffile also accepts an iterator of *already encoded* strips
(``bytes``), written as they come with their lengths as the strip byte counts. This module produces
exactly those strips, the same bytes tifffile would: the same rows per strip (:func:`strip_rows`,
tifffile's rule), the same codec function with the same arguments (``tifffile.TIFF.COMPRESSORS``),
so the file is byte-identical to tifffile's own. Large frames are encoded in a small thread pool
(zstd and deflate release the GIL) with a bounded number of frames in flight
(:func:`encoded_strips`); small ones inline.

zstd: imagecodecs' ``zstd_encode`` calls ``ZSTD_compress``, which creates and frees a compression
context (its workspace) at every call: ~35 µs of a 6.4 KB page's ~50 µs. :func:`zstd_encoder`
calls ``ZSTD_compressCCtx`` of the *same* libzstd (the one imagecodecs loaded) on reused contexts,
which mirrors ``ZSTD_compress`` (same level, no other parameter) and so gives the same bytes; it is
used only after a probe shows identical output, else imagecodecs' function is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

import numpy as np

__all__ = [
    "ENCODER_THREADS_MAX",
    "POOL_MIN_FRAME_BYTES",
    "FrameFeed",
    "close_quietly",
    "encoded_strips",
    "encoder_threads",
    "page_data",
    "strip_encoder",
    "strip_rows",
    "zstd_encoder",
]

#: tifffile's target size of a compressed strip (bytes): ``rowsperstrip = 262144 // row bytes``.
STRIP_TARGET_BYTES = 262144

#: Frames smaller than this (bytes, raw) are encoded inline: a thread hand-off costs more than it saves.
POOL_MIN_FRAME_BYTES = 256 * 1024

#: Inputs smaller than this (bytes) are zstd-compressed without releasing the GIL (see :class:`_ZstdContexts`).
GIL_HELD_BYTES = 64 * 1024

#: At most this many encoder threads (more gain nothing against two render threads on small machines).
ENCODER_THREADS_MAX = 4

#: ``encode(strip) -> bytes-like``.
Encoder = Callable[[Any], Any]


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


# --------------------------------------------------------------------------- zstd on reused contexts


class _ZstdContexts:
    """``ZSTD_compressCCtx`` of a loaded libzstd on a pool of reused compression contexts.

    Small inputs are compressed holding the GIL (``ctypes.PyDLL``): a GIL hand-off costs more than
    compressing a 6.4 KB page (the writer would wait up to the 5 ms switch interval for a busy render
    thread to give it back); large ones release it (``ctypes.CDLL``) so that encoder threads run in
    parallel with rendering.
    """

    def __init__(self, path: str) -> None:
        held, released = ctypes.PyDLL(path), ctypes.CDLL(path)
        held.ZSTD_createCCtx.restype = ctypes.c_void_p
        held.ZSTD_createCCtx.argtypes = []
        held.ZSTD_compressBound.restype = ctypes.c_size_t
        held.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
        held.ZSTD_isError.restype = ctypes.c_uint
        held.ZSTD_isError.argtypes = [ctypes.c_size_t]
        for lib in (held, released):
            lib.ZSTD_compressCCtx.restype = ctypes.c_size_t
            lib.ZSTD_compressCCtx.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_int,
            ]
        self._lib = held
        self._compress_held = held.ZSTD_compressCCtx
        self._compress_released = released.ZSTD_compressCCtx
        self._free: list[tuple[int, Any]] = []  # (context, output buffer); at most one per concurrent caller
        self._bounds: dict[int, int] = {}  # ZSTD_compressBound by input size
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a lock held by another thread at fork() would stay held
            os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def compress(self, data: Any, level: int) -> bytes:
        return self.compress_many([data], level)[0]

    def compress_many(self, strips: list[Any], level: int) -> list[bytes]:
        """Compress each of ``strips`` (the bytes of :meth:`compress` for each) on one context taken once."""
        with self._lock:
            ctx, buf = self._free.pop() if self._free else (None, None)
        if ctx is None:
            ctx = self._lib.ZSTD_createCCtx()
            if not ctx:
                raise MemoryError("ZSTD_createCCtx failed")
        out: list[bytes] = []
        try:
            bounds = self._bounds
            level = int(level)
            for data in strips:
                src = np.ascontiguousarray(data)
                n = src.nbytes
                bound = bounds.get(n)
                if bound is None:
                    bound = bounds[n] = int(self._lib.ZSTD_compressBound(n))
                if buf is None or len(buf) < bound:
                    buf = ctypes.create_string_buffer(bound)
                compress = self._compress_held if n < GIL_HELD_BYTES else self._compress_released
                try:  # the data's address: ~0.4 µs this way, ~2 µs through ``src.ctypes.data``
                    address = ctypes.addressof(ctypes.c_char.from_buffer(cast(Any, src)))  # ndarray: a buffer
                except (TypeError, ValueError, BufferError):  # read-only or empty data
                    address = src.ctypes.data
                size = compress(ctx, buf, bound, address, n, level)
                if size > bound:  # an error code (ZSTD_isError), never a compressed size
                    raise RuntimeError(f"ZSTD_compressCCtx failed (code {size})")
                out.append(ctypes.string_at(buf, size))
            return out
        finally:
            with self._lock:
                self._free.append((ctx, buf))


def _loaded_libzstd() -> str | None:
    """Path of the libzstd shared library imagecodecs' zstd extension loaded (Linux), else None."""
    try:
        from imagecodecs import _zstd  # noqa: F401  (loads its libzstd into this process)
    except ImportError:
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = {line.split(None, 5)[-1].strip() for line in fh if "libzstd" in line}
    except OSError:
        return None
    owned = sorted(p for p in paths if "imagecodecs" in p and os.path.isfile(p))
    return owned[0] if len(owned) == 1 else None


_ZSTD_LOCK = threading.Lock()
_ZSTD: list[_ZstdContexts | None] = []  # [] until probed; [None]: not usable here


def _probe_contexts() -> _ZstdContexts | None:
    """The reused-context zstd of imagecodecs' libzstd, if it gives imagecodecs' bytes on a probe."""
    import imagecodecs

    path = _loaded_libzstd()
    if path is None:
        return None
    try:
        contexts = _ZstdContexts(path)
        rng = np.random.default_rng(0)
        probes: list[np.ndarray] = [
            rng.normal(100.0, 10.0, (40, 40)).astype(np.float32),
            rng.poisson(300.0, (109, 1200)).astype(np.uint16),
            np.zeros((3, 5), np.uint8),
        ]
        for probe in probes:
            for level in (1, 3):
                for _ in range(2):  # a fresh context, then a reused one
                    if contexts.compress(probe, level) != bytes(imagecodecs.zstd_encode(probe.tobytes(), level=level)):
                        return None
    except (OSError, AttributeError, RuntimeError, MemoryError):
        return None
    return contexts


def zstd_encoder(level: int) -> Encoder:
    """A zstd encoder giving imagecodecs' ``zstd_encode(data, level=level)`` bytes, on reused contexts when
    possible (see the module notes), else imagecodecs' function itself."""
    with _ZSTD_LOCK:
        if not _ZSTD:
            _ZSTD.append(_probe_contexts())
        contexts = _ZSTD[0]
    if contexts is None:
        import imagecodecs

        return lambda data: imagecodecs.zstd_encode(data, level=level)
    return _ManyEncoder(contexts, level)


class _ManyEncoder:
    """``encode(strip) -> bytes`` on reused zstd contexts, with :meth:`many` encoding a list of strips on one
    context (a 40x40 page: ~16 µs of compression, ~5 µs of per-call overhead saved)."""

    def __init__(self, contexts: _ZstdContexts, level: int) -> None:
        self._contexts = contexts
        self._level = int(level)

    def __call__(self, data: Any) -> bytes:
        return self._contexts.compress(data, self._level)

    def many(self, strips: list[Any]) -> list[bytes]:
        return self._contexts.compress_many(strips, self._level)


def strip_encoder(codec: str, args: dict[str, Any] | None) -> Encoder:
    """The function that encodes one strip as tifffile would for ``compression=codec, compressionargs=args``.

    Parameters
    ----------
    codec : {"zstd", "zlib"}
        tifffile compression name.
    args : dict, optional
        tifffile ``compressionargs`` (``{"level": n}``).

    Returns
    -------
    callable
        ``encode(strip) -> bytes`` (thread-safe).
    """
    from tifffile import COMPRESSION, TIFF

    kwargs = dict(args or {})
    if codec == "zstd" and set(kwargs) <= {"level"}:
        return zstd_encoder(int(kwargs.get("level", 5)))
    tag = {"zstd": COMPRESSION.ZSTD, "zlib": COMPRESSION.ADOBE_DEFLATE}[codec]
    compressor = TIFF.COMPRESSORS[tag]
    return lambda data: compressor(data, **kwargs)


# --------------------------------------------------------------------------- strips of frames


class FrameFeed:
    """Iterator of (Y, X) frames from frames/blocks, checking shape, dtype and count."""

    def __init__(self, frames: Iterable[Any], shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self._source = iter(frames)
        self._shape = shape
        self._dtype = dtype
        self._frames = self._flatten()
        self._extra = False
        self.count = 0

    def _flatten(self) -> Iterator[np.ndarray]:
        for item in self._source:
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
        try:
            frame = next(self._frames)
        except StopIteration:
            raise ValueError(f"frames yielded {self.count} frames but shape[0] = {total} were declared") from None
        self.count += 1
        if frame.shape != self._shape[1:]:
            raise ValueError(f"frame {self.count - 1} has shape {frame.shape}, expected {self._shape[1:]} (Y, X)")
        if frame.dtype != self._dtype:
            if not np.can_cast(frame.dtype, self._dtype, casting="same_kind"):
                raise ValueError(
                    f"frame {self.count - 1} has dtype {frame.dtype}, which cannot be stored as {self._dtype}"
                )
            frame = frame.astype(self._dtype)
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
) -> Iterator[Any]:
    """What tifffile writes: the checked frames, or (compressed and ``pre_encode``) their encoded strips.

    ``threads`` None picks :func:`encoder_threads`; a negative or non-integer value raises ValueError.
    """
    if codec is None or not pre_encode:
        return feed
    _, height, width = shape3
    if threads is None:
        threads = encoder_threads(height * width * dtype.itemsize, shape3[0])
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"encoder_threads must be an integer >= 0 or None, got {threads!r}")
    rows = strip_rows(height, width, dtype.itemsize)
    return encoded_strips(feed, strip_encoder(codec, codec_args), rows, threads=int(threads))
