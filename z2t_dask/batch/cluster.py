"""Where a batch runs: "a Client, an address, or nothing", and SLURM through dask-jobqueue.

:func:`resolve_client` mirrors ``distributed.Client(address)``: a :class:`distributed.Client` is
used as is; a scheduler address (``"tcp://host:8786"``) or a ``Cluster`` object is connected to;
``None`` reuses a client the user already made (notebooks) or starts a private
:class:`~distributed.LocalCluster`, closed at the end. Only what this function created is closed.
The private cluster's workers are forked from a forkserver that has imported a job's modules and
run a miniature of the batch's first job (:mod:`z2t_dask.batch.forkserver`,
:mod:`z2t_dask.batch.warm`): no worker pays them on its first job.

SLURM: :func:`slurm_cluster` builds a ``dask_jobqueue.SLURMCluster`` from a plain mapping (a YAML
file's content) — ``queue``, ``account``, ``cores``, ``processes``, ``memory``, ``walltime``,
``job_extra_directives``, ``job_script_prologue``, ``python``, ``local_directory``, plus
``jobs`` (how many SLURM jobs to ask for). Keys left out fall back to dask-jobqueue's own
configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__SLURM__*``).

Before any job runs, :func:`probe_output_folder` checks that every worker sees the batch output
folder (a token file the client writes there): a worker on another filesystem would otherwise
write the samples where the client never looks. Ctrl-C: the workers of a LocalCluster started
here ignore SIGINT (:class:`IgnoreSigint`; the client cancels their jobs and closes them), and
the distributed loggers are silenced while the cluster closes after an interrupt, so an
interrupted batch prints one line, not every worker's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from z2t_dask.batch.forkserver import (
    FORKSERVER_PRELOAD,
    WARM_JOB_ENV,
    forkserver_workers,
    pre_spawn_environ,
    start_forkserver,
    warmed_job_key,
)
from z2t_dask.errors import ClusterError, OutputFolderError

__all__ = [
    "FORKSERVER_PRELOAD",
    "LOCAL_CLUSTER_CONFIG",
    "SLURM_KEYS",
    "WARM_JOB_ENV",
    "ClusterError",
    "OutputFolderError",
    "forkserver_workers",
    "load_slurm_spec",
    "local_cluster_config",
    "pre_spawn_environ",
    "probe_output_folder",
    "resolve_client",
    "slurm_cluster",
    "start_forkserver",
    "warmed_job_key",
]

#: Dask settings of a private LocalCluster (read when it starts): its scheduler, nannies and workers
#: check their event loops every 200 ms instead of 20 ms and sample CPU and memory for the
#: dashboard every 2 s instead of 0.5 s, and the workers do not sample their threads' stacks every
#: 10 ms for the dashboard's profile page (both kept with the dashboard). Measured on 2 cores,
#: 2 idle workers: 120 -> 78 ms of CPU per second for the driver and workers together, then 35
#: without the stack sampling; jobs, memory limits (``distributed.worker.memory.monitor-interval``)
#: and work stealing unchanged.
LOCAL_CLUSTER_CONFIG = {
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.profile.enabled": False,
}
#: Keys of :data:`LOCAL_CLUSTER_CONFIG` left at Dask's defaults when the dashboard is asked for.
_DASHBOARD_KEYS = ("distributed.admin.system-monitor.interval", "distributed.worker.profile.enabled")


def local_cluster_config(dashboard: bool = False) -> dict[str, Any]:
    """The Dask settings of a private LocalCluster: :data:`LOCAL_CLUSTER_CONFIG`, less what a dashboard shows."""
    return {k: v for k, v in LOCAL_CLUSTER_CONFIG.items() if not dashboard or k not in _DASHBOARD_KEYS}


#: Prefix of the probe's token file in the batch output folder (removed after the probe).
PROBE_PREFIX = ".z2t_probe-"


SLURM_KEYS = (
    "queue",
    "account",
    "cores",
    "processes",
    "memory",
    "walltime",
    "job_extra_directives",
    "job_script_prologue",
    "python",
    "local_directory",
    "interface",
    "job_name",
    "jobs",
    "worker_extra_args",
    "death_timeout",
)


def load_slurm_spec(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read a SLURM spec (YAML/JSON path or mapping) and check its keys."""
    if isinstance(source, Mapping):
        spec = dict(source)
    else:
        import yaml

        p = Path(source)
        if not p.is_file():
            raise ClusterError(f"SLURM spec not found: {p}")
        spec = yaml.safe_load(p.read_text()) or {}
        if not isinstance(spec, dict):
            raise ClusterError(f"{p}: expected a mapping of SLURM settings")
    if "slurm" in spec and isinstance(spec["slurm"], Mapping):  # jobqueue.yaml style nesting
        spec = dict(spec["slurm"])
    spec = {k.replace("-", "_"): v for k, v in spec.items()}
    unknown = sorted(set(spec) - set(SLURM_KEYS))
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, SLURM_KEYS, 1, cutoff=0.45)
            hints.append(f"{k} (did you mean {close[0]}?)" if close else k)
        raise ClusterError(f"unknown SLURM setting(s): {', '.join(hints)}; known: {', '.join(SLURM_KEYS)}")
    return spec


