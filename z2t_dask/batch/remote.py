"""Batches whose outputs live on a store (``--output-dir s3://bucket/run``): see :mod:`z2t_dask.io.remote`.

Where things live:

* the job folders ``<url>/<job name>/`` on the store, each written by :func:`run_remote_job` on a
  worker (:func:`~z2t_dask.sample.remote.save_to_url`: OME-Zarr chunks straight to the store,
  the other files staged locally and uploaded) and committed by its marker ``z2t_job.json``,
  written last; a folder without its marker is not done: its leftovers are cleared and the job
  redone by the next run;
* the per-job attempt counters ``<url>/.z2t_attempts/<key>`` (written by the workers);
* the manifest, the lock and ``batch.log`` in a local *state folder* on the client (SQLite needs a
  local disk): ``--state-dir``, else ``~/.cache/z2t/batches/<sha256 of the URL>`` (:func:`state_folder`).
  ``manifest.json``, ``batch_status.json`` and ``batch.log`` are mirrored to ``<url>/`` when the
  run ends (:func:`mirror_state`), so ``z2t inspect s3://...`` works from anywhere; a client whose
  state folder is new starts from that mirror, and jobs finished but not recorded are adopted
  from their markers.

The lock is local: two clients on different machines writing the same URL are not kept apart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.batch.spec import Job
from z2t_dask.errors import FormatError, OutputFolderError
from z2t_dask.io.remote import SAMPLE_MARKER, RemoteFolder, cache_root, check_remote_files, is_url, store_errors

__all__ = [
    "MIRRORED",
    "check_remote_marker",
    "mirror_state",
    "probe_remote",
    "read_remote_attempts",
    "run_remote_job",
    "state_folder",
]

log = logging.getLogger("z2t_dask.batch")

#: The job marker (as :data:`z2t_dask.batch.jobs.JOB_MARKER`) and attempts folder (as ``ATTEMPTS_DIR``).
JOB_MARKER = "z2t_job.json"
ATTEMPTS_DIR = ".z2t_attempts"
#: Files of the state folder copied to the store when a run ends.
MIRRORED = ("manifest.json", "batch_status.json", "batch.log")


def state_folder(url: str, state_dir: str | os.PathLike | None = None) -> Path:
    """The local state folder of a batch on a store: ``state_dir`` (absolute), else in the cache."""
    if state_dir is not None:
        return Path(os.path.abspath(state_dir))
    return cache_root() / "batches" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:24]


def fetch_state(root: RemoteFolder, state: Path) -> bool:
    """Start a new state folder from the store's mirrored ``manifest.json`` (True if copied)."""
    if state.exists() and any(state.iterdir()):
        return False
    mirror = root / "manifest.json"
    if not mirror.exists():
        return False
    mirror.download(state / "manifest.json")
    log.info("state folder %s started from %s", state, mirror.url)
    return True


def mirror_state(state: Path, root: RemoteFolder) -> list[str]:
    """Copy ``manifest.json``, ``batch_status.json`` and ``batch.log`` of the state folder to the store."""
    copied = []
    for name in MIRRORED:
        p = state / name
        if p.is_file():
            (root / name).write_bytes(p.read_bytes())
            copied.append(name)
    return copied


def check_remote_marker(folder: RemoteFolder, key: str, *, full: bool = False) -> tuple[dict | None, list[str]]:
    """As :func:`z2t_dask.batch.jobs.check_marker` for a job folder on a store.

    Returns ``(None, [])`` without a readable marker of ``key``; else the marker and what differs
    from its recorded outputs (sizes from one listing; every sha256 with ``full``).
    """
    try:
        info = (folder / JOB_MARKER).read_json()
    except FormatError:
        return None, []
    if info is None or info.get("key") != key:
        return None, []
    outputs = info.get("outputs")
    if not isinstance(outputs, Mapping) or not outputs:
        return info, [f"{folder.url}/{JOB_MARKER}: records no outputs"]
    return info, check_remote_files(folder, outputs, full=full)


def read_remote_attempts(root: RemoteFolder, key: str) -> int:
    """How many times the job with ``key`` was started in the batch at ``root`` (0 if never)."""
    try:
        return int((root / ATTEMPTS_DIR / key).read_text())
    except (OSError, ValueError):
        return 0


def _bump_attempts(root: RemoteFolder, key: str) -> int:
    n = read_remote_attempts(root, key) + 1
    (root / ATTEMPTS_DIR / key).write_text(str(n))
    return n


