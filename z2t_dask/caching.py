"""One thread-safe build-once cache: a bounded LRU whose misses are built by one thread at a time.

Used for every per-process cache of the package (PSF library tables and libraries, camera pmf
samplers, ground-truth segments): render threads that need the same entry together wait for one
build instead of each building it (and its temporaries). Entries are dropped least recently used
first when the cache holds more than ``max_entries`` or, when ``max_bytes`` is set, more than
that many bytes (``nbytes`` of the values); the newest entry always stays.

This module imports nothing from the package: every layer may use it.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["BuildOnceCache", "built_once"]

V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])


class BuildOnceCache(Generic[V]):
    """A thread-safe LRU cache of values built on demand, each key built once at a time.

    Parameters
    ----------
    max_entries : int
        Entries kept (at least 1).
    max_bytes : int, optional
        Bytes kept, summed over the values' ``nbytes`` attribute (values without one count 0).

    Notes
    -----
    The build runs under the cache's lock, so concurrent requests for any key wait for it: the
    builds this package caches are large, memory-hungry and shared by all threads, and building
    one at a time bounds the peak memory. The cache is not pickled with its owner: owners
    create a fresh one on unpickling.
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None):
        self.max_entries = max(1, int(max_entries))
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value of ``key``: cached, or ``build()`` (once; other threads wait for it)."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            value = build()
            self._data[key] = value
            self._evict()
            return value

    def _evict(self) -> None:
        while len(self._data) > 1 and (
            len(self._data) > self.max_entries or (self.max_bytes is not None and self._nbytes() > self.max_bytes)
        ):
            self._data.popitem(last=False)

    def _nbytes(self) -> int:
        return sum(int(getattr(v, "nbytes", 0)) for v in self._data.values())

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached values (their ``nbytes``)."""
        with self._lock:
            return self._nbytes()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()


def built_once(max_entries: int = 64) -> Callable[[F], F]:
    """Decorator: memoise a function of hashable positional arguments in a :class:`BuildOnceCache`.

    The wrapper has ``cache_clear()`` and ``cache`` (the :class:`BuildOnceCache`).
    """

    def decorate(fn: F) -> F:
        cache: BuildOnceCache[Any] = BuildOnceCache(max_entries)

        @functools.wraps(fn)
        def wrapper(*args: Hashable) -> Any:
            return cache.get(args, lambda: fn(*args))

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
