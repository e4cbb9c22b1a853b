"""Shared helpers: peak-RSS sampling of a process and its children, machine description, bytecode."""

from __future__ import annotations

import os
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "original"


def ensure_bytecode() -> str:
    """Byte-compile the package's modules (``__pycache__``) before a timed start-up; what was done.

    An installed package has its bytecode (pip compiles it; an editable install writes it on the
    first import). Where ``PYTHONDONTWRITEBYTECODE`` is set (as on this project's reference
    machine) an editable checkout never gets any, and every process of a measurement compiles the
    package's ~120 modules again from source: 0.3-0.5 s of each start, measured with
    ``/usr/bin/time python -c "import z2t_dask.sample, z2t_dask.batch.jobs, z2t_dask.batch.warm"``
    (1.36-1.69 s without bytecode, 1.20-1.40 s with it). Compiling writes ``__pycache__`` files
    (git ignores them); it never changes what the modules do.
    """
    import compileall
    import sys

    ok = compileall.compile_dir(str(ROOT / "z2t_dask"), quiet=1)
    why = " (PYTHONDONTWRITEBYTECODE is set here)" if sys.dont_write_bytecode else ""
    return f"package bytecode {'up to date' if ok else 'NOT compiled'}{why}"


class PeakRSS:
    """Sample the RSS of this process and its children every ``interval`` s (psutil)."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:  # child exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def timer():
    t = {"s": 0.0}
    t0 = time.perf_counter()
    yield t
    t["s"] = time.perf_counter() - t0