def slurm_cluster(spec: str | os.PathLike | Mapping[str, Any], *, require_sbatch: bool = True):
    """A ``dask_jobqueue.SLURMCluster`` from a spec (see module doc). Not yet scaled."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the optional extra
        raise ClusterError("SLURM needs dask-jobqueue: pip install 'z2t-dask[slurm]'") from None
    spec = load_slurm_spec(spec)
    spec.pop("jobs", None)
    if require_sbatch and shutil.which("sbatch") is None:
        raise ClusterError("SLURM requested but 'sbatch' is not on PATH: run on a SLURM login node")
    return SLURMCluster(**spec)


def _sees_token(path: str, token: str) -> tuple[str, bool]:
    """On a worker: its host, and whether ``path`` holds ``token``."""
    try:
        ok = open(path).read() == token
    except OSError:
        ok = False
    return socket.gethostname(), ok


def probe_output_folder(client: Any, folder: str | os.PathLike) -> int:
    """Check that every worker of ``client`` sees ``folder`` (which the client has created).

    The client writes a token file in the folder; each worker reads it back through the same
    (absolute) path. Workers joining later are covered by :func:`~z2t_dask.batch.jobs.run_job`,
    which refuses to run when the folder does not exist where it runs.

    Returns
    -------
    int
        The number of workers probed (0: none connected yet).

    Raises
    ------
    OutputFolderError
        Naming the folder and the workers (address and host) that do not see it.
    """
    probe = Path(folder) / f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    token = secrets.token_hex(16)
    probe.write_text(token)
    try:
        seen = client.run(_sees_token, str(probe), token, on_error="return")
    finally:
        probe.unlink(missing_ok=True)
    blind = [
        f"{addr} ({res[0]})" if isinstance(res, tuple) else f"{addr} ({type(res).__name__}: {res})"
        for addr, res in sorted(seen.items())
        if not (isinstance(res, tuple) and res[1])
    ]
    if blind:
        raise OutputFolderError(
            f"the batch output folder {folder} is not visible to {len(blind)} of {len(seen)} Dask workers: "
            f"{', '.join(blind[:5])}{' ...' if len(blind) > 5 else ''}; use a folder on a filesystem "
            "the workers share with this machine (an absolute --output-dir)"
        )
    return len(seen)


def _ignore_sigint_plugin() -> Any:
    """A worker plugin: the worker process ignores Ctrl-C (see :func:`ignore_sigint`)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreSigint(WorkerPlugin):
        name = "z2t-ignore-sigint"

        def setup(self, worker: Any) -> None:
            ignore_sigint()

    return IgnoreSigint()


_QUIET_LOGGERS = ("distributed", "tornado", "asyncio")


