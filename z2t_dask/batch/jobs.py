"""One job on a worker: :func:`run_job`, its finished marker, its attempt counter, output checksums.

A job writes its sample folder atomically and then a marker ``z2t_job.json`` (key, outputs with
their sizes, modification times and sha256, timings), so running it again with the same key is a
no-op (:func:`finished_marker`, which checks the outputs against the marker: fast, or every
sha256 with ``full=True``; see :mod:`z2t_dask.batch.checksums`). Every start bumps a small counter
file ``<output>/.z2t_attempts/<key>`` that the client reads back (:func:`read_attempts`): Dask
retries and killed workers are counted too. Workers never touch the manifest, and never create the
batch output folder: a worker that does not see it fails the job with a :class:`ClusterError`
naming the folder and the worker's host.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.batch.checksums import check_outputs, record_outputs
from z2t_dask.batch.spec import Job
from z2t_dask.errors import ClusterError, FormatError
from z2t_dask.io.remote import RemoteFolder, is_url

__all__ = [
    "ATTEMPTS_DIR",
    "IN_ONE_GO_BYTES",
    "JOB_MARKER",
    "check_marker",
    "finished_marker",
    "read_attempts",
    "read_marker",
    "run_job",
]

#: The marker of a finished job, in its sample folder.
JOB_MARKER = "z2t_job.json"
#: Folder (in the batch output folder) of the per-job attempt counters.
ATTEMPTS_DIR = ".z2t_attempts"
#: A job's stack up to this size (bytes) is computed whole, in the task's thread, then written: a
#: worker runs one job per thread, and streaming's prefetch threads cost a W1 sample (1.3 MB) about
#: 0.08 s of CPU in GIL contention (0.35 -> 0.27 s per job, measured). Larger stacks stream.
IN_ONE_GO_BYTES = 64 * 2**20


def _bump_attempts(out_root: Path, key: str) -> int:
    d = out_root / ATTEMPTS_DIR
    d.mkdir(exist_ok=True)  # never the output folder itself (see run_job)
    p = d / key
    n = int(p.read_text() or 0) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


def read_attempts(out_root: str | os.PathLike, key: str) -> int:
    """How many times the job with ``key`` was started in the batch folder ``out_root`` (0 if never)."""
    if is_url(out_root):  # a batch on a store (batch/remote.py)
        from z2t_dask.batch.remote import read_remote_attempts

        return read_remote_attempts(RemoteFolder(out_root), key)  # type: ignore[arg-type]
    p = Path(out_root) / ATTEMPTS_DIR / key
    try:
        return int(p.read_text())
    except (OSError, ValueError):
        return 0


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The job marker (``z2t_job.json``) of a sample folder: None when absent.

    Raises
    ------
    FormatError
        The marker exists but is not a JSON object (names the file).
    """
    m = Path(folder) / JOB_MARKER
    try:
        info = json.loads(m.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{m}: unreadable job marker ({exc})") from None
    if not isinstance(info, dict):
        raise FormatError(f"{m}: a job marker must be a JSON object")
    return info


def check_marker(folder: Path, key: str, *, full: bool = False) -> tuple[dict | None, list[str]]:
    """A job folder's marker if it is the job with ``key``, and what differs from its recorded outputs.

    Parameters
    ----------
    folder
        The job's sample folder.
    key
        The job key the marker must carry.
    full
        Recompute every output's sha256 (else the fast size + modification time check).

    Returns
    -------
    (dict or None, list of str)
        ``(None, [])`` when there is no readable marker for ``key``; otherwise the marker and the
        damaged files (one line each, naming the file; empty when every output matches).
    """
    if is_url(folder):  # a job folder on a store (batch/remote.py)
        from z2t_dask.batch.remote import check_remote_marker

        return check_remote_marker(RemoteFolder(folder), key, full=full)  # type: ignore[arg-type]
    try:
        info = read_marker(folder)
    except FormatError:
        return None, []
    if info is None or info.get("key") != key:
        return None, []
    outputs = info.get("outputs")
    if not isinstance(outputs, Mapping) or not outputs:
        return info, [f"{folder / JOB_MARKER}: records no outputs"]
    return info, check_outputs(folder, outputs, full=full)


def finished_marker(folder: Path, key: str, *, full: bool = False) -> dict | None:
    """The marker of a finished job folder if it matches ``key`` and its outputs match their record.

    ``full=False`` checks sizes and modification times (hashing files whose time changed);
    ``full=True`` recomputes every sha256 (see :func:`check_marker`).
    """
    info, problems = check_marker(folder, key, full=full)
    return None if info is None or problems else info


def run_job(
    job: Job | Mapping[str, Any],
    out_root: str | os.PathLike,
    *,
    strategy: str = "serial",
    storage_options: Mapping[str, Any] | None = None,
) -> dict:
    """Produce one job's sample folder (idempotent). Returns small metadata, never arrays.

    ``strategy="serial"`` computes the sample's graph in this task; ``"spread"`` hands it to the
    cluster through ``worker_client()`` so one large sample uses every worker. An ``out_root``
    URL (``s3://...``, with ``storage_options``) is written by :func:`z2t_dask.batch.remote.run_remote_job`.
    """
    from z2t_dask.io.atomic import atomic_path
    from z2t_dask.sample import simulate

    if is_url(out_root):  # a batch on a store: the marker written last commits (batch/remote.py)
        from z2t_dask.batch.remote import run_remote_job

        return run_remote_job(job, RemoteFolder(out_root, storage_options), strategy=strategy)  # type: ignore[arg-type]
    if isinstance(job, Mapping):
        job = Job(**job)
    root = Path(out_root)
    if not root.is_dir():  # the client resolved it: a worker that does not see it must not create its own
        raise ClusterError(
            f"the batch output folder {root} does not exist on worker host {os.uname().nodename}: "
            "workers must share the client's filesystem (use a shared --output-dir)"
        )
    folder = root / job.name
    done = finished_marker(folder, job.key)
    if done is not None:
        return {**done, "reused": True}
    attempt = _bump_attempts(root, job.key)
    t0 = time.time()
    sample = simulate(job.config, seed=job.seed)
    if strategy == "spread":
        from distributed import worker_client

        with worker_client() as client:
            sample.save(folder, overwrite=True, scheduler=client.get)
    else:  # a small stack is computed in one go in this thread: prefetch threads only fight for the GIL here
        small = sample.frames.nbytes <= IN_ONE_GO_BYTES
        sample.save(folder, overwrite=True, scheduler="sync", streaming=not small)
    info = {
        "key": job.key,
        "name": job.name,
        "seed": job.seed,
        "params": job.params,
        "outputs": record_outputs(folder, exclude=(JOB_MARKER,)),
        "seconds": round(time.time() - t0, 3),
        "attempt": attempt,
        "frames": int(sample.frames.shape[0]),
        "records": int(sample.truth.n_records),
        "finished": time.time(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    with atomic_path(folder / JOB_MARKER) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1, sort_keys=True, default=str))
    return info
