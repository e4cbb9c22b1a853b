"""Batch engine: many samples × parameter grids as futures on dask.distributed (the client side).

:func:`run_batch` loads a batch config (:mod:`z2t_dask.batch.spec`), validates each grid point
once and makes jobs on demand (:class:`~z2t_dask.batch.grid.BatchJobs`), and submits them in a
bounded window (:mod:`z2t_dask.batch.submit`), each as ``client.submit(run_job, ...,
key="z2t-job-<key>", retries=N)`` (:mod:`z2t_dask.batch.jobs`); a job writes its sample folder
atomically and a marker ``z2t_job.json`` (key, outputs, checksums), so re-running it is a no-op.

Only this (client) process writes the manifest (:mod:`z2t_dask.batch.manifest`: an SQLite store,
one transaction per job change): key, state, attempts, error and traceback, outputs and checksums,
timings. A rerun skips jobs done with the same key, redoes changed or unfinished ones, leaves
failed ones failed unless ``retry_failed``; ``manifest.json`` and the original
``batch_status.json`` are exported when the run starts and ends, for people and existing scripts.
The log goes to ``batch.log`` in the output folder. Exit codes: 0 all done, 1 some failed, 2 bad
config, Zmap or paths, a failed cluster start, workers that do not see the output folder, or a folder another run holds.

Safety: every user path is absolute before anything is submitted; the output folder is locked for
the run (:mod:`z2t_dask.batch.lock`) and probed from the workers; a finished job is skipped only
when its outputs match their recorded checksums (:mod:`z2t_dask.batch.checksums`; ``verify=True``
rehashes every file); a Ctrl-C cancels the jobs, marks them ``interrupted`` and closes the cluster
quietly (the rerun redoes them).
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from z2t_dask.batch.grid import BatchJobs
from z2t_dask.batch.jobs import JOB_MARKER, run_job
from z2t_dask.batch.lock import batch_lock
from z2t_dask.batch.manifest import MANIFEST, Manifest
from z2t_dask.batch.plan import check_inputs, plan_jobs, prebuild_libraries
from z2t_dask.batch.remote import batch_places, job_function, mirror_state
from z2t_dask.batch.spec import (
    SCHEMA_VERSION,
    BatchConfigError,
    BatchSpec,
    Job,
    expand_jobs,
    job_key,
    load_batch_config,
)
from z2t_dask.batch.submit import execute
from z2t_dask.io.remote import is_url, resolve_output

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
    window: int | None = None  # the most jobs in flight allowed (None: nothing was run)
    max_in_flight: int = 0  # the most jobs that were submitted and unfinished at once

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


def _clean_stale_temps(out: Path) -> int:
    """Remove every temporary (``.<name>.tmp-*``) under ``out`` (one ``os.scandir`` walk); how many."""
    n = 0
    stack = [str(out)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") and fnmatch.fnmatchcase(e.name, ".*.tmp-*"):
                shutil.rmtree(e.path, ignore_errors=True) if e.is_dir(follow_symlinks=False) else os.unlink(e.path)
                n += 1
            elif e.is_dir(follow_symlinks=False):
                stack.append(e.path)
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
    window: int | None = None,
    state_dir: str | os.PathLike | None = None,
) -> BatchResult:
    """Run a batch on a Dask cluster; resumable.

    Before anything is written, the config is validated, every distinct Zmap and sCMOS map is
    checked once on the client (:func:`~z2t_dask.batch.plan.check_inputs`) and, for a new output
    folder, the cluster is started: a bad input or a failed start (no bokeh for the dashboard, no
    ``sbatch``, an unreachable scheduler) leaves no output folder behind. A private LocalCluster
    starts in a background thread while the inputs are checked (a bad input closes it, a failed
    start raises once they pass); its workers are forked warm
    (:func:`~z2t_dask.batch.cluster.forkserver_workers`), and until it is up this process builds
    the batch's fast PSF libraries into the on-disk cache, which the workers then load
    (:func:`~z2t_dask.batch.plan.prebuild_libraries`). The output folder is
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
    state_dir
        With a URL ``output_dir`` (``s3://bucket/run``, outputs on a store): the local folder of the
        manifest, lock and log (default ``~/.cache/z2t/batches/<hash of the URL>``; see
        :mod:`z2t_dask.batch.remote`, which also mirrors ``manifest.json`` to the store at the end).
    window
        The most jobs submitted and unfinished at once (default: a few times the cluster's
        worker threads, re-read as workers come and go; :mod:`z2t_dask.batch.submit`).

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
        spec.output_dir = resolve_output(output_dir)
    # the client's folder, never a worker's; a URL output: a local state folder + the store (batch/remote.py)
    out, root, remote = batch_places(spec.output_dir, spec.storage_options, state_dir)
    spec.output_dir = remote.url if remote else out
    jobs = BatchJobs(spec)  # every grid point validated once; jobs made on demand
    n_retries = spec.retries if retries is None else int(retries)
    session = _ClientSession(client, max_workers=max_workers or spec.max_workers, dashboard=dashboard, slurm=slurm)
    with contextlib.ExitStack() as stack:
        fresh = not out.exists()
        if fresh:  # a new batch: its cluster starts while the inputs are checked (closed if they are bad)
            session.warm_job = jobs[0] if len(jobs) else None
            session.start_background(stack)
        check_inputs(jobs.point_jobs(), spec.source)  # Zmaps, ROIs, sCMOS maps: refused before anything is written
        if fresh:  # the cluster must have started before anything is written: a failed start writes nothing
            warmed = [session.warm_job] if session.warm_job and session.warmed() else []  # the forkserver loads it
            prebuild_libraries(jobs.point_jobs(), stop=session.started, skip=warmed)  # while it starts
            session.start(stack)
            created = _make_folder(out)
            try:
                session.probe(root)
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
            for name in jobs.names():
                (root / name).rmtree() if remote else shutil.rmtree(out / name, ignore_errors=True)
        manifest = Manifest(out, spec, resume)
        stack.callback(manifest.close)
        to_run = plan_jobs(jobs, manifest, root, resume=resume, retry_failed=retry_failed, verify=verify)
        in_batch = set(jobs.names())
        with manifest.bulk():
            for name, state in manifest.states().items():
                if name not in in_batch and state != "not-in-batch":
                    manifest.set_state(name, "not-in-batch")
        manifest.add_run({"started": t_start, "jobs": len(jobs), "to_run": len(to_run)})
        log.info("batch %s: %d jobs, %d to run, output %s", spec.source or "<dict>", len(jobs), len(to_run), out)
        sub = None
        if to_run:
            try:
                session.warm_job = session.warm_job or jobs[to_run[0]]  # a resumed batch: its first job to run
                c = session.start(stack)
                session.probe(root)
            except BaseException:
                manifest.discard()  # a store this run created: nothing written for a batch that cannot start
                raise
            manifest.write()
            threads = sum(c.nthreads().values()) or 1
            chosen = strategy or spec.strategy
            if chosen == "auto":
                chosen = "serial" if len(to_run) >= 2 * threads else "spread"
            log.info("strategy %s (%d jobs, %d worker threads), retries %d", chosen, len(to_run), threads, n_retries)
            try:
                fn = job_function(job_fn or run_job, remote)  # + storage options for a store
                sub = execute(c, jobs, to_run, manifest, root, fn, chosen, n_retries, progress, window=window)
            except KeyboardInterrupt:
                manifest.write()
                raise
        stale = _clean_stale_temps(out) if to_run else 0  # e.g. the temp folder of a worker killed mid-job
        if stale:
            log.info("removed %d temporary leftovers of killed or interrupted jobs", stale)
        manifest.update_run({"finished": time.time()})
        manifest.write()
        if remote is not None:  # manifest.json, batch_status.json, batch.log beside the job folders
            mirror_state(out, remote)
        result = BatchResult(
            out,
            {n: j for n, j in manifest.entries() if n in in_batch},
            time.time() - t_start,
            session.dashboard,
            window=sub.window if sub else None,
            max_in_flight=sub.max_in_flight if sub else 0,
        )
        log.info("%s", result.summary())
        return result


class _ClientSession:
    """The batch's Dask client, started on first need (and probed once the output folder exists)."""

    def __init__(self, client: Any, *, max_workers: int | None, dashboard: bool, slurm: Any):
        self.arg, self.max_workers, self.want_dashboard, self.slurm = client, max_workers, dashboard, slurm
        self.warm_job: Job | None = None  # a private LocalCluster's forkserver runs its miniature (batch/warm.py)
        self.client: Any = None
        self.dashboard: str | None = None
        self.probed = False
        self._thread: threading.Thread | None = None
        self._background: tuple[Any, dict[str, Any]] | None = None

    def _resolver(self) -> contextlib.AbstractContextManager:
        """The client's context manager; a private LocalCluster's forkserver is started here, in this thread.

        Its imports and warm-up job (the longest part of the start) begin at once, not when a
        background thread gets its turn.
        """
        from z2t_dask.batch.cluster import resolve_client, start_forkserver

        if self._private():
            start_forkserver(self.warm_job)
        return resolve_client(
            self.arg,
            max_workers=self.max_workers,
            dashboard=self.want_dashboard,
            slurm=self.slurm,
            warm_job=self.warm_job,
        )

    def _private(self) -> bool:
        """Whether :meth:`start` will start a private LocalCluster (no client, address, SLURM or current client)."""
        if self.client is not None or self.arg is not None or self.slurm is not None:
            return False
        if "distributed" not in sys.modules:
            return True
        from distributed import get_client

        try:
            get_client()
        except ValueError:
            return True
        return False

    def warmed(self) -> bool:
        """Whether this process's forkserver runs the miniature of :attr:`warm_job` (and so loads its library)."""
        from z2t_dask.batch.cluster import warmed_job_key

        return self.warm_job is not None and warmed_job_key() == self.warm_job.key

    def start_background(self, stack: contextlib.ExitStack) -> None:
        """Start the client in a thread now (:meth:`start` waits for it); ``stack`` closes it on any exit.

        The main thread meanwhile checks the batch's inputs: a bad input closes the cluster
        (after its start ends) and raises as before; a failed start raises in :meth:`start`.
        """
        if self.client is not None or self._thread is not None or self.arg is not None or self.slurm is not None:
            return  # only a private LocalCluster takes seconds to start; the others start in start()
        cm = self._resolver()
        box: dict[str, Any] = {}

        def enter() -> None:
            try:
                box["client"] = cm.__enter__()
            except BaseException as exc:  # raised in the main thread by start()
                box["error"] = exc

        ctx = contextvars.copy_context()  # get_client() sees a client made current in this thread
        self._thread = threading.Thread(target=ctx.run, args=(enter,), name="z2t-cluster-start", daemon=True)
        self._background = (cm, box)
        self._thread.start()
        stack.push(self._exit_background)

    def started(self) -> bool:
        """Whether the client is ready (or its background start has ended): nothing to wait for."""
        return self.client is not None or self._thread is None or not self._thread.is_alive()

    def _join(self) -> None:
        """Wait for a background start; adopt its client or raise its error."""
        if self._thread is None or self._background is None:
            return
        self._thread.join()
        cm, box = self._background
        if "error" in box:
            self._background = None
            raise box.pop("error")
        if self.client is None:
            self.client = box["client"]
            self._announce()

    def _exit_background(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """Close a background-started client (waiting for its start first), like ``stack.enter_context`` would."""
        if self._thread is None or self._background is None:
            return False
        self._thread.join()
        cm, box = self._background
        self._background = None
        if "client" not in box:
            return False
        return bool(cm.__exit__(exc_type, exc, tb))

    def start(self, stack: contextlib.ExitStack) -> Any:
        if self._thread is not None:
            self._join()
        if self.client is None:
            self.client = stack.enter_context(self._resolver())
            self._announce()
        return self.client

    def _announce(self) -> None:
        if self.want_dashboard or self.slurm is not None:
            self.dashboard = getattr(self.client, "dashboard_link", None)
            if self.dashboard:
                print(f"Dask dashboard: {self.dashboard}", file=sys.stderr)
                log.info("dashboard %s", self.dashboard)

    def probe(self, out: Any) -> None:
        from z2t_dask.batch.cluster import probe_output_folder
        from z2t_dask.batch.remote import probe_remote

        if self.client is not None and not self.probed:
            probe = probe_remote if is_url(out) else probe_output_folder
            n = probe(self.client, out)  # OutputFolderError: a worker does not see it
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
