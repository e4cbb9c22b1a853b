"""The workers' forkserver of a private LocalCluster: started once per process, warm (see :mod:`z2t_dask.batch.warm`).

Dask starts each worker process with ``distributed.worker.multiprocessing-method`` (default
``spawn``: every worker imports Dask, then a job's modules, kernels and PSF library on its first
job). A batch's private cluster instead forks its workers from this process's *forkserver*
(:func:`forkserver_workers`), which imports :data:`FORKSERVER_PRELOAD` once and runs a miniature of
the batch's first job (the *warm-up job*), so that every worker starts with all of it loaded.

The forkserver is the longest part of a batch's start (about 2.5 s of CPU on the 2-core
reference machine), so it starts as early as possible:

* :func:`start_forkserver` (``run_batch``): once the batch's jobs are known, with the warm-up job
  in its environment (:data:`WARM_JOB_ENV`, JSON);
* :func:`start_forkserver_early` (the ``z2t batch`` command, before it reads the batch config or
  imports NumPy and Dask: about 0.4 s earlier): the server starts its imports at once and waits,
  after them, for the warm-up job, which the following :func:`start_forkserver` call hands over
  in a file (:data:`WARM_JOB_ENV` holds ``@<pid>:<path>``; see
  :func:`z2t_dask.batch.warm.warm_process`). If that call finds that the server must not be used
  (the user chose another ``multiprocessing-method``) or was started with other variables than
  Dask's configuration asks for, it stops it (and starts a right one in the second case). A
  process that ends without that call (a bad config, nothing to run) ends its server at exit
  (SIGTERM: it has only imported modules), so that a caller reading the command's output is not
  kept waiting; a server that outlives its parent anyway stops waiting for the job.

Only the first start of a process's forkserver is warmed: a later cluster's workers are forked from
the same server, warm for the first batch's job.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "FORKSERVER_PRELOAD",
    "WARM_JOB_ENV",
    "forkserver_workers",
    "pre_spawn_environ",
    "start_forkserver",
    "start_forkserver_early",
    "warmed_job_key",
]

#: The workers' forkserver preload (module names): Dask's worker machinery, then a job's modules
#: (:mod:`z2t_dask.batch.warm`, named here so that this process does not import them).
FORKSERVER_PRELOAD = ("distributed", "distributed.nanny", "distributed.worker", "z2t_dask.batch.warm")

#: Environment variable that makes :mod:`z2t_dask.batch.warm` warm a forkserver: the JSON of the
#: job whose miniature it runs (empty: none), or ``@<pid>:<path>``: a file that process (the
#: server's parent) will write that JSON to (:func:`start_forkserver_early`). Set only while the
#: server is started.
WARM_JOB_ENV = "Z2T_WARM_JOB"
#: A job bigger than this (bytes of JSON) is not handed to the forkserver (the environment's limits).
_WARM_JOB_MAX = 64 * 1024

_lock = threading.Lock()
_state: dict[str, Any] = {
    "preloaded": False,  # this process's forkserver was started with FORKSERVER_PRELOAD
    "warmed": None,  # the key of the job whose miniature it runs
    "early": None,  # (job file, environment it was started with): started early, job not handed over yet
    "job_file": None,  # an early server's job file (removed at exit if the server did not read it)
}


def _multiprocessing_method() -> str:
    import dask

    return str(dask.config.get("distributed.worker.multiprocessing-method", "spawn"))


def _forkserver_available() -> bool:
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods()


def _warm_payload(job: Any) -> tuple[str, str | None]:
    """The JSON handed to the forkserver for ``job`` (a Job or its dict; None: none) and the job's key."""
    if job is None:
        return "", None
    d = job.to_dict() if hasattr(job, "to_dict") else dict(job)
    try:
        text = json.dumps(d, allow_nan=False)
    except (TypeError, ValueError):  # not plain JSON: no warm-up job (the imports still happen)
        return "", None
    return (text, d.get("key")) if len(text) <= _WARM_JOB_MAX else ("", None)


def _spawn(value: str, env: dict[str, str], *, keep_env: bool) -> None:
    """Start the forkserver with ``env`` and ``WARM_JOB_ENV=value`` (this process keeps ``env`` if ``keep_env``)."""
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(FORKSERVER_PRELOAD))
    saved = {k: os.environ.get(k) for k in [*env, WARM_JOB_ENV]}
    os.environ.update(env)
    os.environ[WARM_JOB_ENV] = value  # read (and removed) by the server's warm-up only
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if k != WARM_JOB_ENV and keep_env:
                continue
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stopper() -> Any:
    """The function that stops this process's forkserver and waits for it to exit (None: none known)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_stop", None)


def _hand_over(path: str, payload: str) -> None:
    """Write the warm-up job for an early forkserver (atomically: it reads the file once it exists)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        Path(tmp).write_text(payload)
        os.replace(tmp, path)
    except OSError:  # the server waits until this process exits, then goes on without a job
        Path(tmp).unlink(missing_ok=True)


