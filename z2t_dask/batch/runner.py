"""Batch engine: many samples × parameter grids as futures on dask.distributed (the client side).

:func:`run_batch` loads a batch config (:mod:`z2t_dask.batch.spec`), expands it into jobs, and
submits each as ``client.submit(run_job, ..., key="z2t-job-<key>", retries=N)``
(:mod:`z2t_dask.batch.jobs`); a job writes its sample folder atomically and a marker
``z2t_job.json`` (key, outputs, checksums), so re-running it is a no-op.

Only this (client) process writes the manifest ``manifest.json`` in the output folder
(:mod:`z2t_dask.batch.manifest`), after every finished job: key, state, attempts, error and
traceback, outputs and checksums, timings. A rerun skips jobs done with the same key, redoes
changed or unfinished ones, leaves failed ones failed unless ``retry_failed``; the original
``batch_status.json`` is written beside it for existing scripts. The log goes to ``batch.log`` in
the output folder. Exit codes: 0 all done, 1 some failed, 2 bad config, Zmap or paths, a failed
cluster start, workers that do not see the output folder, or a folder another run holds.

Safety: every user path is absolute before anything is submitted; the output folder is locked for
the run (:mod:`z2t_dask.batch.lock`) and probed from the workers; a finished job is skipped only
when its outputs match their recorded checksums (:mod:`z2t_dask.batch.checksums`; ``verify=True``
rehashes every file); a Ctrl-C cancels the jobs, marks them ``interrupted`` and closes the cluster
quietly (the rerun redoes them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import traceback as tb
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from z2t_dask.batch.jobs import JOB_MARKER, read_attempts, run_job
from z2t_dask.batch.lock import batch_lock
from z2t_dask.batch.manifest import MANIFEST, Manifest
from z2t_dask.batch.plan import check_inputs, plan_jobs
from z2t_dask.batch.spec import (
    SCHEMA_VERSION,
    BatchConfigError,
    BatchSpec,
    Job,
    expand_jobs,
    job_key,
    load_batch_config,
)

__all__ = [
    "JOB_MARKER",
    "MANIFEST",
    "SCHEMA_VERSION",
    "BatchConfigError",
    "BatchResult",
    "BatchSpec",
    "Job",
    "expand_jobs",
    "job_key",
    "load_batch_config",
    "run_batch",
    "run_job",
]

log = logging.getLogger("z2t_dask.batch")

#: The batch log, in the output folder.
LOG_FILE = "batch.log"


@dataclass
class BatchResult:
    """Outcome of :func:`run_batch`: per-job entries of the manifest and the exit code."""

    output_dir: Path
    jobs: dict[str, dict]
    seconds: float
    dashboard_link: str | None = None

    def states(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, j in self.jobs.items():
            out.setdefault(j["state"], []).append(name)
        return out

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, j in self.jobs.items() if j["state"] == "failed")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or any(j["state"] not in ("done", "skipped") for j in self.jobs.values()) else 0

    def summary(self) -> str:
        """Human summary: done / skipped / failed, with errors and output paths."""
        s = self.states()
        lines = [
            f"batch {self.output_dir}: {len(self.jobs)} jobs in {self.seconds:.1f} s: "
            f"{len(s.get('done', []))} done, {len(s.get('skipped', []))} skipped (already done), "
            f"{len(s.get('failed', []))} failed"
            + "".join(f", {len(v)} {k}" for k, v in s.items() if k not in ("done", "skipped", "failed"))
        ]
        for name in self.failed:
            err = (self.jobs[name].get("error") or "").strip().splitlines()
            lines.append(f"  FAILED {name}: {err[-1] if err else '?'} (attempts: {self.jobs[name].get('attempts')})")
        lines.append(f"  manifest: {self.output_dir / MANIFEST}")
        return "\n".join(lines)


def _progress_line(done: int, failed: int, total: int, t0: float) -> str:
    width = 30
    frac = (done + failed) / total if total else 1.0
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    return f"\r[{bar}] {done + failed}/{total} ({done} ok, {failed} failed) {time.time() - t0:6.1f} s"


class _ProgressBar:
    """A job progress bar: an ipywidgets bar in a Jupyter kernel, a text bar on stderr otherwise."""

    def __init__(self, total: int):
        self.total, self.t0, self.widget = total, time.time(), None
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
        if self.widget is not None:
            self.widget.value = done + failed
            self.widget.bar_style = "danger" if failed else ""
            self.label.value = f"{done + failed}/{self.total} ({failed} failed) {time.time() - self.t0:.1f} s"
        else:
            print(_progress_line(done, failed, self.total, self.t0), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.widget is None:
            print(file=sys.stderr)


def _clean_stale_temps(out: Path) -> int:
    n = 0
    for p in list(out.rglob(".*.tmp-*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    return n


def _add_log_file(out: Path) -> logging.Handler:
    h = logging.FileHandler(out / LOG_FILE, delay=True)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    h.setLevel(logging.INFO)
    log.addHandler(h)
    log.setLevel(min(log.level or logging.INFO, logging.INFO))
    return h


def _remove_log_file(h: logging.Handler) -> None:
    log.removeHandler(h)
    h.close()


def run_batch(
    config: str | os.PathLike | Mapping[str, Any] | BatchSpec,
    client: Any = None,
    *,
    max_workers: int | None = None,
    retries: int | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    clean: bool = False,
    verify: bool = False,
    strategy: str | None = None,
    progress: bool | Callable[[dict], None] = True,
    dashboard: bool = False,
    slurm: Any = None,
    output_dir: str | os.PathLike | None = None,
    zmap: str | None = None,
    seed: int | None = None,
    job_fn: Callable[..., dict] | None = None,
) -> BatchResult:
    """Run a batch on a Dask cluster; resumable.

    Before anything is written, the config is validated, every distinct Zmap and sCMOS map is
    checked once on the client (:func:`~z2t_dask.batch.plan.check_inputs`) and, for a new output
    folder, the cluster is started: a bad input or a failed start (no bokeh for the dashboard, no
    ``sbatch``, an unreachable scheduler) leaves no output folder behind. The output folder is
    resolved on the client (absolute), locked for the run (:func:`~z2t_dask.batch.lock.batch_lock`:
    a second run on it is refused) and probed from every worker
    (:func:`~z2t_dask.batch.cluster.probe_output_folder`).

    Parameters
    ----------
    config
        Batch config (path, mapping or :class:`BatchSpec`).
    client
        ``None`` (reuse the current client or start a LocalCluster with ``max_workers``), a
        ``distributed.Client``, a scheduler address ``"tcp://host:8786"`` or a Cluster.
    retries
        Retries per job on exceptions (default: the config's ``retries``, else 2). A worker that
        dies is handled by Dask (``distributed.scheduler.allowed-failures``); a job that keeps
        killing workers ends failed with "this job kills workers: memory?".
    resume, retry_failed, clean
        ``resume=False`` ignores the manifest (every job redone, outputs overwritten as jobs
        finish); ``clean=True`` with it deletes the job folders first. ``retry_failed`` redoes
        jobs that failed in an earlier run (otherwise they stay failed).
    verify
        Recompute the sha256 of every finished job's outputs before skipping it (default: the
        fast check, sizes and modification times; see :mod:`z2t_dask.batch.checksums`). A job
        whose outputs differ from their record is redone, with a warning naming the file.
    strategy
        ``"serial"`` (one task per job, its graph computed inside), ``"spread"`` (each job's graph
        spread over the cluster via ``worker_client``) or ``"auto"`` (serial when there are at
        least twice as many jobs as worker threads).
    progress
        ``True`` for a progress bar on stderr, ``False`` for none, or a callback receiving each
        finished job's manifest entry.
    output_dir, zmap, seed
        Override the config's ``base_output_dir``, ``base_config.zmap_path`` and ``seed``
        (relative paths: from the current folder).
    job_fn
        The task function (default :func:`run_job`); must be importable by the workers.

    Raises
    ------
    BatchConfigError, ZmapError
        A bad batch config or Zmap (nothing written).
    BatchLockError
        Another run holds the output folder.
    ClusterError
        The cluster cannot be started or reached, or its workers do not see the output folder
        (:class:`~z2t_dask.batch.cluster.OutputFolderError`).
    """
    spec = (
        config
        if isinstance(config, BatchSpec)
        else load_batch_config(config, zmap=zmap, output_dir=output_dir, seed=seed)
    )
    if output_dir is not None and isinstance(config, BatchSpec):
        spec.output_dir = Path(output_dir)
    spec.output_dir = out = Path(os.path.abspath(spec.output_dir))  # the client's folder, never a worker's
    jobs = expand_jobs(spec)
    check_inputs(jobs, spec.source)  # Zmaps, ROIs, sCMOS maps: refused before anything is started or written
    n_retries = spec.retries if retries is None else int(retries)
    session = _ClientSession(client, max_workers=max_workers or spec.max_workers, dashboard=dashboard, slurm=slurm)
    with contextlib.ExitStack() as stack:
        if not out.exists():  # start the cluster first: a failed start writes nothing
            session.start(stack)
            created = _make_folder(out)
            try:
                session.probe(out)
            except BaseException:
                _remove_empty(out, created)
                raise
        stack.enter_context(batch_lock(out))  # BatchLockError: another run holds the folder
        handler = _add_log_file(out)
        stack.callback(_remove_log_file, handler)
        t_start = time.time()
        stale = _clean_stale_temps(out)  # only under the lock: never another run's temporaries
        if stale:
            log.info("removed %d temporary leftovers of an interrupted run", stale)
        if clean and not resume:
            for job in jobs:
                shutil.rmtree(out / job.name, ignore_errors=True)
        manifest = Manifest(out, spec, resume)
        to_run = plan_jobs(jobs, manifest, out, resume=resume, retry_failed=retry_failed, verify=verify)
        in_batch = {j.name for j in jobs}
        for name, j in manifest.jobs.items():
            if name not in in_batch:
                j["state"] = "not-in-batch"
        manifest.data["runs"].append({"started": t_start, "jobs": len(jobs), "to_run": len(to_run)})
        log.info("batch %s: %d jobs, %d to run, output %s", spec.source or "<dict>", len(jobs), len(to_run), out)
        if to_run:
            c = session.start(stack)
            session.probe(out)
            manifest.write()
            threads = sum(c.nthreads().values()) or 1
            chosen = strategy or spec.strategy
            if chosen == "auto":
                chosen = "serial" if len(to_run) >= 2 * threads else "spread"
            log.info("strategy %s (%d jobs, %d worker threads), retries %d", chosen, len(to_run), threads, n_retries)
            _execute(c, to_run, manifest, out, job_fn or run_job, chosen, n_retries, progress)
        stale = _clean_stale_temps(out)  # e.g. the temp folder of a worker that was killed mid-job
        if stale:
            log.info("removed %d temporary leftovers of killed or interrupted jobs", stale)
        manifest.data["runs"][-1]["finished"] = time.time()
        manifest.write()
        result = BatchResult(
            out, {n: j for n, j in manifest.jobs.items() if n in in_batch}, time.time() - t_start, session.dashboard
        )
        log.info("%s", result.summary())
        return result


class _ClientSession:
    """The batch's Dask client, started on first need (and probed once the output folder exists)."""

    def __init__(self, client: Any, *, max_workers: int | None, dashboard: bool, slurm: Any):
        self.arg, self.max_workers, self.want_dashboard, self.slurm = client, max_workers, dashboard, slurm
        self.client: Any = None
        self.dashboard: str | None = None
        self.probed = False

    def start(self, stack: contextlib.ExitStack) -> Any:
        from z2t_dask.batch.cluster import resolve_client

        if self.client is None:
            self.client = stack.enter_context(
                resolve_client(self.arg, max_workers=self.max_workers, dashboard=self.want_dashboard, slurm=self.slurm)
            )
            if self.want_dashboard or self.slurm is not None:
                self.dashboard = getattr(self.client, "dashboard_link", None)
                if self.dashboard:
                    print(f"Dask dashboard: {self.dashboard}", file=sys.stderr)
                    log.info("dashboard %s", self.dashboard)
        return self.client

    def probe(self, out: Path) -> None:
        from z2t_dask.batch.cluster import probe_output_folder

        if self.client is not None and not self.probed:
            n = probe_output_folder(self.client, out)  # OutputFolderError: a worker does not see it
            if n:
                log.info("%d workers see the output folder %s", n, out)
            else:  # e.g. SLURM jobs still queued: run_job refuses to run where the folder is not visible
                log.info("no workers connected yet to probe %s; each job checks it where it runs", out)
            self.probed = True