def run_remote_job(job: Job | Mapping[str, Any], root: RemoteFolder | str, *, strategy: str = "serial") -> dict:
    """Produce one job's sample folder on the store (idempotent), then its marker, last.

    A folder whose marker matches the job key and whose outputs match their record is reused;
    otherwise its marker is removed first, the sample written (:func:`~z2t_dask.sample.remote.save_to_url`,
    which clears leftovers of an interrupted write) and the marker written. Returns small metadata.
    """
    from z2t_dask.sample import simulate
    from z2t_dask.sample.remote import save_to_url

    if isinstance(job, Mapping):
        job = Job(**job)
    root = root if isinstance(root, RemoteFolder) else RemoteFolder(root)
    folder = root / job.name
    done, problems = check_remote_marker(folder, job.key)
    if done is not None and not problems:
        return {**done, "reused": True}
    attempt = _bump_attempts(root, job.key)
    (folder / JOB_MARKER).unlink(missing_ok=True)  # first: the folder reads as not done from here on
    t0 = time.time()
    sample = simulate(job.config, seed=job.seed)
    if strategy == "spread":
        from distributed import worker_client

        with worker_client() as client:
            save_to_url(sample, folder, overwrite=True, scheduler=client.get)
    else:
        save_to_url(sample, folder, overwrite=True, scheduler="sync")
    marker = (folder / SAMPLE_MARKER).read_json() or {}
    info = {
        "key": job.key,
        "name": job.name,
        "seed": job.seed,
        "params": job.params,
        "outputs": marker.get("files", {}),
        "url": folder.url,
        "seconds": round(time.time() - t0, 3),
        "attempt": attempt,
        "frames": int(sample.frames.shape[0]),
        "records": int(sample.truth.n_records),
        "finished": time.time(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    (folder / JOB_MARKER).write_json(info)  # last: the commit
    return info


def _sees_token(url: str, options: dict, token: str) -> tuple[str, bool]:
    """On a worker: (host, whether the probe object at ``url`` holds ``token``)."""
    try:
        ok = RemoteFolder(url, options).read_text() == token
    except Exception:  # noqa: BLE001 - any failure means the worker cannot use the store
        ok = False
    return os.uname().nodename, ok


def probe_remote(client: Any, root: RemoteFolder) -> int:
    """Check that every worker of ``client`` reads what the client writes at ``root`` (as
    :func:`~z2t_dask.batch.cluster.probe_output_folder` does for a folder; e.g. ``memory://`` is
    per process, invisible to workers in other processes).

    Raises
    ------
    OutputFolderError
        Naming the URL and the workers that cannot read it.
    """
    probe = root / f".z2t-probe-{secrets.token_hex(8)}"
    token = secrets.token_hex(16)
    probe.write_text(token)
    try:
        seen = client.run(_sees_token, probe.url, root.storage_options, token, on_error="return")
    finally:
        probe.unlink(missing_ok=True)
    blind = [
        f"{a} ({r[0] if isinstance(r, tuple) else r})"
        for a, r in sorted(seen.items())
        if not (isinstance(r, tuple) and r[1])
    ]
    if blind:
        raise OutputFolderError(
            f"the batch output {root.url} cannot be read back by {len(blind)} of {len(seen)} Dask workers: "
            f"{', '.join(blind[:5])}; give the workers the same storage options (environment) "
            "or use a store they reach (memory:// is private to one process)"
        )
    return len(seen)


def remote_root(output_dir: Any, storage_options: Mapping[str, Any] | None = None) -> RemoteFolder | None:
    """The store folder of a batch output given as a URL (None for a local folder)."""
    return RemoteFolder(str(output_dir), storage_options) if is_url(output_dir) else None


def batch_places(
    output_dir: Any, storage_options: Mapping[str, Any] | None, state_dir: str | os.PathLike | None
) -> tuple[Path, Any, RemoteFolder | None]:
    """Where a batch keeps its state and its job folders, resolved on the client.

    Returns
    -------
    (Path, Path or RemoteFolder, RemoteFolder or None)
        The local folder of the lock, log and manifest; the folder of the job folders; the store
        folder for a URL output (None for a local one). A local output is all three in one
        (absolute); a URL gets a local state folder (:func:`state_folder`, started from the
        store's mirrored manifest when new).
    """
    remote = remote_root(output_dir, storage_options)
    if remote is None:
        out = Path(os.path.abspath(output_dir))
        return out, out, None
    out = state_folder(remote.url, state_dir)
    with store_errors(remote.url):  # no bucket, no credentials, no endpoint: refused before anything runs
        fetch_state(remote, out)
        remote.prefetch((JOB_MARKER,))  # planning reads every job's marker and listing from memory
    log.info("batch output %s, state folder %s", remote.url, out)
    return out, remote, remote


def job_function(fn: Any, remote: RemoteFolder | None) -> Any:
    """The task function, given the store's storage options when it takes ``storage_options`` (as
    :func:`~z2t_dask.batch.jobs.run_job`) and the batch config sets some."""
    import functools
    import inspect

    if remote is None or not remote.storage_options:
        return fn
    try:
        takes = "storage_options" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    return functools.partial(fn, storage_options=remote.storage_options) if takes else fn
