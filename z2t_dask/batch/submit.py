"""Bounded submission: a batch's jobs go to the cluster in a window, consumed as they complete.

:func:`execute` keeps at most ``window`` jobs submitted and unfinished (the client and the
scheduler hold O(window) futures and tasks, not O(jobs)): it submits the first ``window`` jobs,
then one more each time one finishes (:class:`distributed.as_completed`, futures added as old ones
are released). The window is :data:`WINDOW_PER_THREAD` times the cluster's worker threads (at least
:data:`MIN_WINDOW`), re-read every :data:`REREAD_S` seconds, so it grows with an adaptive or SLURM
cluster whose workers arrive late. Each job's manifest entry is updated when it is submitted
(``running``) and when it ends (``done`` / ``failed``): one store transaction each. A finished job
of :func:`~z2t_dask.batch.jobs.run_job` in a local folder is recorded from the marker it wrote (or
found), read from its folder, rather than from its result fetched from the worker: the same
fields, and half the client's and workers' CPU per job (about 3 + 2 ms of the 6 + 4 ms Dask
costs per task on the 2-core reference machine); anything else (a store, another task function, a
marker not there or not this job's) fetches the result.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback as tb
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from z2t_dask.batch.jobs import read_attempts, read_marker, run_job
from z2t_dask.batch.manifest import Manifest
from z2t_dask.batch.spec import Job
from z2t_dask.errors import FormatError, interrupt_of

__all__ = ["MIN_WINDOW", "REREAD_S", "WINDOW_PER_THREAD", "Submission", "execute", "window_for"]

log = logging.getLogger("z2t_dask.batch")

#: Jobs in flight per worker thread of the cluster.
WINDOW_PER_THREAD = 4
#: The smallest window (also when no worker is connected yet).
MIN_WINDOW = 8
#: Seconds between two readings of the cluster's worker threads.
REREAD_S = 2.0


def window_for(threads: int) -> int:
    """The submission window for a cluster of ``threads`` worker threads."""
    return max(MIN_WINDOW, WINDOW_PER_THREAD * int(threads))


@dataclass
class Submission:
    """What :func:`execute` did: jobs finished and failed, the window used and the most jobs in flight."""

    done: int = 0
    failed: int = 0
    window: int = 0
    max_in_flight: int = 0


def _progress_line(done: int, failed: int, total: int, t0: float) -> str:
    width = 30
    frac = (done + failed) / total if total else 1.0
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    return f"\r[{bar}] {done + failed}/{total} ({done} ok, {failed} failed) {time.time() - t0:6.1f} s"


class _ProgressBar:
    """A job progress bar: an ipywidgets bar in a Jupyter kernel, a text bar on stderr otherwise."""

    def __init__(self, total: int):
        self.total, self.t0, self.widget = total, time.time(), None
        self.shown = 0.0
        try:
            from distributed.utils import is_kernel

            if is_kernel():
                import ipywidgets
                from IPython.display import display

                self.widget = ipywidgets.IntProgress(min=0, max=total, description="z2t batch")
                self.label = ipywidgets.Label(f"0/{total}")
                display(ipywidgets.HBox([self.widget, self.label]))
        except Exception:  # no IPython / ipywidgets: text bar
            self.widget = None

    def update(self, done: int, failed: int) -> None:
        now = time.time()
        if done + failed < self.total and now - self.shown < 0.1:  # at most 10 redraws a second
            return
        self.shown = now
        if self.widget is not None:
            self.widget.value = done + failed
            self.widget.bar_style = "danger" if failed else ""
            self.label.value = f"{done + failed}/{self.total} ({failed} failed) {now - self.t0:.1f} s"
        else:
            print(_progress_line(done, failed, self.total, self.t0), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.widget is None:
            print(file=sys.stderr)


def _threads(c: Any) -> int:
    return sum(c.nthreads().values())


def _failure(fut: Any) -> tuple[str, str]:
    from distributed.scheduler import KilledWorker

    exc = fut.exception()
    if isinstance(exc, KilledWorker):
        msg = (
            f"this job kills workers (memory?): {exc}; the worker running it died "
            "repeatedly (distributed.scheduler.allowed-failures)"
        )
    else:
        msg = f"{type(exc).__name__}: {exc}"
    trace = "".join(tb.format_tb(fut.traceback())) if fut.traceback() is not None else ""
    return msg, trace


def _finished_info(fut: Any, fn: Callable, out: Any, name: str, key: str) -> dict:
    """What a finished job returned: the marker of a local :func:`~z2t_dask.batch.jobs.run_job` job, else its result.

    ``run_job`` returns the marker it wrote (or the one it found: a job done before); reading it
    from the folder spares fetching the result from the worker. Any doubt (no marker, another
    job's, unreadable; a store; another task function) fetches the result.
    """
    if fn is run_job and isinstance(out, Path):
        try:
            marker = read_marker(out / name)
        except (FormatError, OSError):
            marker = None
        if marker is not None and marker.get("key") == key:
            return marker
    return fut.result()


def _done_entry(info: dict, out: Path, key: str) -> dict:
    return {
        "state": "done",
        "outputs": info.get("outputs", {}),
        "seconds": info.get("seconds"),
        "finished": info.get("finished", time.time()),
        "error": None,
        "traceback": None,
        "attempts": read_attempts(out, key) or info.get("attempt", 1),
        "host": info.get("host"),
        "records": info.get("records"),
        "frames": info.get("frames"),
    }


def execute(
    c: Any,
    jobs: Sequence[Job],
    to_run: Sequence[int],
    manifest: Manifest,
    out: Path,
    fn: Callable,
    strategy: str,
    retries: int,
    progress: bool | Callable,
    window: int | None = None,
) -> Submission:
    """Run the jobs ``to_run`` (indices into ``jobs``) on client ``c`` in a bounded window.

    Parameters
    ----------
    jobs
        The batch's jobs (a :class:`~z2t_dask.batch.grid.BatchJobs`: each job is made when it is
        submitted).
    window
        The most jobs in flight (default: :func:`window_for` the cluster's worker threads,
        re-read every :data:`REREAD_S` s).

    Returns
    -------
    Submission
        Counts, the (last) window and the most jobs that were in flight at once.

    On ``KeyboardInterrupt`` the jobs in flight are cancelled and marked ``interrupted`` (those
    never submitted stay ``pending``); the exception propagates.
    """
    from distributed import as_completed

    sub = Submission(window=window or window_for(_threads(c)))
    read_at = time.monotonic()
    queue: Iterator[int] = iter(to_run)
    in_flight: dict[Any, tuple[str, str]] = {}  # future -> (job folder, job key)
    pool = as_completed(loop=c.loop)
    bar = _ProgressBar(len(to_run)) if progress is True else None

    def fill() -> None:
        while len(in_flight) < sub.window:
            i = next(queue, None)
            if i is None:
                return
            job = jobs[i]
            manifest.update(job.name, {"state": "running", "submitted": time.time()})
            task = {"index": job.index, "name": job.name, "params": job.params, "config": job.config}
            task.update(seed=job.seed, key=job.key)
            fut = c.submit(fn, task, str(out), strategy=strategy, key=f"z2t-job-{job.key}", retries=retries, pure=False)
            in_flight[fut] = (job.name, job.key)
            pool.add(fut)
            sub.max_in_flight = max(sub.max_in_flight, len(in_flight))

    try:
        fill()
        for fut in pool:
            name, key = in_flight.pop(fut)
            if fut.status == "finished":
                info = _finished_info(fut, fn, out, name, key)
                entry = manifest.update(name, _done_entry(info, out, key))
                sub.done += 1
                log.info("done %s in %ss", name, info.get("seconds"))
            else:
                msg, trace = _failure(fut)
                entry = manifest.update(
                    name,
                    {
                        "state": "failed",
                        "error": msg,
                        "traceback": trace,
                        "finished": time.time(),
                        "attempts": read_attempts(out, key),
                    },
                )
                sub.failed += 1
                log.error("failed %s: %s", name, msg)
            fut.release()
            if bar is not None:
                bar.update(sub.done, sub.failed)
            elif callable(progress):
                progress({"name": name, **entry})
            if window is None and time.monotonic() - read_at > REREAD_S:  # adaptive clusters grow
                sub.window, read_at = window_for(_threads(c)), time.monotonic()
            fill()
    except BaseException as exc:
        interrupt = interrupt_of(exc)
        if interrupt is None:
            raise
        for fut, (name, _) in in_flight.items():
            manifest.set_state(name, "interrupted")
            fut.cancel()
        if interrupt is exc:
            raise
        # Ctrl-C inside as_completed's Condition.wait: a RuntimeError about its lock; the interrupt it is
        raise type(interrupt)(*interrupt.args) from exc
    finally:
        if bar is not None:
            bar.close()
    return sub
