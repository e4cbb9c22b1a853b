"""zstd on reused compression contexts of imagecodecs' own libzstd (the OME-TIFF writer's strips).

zstd: imagecodecs' ``zstd_encode`` calls ``ZSTD_compress``, which creates and frees a compression
context (its workspace) at every call: ~35 µs of a 6.4 KB page's ~50 µs. :func:`zstd_encoder`
calls ``ZSTD_compressCCtx`` of the *same* libzstd (the one imagecodecs loaded) on reused contexts,
which mirrors ``ZSTD_compress`` (same level, no other parameter) and so gives the same bytes; it is
used only after a probe shows identical output, else imagecodecs' function is used.

zstd of camera frames (unsigned integers, ADU): :data:`ZSTD_INTEGER_PARAMS`. Level 1 on a 256 KB strip
sizes its hash table for the input (2^17 entries, 512 KiB): cleared at every strip and read at random
positions, it outgrows the core's cache, and on noise-dominated frames it finds almost nothing (their
compression is the entropy coding of the literals). Level 1 with an 8 KiB table (``hashLog`` 11) and
7-byte minimum matches (``minMatch``) compresses them 2.1x (EMCCD) and 1.3x (sCMOS) faster to files
0.3 % and 3.7 % larger (``benchmarks/zstd_probe.py``); a frame of zeros still compresses ~5000-fold.
These strips are ordinary zstd frames (any zstd decoder reads them), but not the bytes tifffile's own
encoder writes; float frames keep level 1's defaults (the table there gains nothing and loses 8 % in size).
Where the libzstd cannot be reached (:func:`zstd_encoder` falls back to imagecodecs), integer frames too
get level 1's defaults: the same pixels, other compressed bytes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

__all__ = ["GIL_HELD_BYTES", "ZSTD_INTEGER_PARAMS", "Encoder", "ZstdSettings", "zstd_encoder"]

#: Inputs smaller than this (bytes) are zstd-compressed without releasing the GIL (see :class:`_ZstdContexts`).
GIL_HELD_BYTES = 64 * 1024

#: zstd parameters (``ZSTD_cParameter`` name: value) of unsigned-integer frames, on top of the level
#: (see the module notes): a 2^11-entry hash table and matches of at least 7 bytes.
ZSTD_INTEGER_PARAMS: dict[str, int] = {"hashLog": 11, "minMatch": 7}

#: ``ZSTD_cParameter`` numbers (zstd.h, stable API).
_ZSTD_PARAM_IDS = {
    "compressionLevel": 100,
    "windowLog": 101,
    "hashLog": 102,
    "chainLog": 103,
    "searchLog": 104,
    "minMatch": 105,
    "targetLength": 106,
    "strategy": 107,
}

#: ``encode(strip) -> bytes-like`` (a strip of a page; the OME-TIFF writer's encoders).
Encoder = Callable[[Any], Any]


#: zstd settings of a context: the level and the extra ``(parameter name, value)`` pairs (sorted; empty:
#: ``ZSTD_compressCCtx`` at the level, imagecodecs' bytes).
ZstdSettings = tuple[int, tuple[tuple[str, int], ...]]


class _ZstdContexts:
    """``ZSTD_compressCCtx`` / ``ZSTD_compress2`` of a loaded libzstd on pools of reused compression contexts.

    Settings without extra parameters compress with ``ZSTD_compressCCtx`` (as ``ZSTD_compress``: the level
    alone, imagecodecs' bytes); settings with some configure their contexts once
    (``ZSTD_CCtx_setParameter``, sticky) and compress with ``ZSTD_compress2``. Each settings has its own pool.
    Small inputs are compressed holding the GIL (``ctypes.PyDLL``): a GIL hand-off costs more than
    compressing a 6.4 KB page (the writer would wait up to the 5 ms switch interval for a busy render
    thread to give it back); large ones release it (``ctypes.CDLL``) so that encoder threads run in
    parallel with rendering.
    """

    def __init__(self, path: str) -> None:
        held, released = ctypes.PyDLL(path), ctypes.CDLL(path)
        held.ZSTD_createCCtx.restype = ctypes.c_void_p
        held.ZSTD_createCCtx.argtypes = []
        held.ZSTD_freeCCtx.restype = ctypes.c_size_t
        held.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
        held.ZSTD_compressBound.restype = ctypes.c_size_t
        held.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
        held.ZSTD_isError.restype = ctypes.c_uint
        held.ZSTD_isError.argtypes = [ctypes.c_size_t]
        held.ZSTD_CCtx_setParameter.restype = ctypes.c_size_t
        held.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        # (context, destination, its capacity, source, its size): ZSTD_compress2, then the level for compressCCtx
        buffers: list[Any] = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        for lib in (held, released):
            lib.ZSTD_compressCCtx.restype = ctypes.c_size_t
            lib.ZSTD_compressCCtx.argtypes = [*buffers, ctypes.c_int]
            lib.ZSTD_compress2.restype = ctypes.c_size_t
            lib.ZSTD_compress2.argtypes = buffers
        self._lib = held
        self._level_held, self._level_released = held.ZSTD_compressCCtx, released.ZSTD_compressCCtx
        self._params_held, self._params_released = held.ZSTD_compress2, released.ZSTD_compress2
        # (context, output buffer) per settings; at most one per concurrent caller
        self._free: dict[ZstdSettings, list[tuple[int, Any]]] = {}
        self._bounds: dict[int, int] = {}  # ZSTD_compressBound by input size
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # a lock held by another thread at fork() would stay held
            os.register_at_fork(after_in_child=self._new_lock)

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    def _new_context(self, settings: ZstdSettings) -> int:
        lib = self._lib
        ctx = lib.ZSTD_createCCtx()
        if not ctx:
            raise MemoryError("ZSTD_createCCtx failed")
        level, params = settings
        if params:
            for name, value in (("compressionLevel", level), *params):
                if lib.ZSTD_isError(lib.ZSTD_CCtx_setParameter(ctx, _ZSTD_PARAM_IDS[name], int(value))):
                    lib.ZSTD_freeCCtx(ctx)
                    raise RuntimeError(f"zstd parameter {name}={value} was refused by libzstd")
        return int(ctx)

    def compress(self, data: Any, level: int, params: tuple[tuple[str, int], ...] = ()) -> bytes:
        return self.compress_many([data], level, params)[0]

    def compress_many(self, strips: list[Any], level: int, params: tuple[tuple[str, int], ...] = ()) -> list[bytes]:
        """Compress each of ``strips`` (the bytes of :meth:`compress` for each) on one context taken once."""
        settings: ZstdSettings = (int(level), tuple(params))
        with self._lock:
            pool = self._free.get(settings)
            ctx, buf = pool.pop() if pool else (None, None)
        if ctx is None:
            ctx = self._new_context(settings)
        out: list[bytes] = []
        try:
            bounds = self._bounds
            level = settings[0]
            for data in strips:
                src = np.ascontiguousarray(data)
                n = src.nbytes
                bound = bounds.get(n)
                if bound is None:
                    bound = bounds[n] = int(self._lib.ZSTD_compressBound(n))
                if buf is None or len(buf) < bound:
                    buf = ctypes.create_string_buffer(bound)
                try:  # the data's address: ~0.4 µs this way, ~2 µs through ``src.ctypes.data``
                    address = ctypes.addressof(ctypes.c_char.from_buffer(cast(Any, src)))  # ndarray: a buffer
                except (TypeError, ValueError, BufferError):  # read-only or empty data
                    address = src.ctypes.data
                if settings[1]:
                    compress2 = self._params_held if n < GIL_HELD_BYTES else self._params_released
                    size = compress2(ctx, buf, bound, address, n)
                else:
                    compress = self._level_held if n < GIL_HELD_BYTES else self._level_released
                    size = compress(ctx, buf, bound, address, n, level)
                if size > bound:  # an error code (ZSTD_isError), never a compressed size
                    raise RuntimeError(f"zstd compression failed (code {size})")
                out.append(ctypes.string_at(buf, size))
            return out
        finally:
            with self._lock:
                self._free.setdefault(settings, []).append((ctx, buf))


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
    """The reused-context zstd of imagecodecs' libzstd, if it gives imagecodecs' bytes on a probe (and frames
    compressed with :data:`ZSTD_INTEGER_PARAMS` that imagecodecs decodes)."""
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
        tuned = tuple(sorted(ZSTD_INTEGER_PARAMS.items()))
        for probe in probes:
            for level in (1, 3):
                for _ in range(2):  # a fresh context, then a reused one
                    if contexts.compress(probe, level) != bytes(imagecodecs.zstd_encode(probe.tobytes(), level=level)):
                        return None
                    # parameters: ordinary zstd frames (imagecodecs decodes them to the input)
                    if bytes(imagecodecs.zstd_decode(contexts.compress(probe, level, tuned))) != probe.tobytes():
                        return None
    except (OSError, AttributeError, RuntimeError, MemoryError, ValueError):
        return None
    return contexts


def zstd_encoder(level: int, params: Mapping[str, int] | None = None) -> Encoder:
    """A zstd encoder on reused contexts when possible (see the module notes), else imagecodecs' function.

    Parameters
    ----------
    level : int
        zstd compression level.
    params : mapping, optional
        Extra ``ZSTD_cParameter`` settings by name (e.g. :data:`ZSTD_INTEGER_PARAMS`). Without them the
        bytes are imagecodecs' ``zstd_encode(data, level=level)``; with them, a zstd frame of these
        settings, or, where the libzstd cannot be reached, imagecodecs' bytes at the level.
    """
    extra = tuple(sorted((str(k), int(v)) for k, v in (params or {}).items()))
    unknown = [k for k, _ in extra if k not in _ZSTD_PARAM_IDS or k == "compressionLevel"]
    if unknown:
        raise ValueError(f"unknown zstd parameters {unknown}; expected some of {sorted(_ZSTD_PARAM_IDS)[1:]}")
    with _ZSTD_LOCK:
        if not _ZSTD:
            _ZSTD.append(_probe_contexts())
        contexts = _ZSTD[0]
    if contexts is None:
        import imagecodecs

        return lambda data: imagecodecs.zstd_encode(data, level=level)
    return _ManyEncoder(contexts, level, extra)


class _ManyEncoder:
    """``encode(strip) -> bytes`` on reused zstd contexts, with :meth:`many` encoding a list of strips on one
    context (a 40x40 page: ~16 µs of compression, ~5 µs of per-call overhead saved)."""

    def __init__(self, contexts: _ZstdContexts, level: int, params: tuple[tuple[str, int], ...] = ()) -> None:
        self._contexts = contexts
        self._level = int(level)
        self._params = params

    def __call__(self, data: Any) -> bytes:
        return self._contexts.compress(data, self._level, self._params)

    def many(self, strips: list[Any]) -> list[bytes]:
        return self._contexts.compress_many(strips, self._level, self._params)