def _silence_on_sigint(signum: int, frame: Any) -> None:
    """SIGINT in a worker process: keep running (the client stops the jobs) but log nothing more."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def ignore_sigint() -> None:
    """Make this process survive Ctrl-C silently, if called from its main thread (a worker's event loop).

    A terminal's Ctrl-C reaches every process of its group, the LocalCluster's workers too; they
    keep running and stop logging, and the interrupted client cancels their jobs and closes them.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _silence_on_sigint)


@contextlib.contextmanager
def quiet_distributed() -> Iterator[None]:
    """Silence the distributed (and tornado, asyncio) loggers for the ``with`` block, then restore them."""
    loggers = [logging.getLogger(n) for n in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


@contextlib.contextmanager
def resolve_client(
    client: Any = None,
    *,
    max_workers: int | None = None,
    threads_per_worker: int = 1,
    dashboard: bool = False,
    slurm: Any = None,
    memory_limit: str | None = None,
    warm_job: Any = None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (see module doc); close only what was created here.

    Parameters
    ----------
    client
        A Client, a scheduler address, a Cluster object, or ``None``.
    max_workers
        Workers of a private LocalCluster (default: all cores).
    dashboard
        Start the Dask dashboard (needs bokeh) on a free port.
    slurm
        A SLURM spec (path or mapping): start a SLURMCluster and scale it to ``jobs`` (default 1).
    warm_job
        A job for a private LocalCluster's forkserver to warm its workers with (:func:`start_forkserver`).
    """
    if client is None and slurm is None and "distributed" not in sys.modules:
        start_forkserver(warm_job)  # no client exists yet: a private LocalCluster's worker imports start now
    import dask
    from distributed import Client, LocalCluster, get_client

    owned: list[Any] = []
    interrupted = False
    try:
        if slurm is not None:
            spec = load_slurm_spec(slurm)
            cluster = slurm_cluster(spec)
            owned.append(cluster)
            cluster.scale(jobs=int(spec.get("jobs", 1)))
            c = Client(cluster, set_as_default=False)
            owned.append(c)
        elif isinstance(client, Client):
            c = client
        elif isinstance(client, str) or hasattr(client, "scheduler_address"):
            try:
                c = Client(client, set_as_default=False, timeout="10s")
            except OSError as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {client}: {exc}") from None
            owned.append(c)
        elif client is None:
            try:
                c = get_client()
            except ValueError:
                n = max_workers or os.cpu_count() or 1
                kwargs: dict[str, Any] = {
                    "n_workers": n,
                    "threads_per_worker": threads_per_worker,
                    "processes": True,
                    # a free port, also without the dashboard: the scheduler's HTTP server would
                    # otherwise try 8787 and warn on stderr when another cluster holds it
                    "dashboard_address": ":0",
                    "scheduler_kwargs": {"dashboard": bool(dashboard)},
                }
                if memory_limit:
                    kwargs["memory_limit"] = memory_limit
                if dashboard:
                    try:
                        import bokeh  # noqa: F401
                    except ImportError:
                        raise ClusterError("the dashboard needs bokeh: pip install 'z2t-dask[dashboard]'") from None
                quiet = local_cluster_config(dashboard)
                with dask.config.set(quiet), forkserver_workers(warm_job) as forked:  # forked warm (batch/warm.py)
                    if forked:  # a forked worker starts with the forkserver's environment: give it this one
                        kwargs["env"] = dict(os.environ)
                    cluster = LocalCluster(**kwargs)
                owned.append(cluster)
                c = Client(cluster, set_as_default=False)
                owned.append(c)
                c.register_plugin(_ignore_sigint_plugin())  # Ctrl-C: the client stops them, quietly
        else:
            raise TypeError(f"client must be a Client, an address, a Cluster or None, not {type(client).__name__}")
        yield c
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with quiet_distributed() if interrupted else contextlib.nullcontext():
            for obj in reversed(owned):
                with contextlib.suppress(Exception):
                    obj.close()