def start_forkserver_early() -> bool:
    """Start this process's forkserver now, before the batch's jobs are known; whether it started.

    For the ``z2t batch`` command: called before it imports NumPy and Dask and reads the config.
    The server is started with the variables :func:`pre_spawn_environ` gives without Dask's
    configuration (this process's environment is left as it is) and waits, after its imports,
    for its warm-up job: the next :func:`start_forkserver` call hands it over (or stops the server
    if it must not be used). Does nothing when a forkserver was started already or the platform
    has none.
    """
    if not _forkserver_available():
        return False
    with _lock:
        if _state["preloaded"]:
            return False
        env = pre_spawn_environ()
        fd, path = tempfile.mkstemp(prefix="z2t-warm-job-", suffix=".json")
        os.close(fd)
        os.unlink(path)  # the server reads it once it exists: created by _hand_over
        _spawn(f"@{os.getpid()}:{path}", env, keep_env=False)
        _state.update(preloaded=True, early=(path, env), job_file=path)
        atexit.register(_end_unused_early)
    return True


def _end_unused_early() -> None:
    """At exit: end an early forkserver that never got its job (nothing ran: it has only imported
    modules), and remove its job file if the server did not read it (it stopped waiting first)."""
    from multiprocessing import forkserver

    if _state["early"] is not None:
        pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    if _state["job_file"]:
        Path(_state["job_file"]).unlink(missing_ok=True)


def start_forkserver(warm_job: Any = None) -> bool:
    """Start this process's forkserver with :data:`FORKSERVER_PRELOAD` now (idempotent); whether it applies.

    Parameters
    ----------
    warm_job : Job or dict, optional
        A job whose miniature the server runs after its imports (:mod:`z2t_dask.batch.warm`), so
        that the workers it forks start with that job's PSF library, kernels and modules loaded.
        Used only by the call that starts the server, or hands the job to a server started by
        :func:`start_forkserver_early` (:func:`warmed_job_key` tells which job).

    Not applied (False): a ``distributed.worker.multiprocessing-method`` the user set (not
    ``spawn``), or a platform without ``forkserver``. Needs Dask's configuration only, not
    ``distributed``: called before this process imports it, the server's imports overlap that.
    """
    applies = _multiprocessing_method() == "spawn" and _forkserver_available()
    payload, key = _warm_payload(warm_job)
    with _lock:
        early = _state["early"]
        if early is not None:  # started early: hand over the job, or stop a server that must not serve
            _state["early"] = None
            path, env = early
            stop = _stopper()
            if applies and (env == pre_spawn_environ() or stop is None):
                _hand_over(path, payload)
                os.environ.update(env)  # as a Nanny does in its process before starting a worker
                _state["warmed"] = key
            else:  # not to be used, or other variables (rare): it goes on without a job, then stops
                _hand_over(path, "")
                if stop is not None:
                    stop()
                _state["preloaded"] = False
        if not applies:
            return False
        if not _state["preloaded"]:  # the preload is read when the server starts: a running one keeps its own
            _spawn(payload, pre_spawn_environ(), keep_env=True)  # this process keeps them, as a Nanny's does
            _state.update(preloaded=True, warmed=key)
        else:
            from multiprocessing import forkserver

            forkserver.ensure_running()
    return True


def warmed_job_key() -> str | None:
    """The key of the job whose miniature this process's forkserver ran at its start (None: none)."""
    return _state["warmed"]


def pre_spawn_environ() -> dict[str, str]:
    """The variables a Dask nanny sets in its own process before starting a worker process.

    ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``,
    ``OPENBLAS_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``; a variable already set wins) and
    ``PYTHONHASHSEED=6640``: read when the process starts or imports NumPy, so the forkserver must
    start with them (its workers inherit its libraries and hash seed). Read from Dask's
    configuration, with ``distributed``'s defaults from its YAML file when Dask is not imported
    yet (this function does not import it) or ``distributed`` not yet.
    """
    import importlib.util
    import sys

    key = "distributed.nanny.pre-spawn-environ"
    cfg = None
    if "dask" in sys.modules:
        import dask

        cfg = dask.config.get(key, None)
    if cfg is None:  # distributed not imported: its defaults, without importing it
        try:
            import yaml

            spec = importlib.util.find_spec("distributed")
            folder = Path(next(iter(spec.submodule_search_locations or [])))  # type: ignore[union-attr]
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML's: 4 ms here, not 45
            text = (folder / "distributed.yaml").read_text()
            cfg = yaml.load(text, Loader=loader)["distributed"]["nanny"]["pre-spawn-environ"]
        except Exception:  # pragma: no cover - an unusual install: the nanny still sets them for the worker
            cfg = {}
    env = {str(k): os.environ.get(str(k), str(v)) for k, v in (cfg or {}).items() if v is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"  # as distributed.nanny.Nanny: the same hash seed in every worker
    return env


@contextlib.contextmanager
def forkserver_workers(warm_job: Any = None) -> Iterator[bool]:
    """Start the worker processes made in the ``with`` block from a warm forkserver; yield whether it applies.

    Inside the block ``distributed.worker.multiprocessing-method`` is ``forkserver`` and the server
    is :func:`start_forkserver`'s: one process imports :data:`FORKSERVER_PRELOAD` once and each
    worker is forked from it (copy-on-write). Left alone: see :func:`start_forkserver`. The
    forkserver lives as long as this process and keeps the preload of its first start (a later
    cluster's workers are forked from it too). Workers a nanny restarts after the block use the
    configured method again. ``warm_job``: see :func:`start_forkserver`.
    """
    if not start_forkserver(warm_job):
        yield False
        return
    import dask
    from distributed import utils as dutils

    if hasattr(dutils, "_forkserver_preload_set"):  # Dask would set its own preload, importing pandas, lz4... here
        dutils._forkserver_preload_set = True
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield True