def _remove_empty(out: Path, top: Path) -> None:
    """Remove ``out`` and its parents up to ``top`` while they are empty (never another run's files)."""
    p = out
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == top or p.parent == p:
            return
        p = p.parent


def _make_folder(out: Path) -> Path:
    """Create ``out`` (and missing parents); return the topmost folder created."""
    top = out
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    out.mkdir(parents=True, exist_ok=True)
    return top


def _execute(
    c: Any,
    to_run: list[Job],
    manifest: Manifest,
    out: Path,
    fn: Callable,
    strategy: str,
    retries: int,
    progress: bool | Callable,
) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = {}
    for job in to_run:
        manifest.jobs[job.name]["state"] = "running"
        manifest.jobs[job.name]["submitted"] = time.time()
        fut = c.submit(
            fn, job.to_dict(), str(out), strategy=strategy, key=f"z2t-job-{job.key}", retries=retries, pure=False
        )
        futures[fut] = job
    manifest.write()
    n_done = n_failed = 0
    bar = _ProgressBar(len(futures)) if progress is True else None
    try:
        for fut in as_completed(list(futures), loop=c.loop):
            job = futures[fut]
            entry = manifest.jobs[job.name]
            if fut.status == "finished":
                info = fut.result()
                entry.update(
                    {
                        "state": "done",
                        "outputs": info.get("outputs", {}),
                        "seconds": info.get("seconds"),
                        "finished": info.get("finished", time.time()),
                        "error": None,
                        "traceback": None,
                        "attempts": read_attempts(out, job.key) or info.get("attempt", 1),
                        "host": info.get("host"),
                        "records": info.get("records"),
                        "frames": info.get("frames"),
                    }
                )
                manifest.completed_order.append(job.name)
                n_done += 1
                log.info("done %s in %ss", job.name, info.get("seconds"))
            else:
                exc = fut.exception()
                if isinstance(exc, KilledWorker):
                    msg = (
                        f"this job kills workers (memory?): {exc}; the worker running it died "
                        "repeatedly (distributed.scheduler.allowed-failures)"
                    )
                else:
                    msg = f"{type(exc).__name__}: {exc}"
                trace = "".join(tb.format_tb(fut.traceback())) if fut.traceback() is not None else ""
                entry.update(
                    {
                        "state": "failed",
                        "error": msg,
                        "traceback": trace,
                        "finished": time.time(),
                        "attempts": read_attempts(out, job.key),
                    }
                )
                n_failed += 1
                log.error("failed %s: %s", job.name, msg)
            fut.release()
            manifest.write()
            if bar is not None:
                bar.update(n_done, n_failed)
            elif callable(progress):
                progress({"name": job.name, **entry})
    except KeyboardInterrupt:
        for fut, job in futures.items():
            if manifest.jobs[job.name]["state"] == "running":
                manifest.jobs[job.name]["state"] = "interrupted"
            fut.cancel()
        manifest.write()
        raise
    finally:
        if bar is not None:
            bar.close()
