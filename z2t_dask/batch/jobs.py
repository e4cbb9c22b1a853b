"""One job on a worker: :func:`run_job`, its finished marker, its attempt counter, output checksums.

A job writes its sample folder atomically and then a marker ``z2t_job.json`` (key, outputs with
their sizes and sha256, timings), so running it again with the same key is a no-op
(:func:`finished_marker`). Every start bumps a small counter file
``<output>/.z2t_attempts/<key>`` that the client reads back (:func:`read_attempts`): Dask retries
and killed workers are counted too. Workers never touch the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.batch.spec import Job
from z2t_dask.errors import FormatError

__all__ = ["ATTEMPTS_DIR", "JOB_MARKER", "finished_marker", "read_attempts", "read_marker", "run_job"]

#: The marker of a finished job, in its sample folder.
JOB_MARKER = "z2t_job.json"
#: Folder (in the batch output folder) of the per-job attempt counters.
ATTEMPTS_DIR = ".z2t_attempts"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _outputs(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != JOB_MARKER:
            out[str(p.relative_to(folder))] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return out


def _bump_attempts(out_root: Path, key: str) -> int:
    d = out_root / ATTEMPTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    p = d / key
    n = int(p.read_text() or 0) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


def read_attempts(out_root: str | os.PathLike, key: str) -> int:
    """How many times the job with ``key`` was started in the batch folder ``out_root`` (0 if never)."""
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


def finished_marker(folder: Path, key: str) -> dict | None:
    """The marker of a finished job folder if it matches ``key`` and its outputs exist with their sizes."""
    try:
        info = read_marker(folder)
    except FormatError:
        return None
    if info is None:
        return None
    if info.get("key") != key:
        return None
    for rel, meta in info.get("outputs", {}).items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != meta.get("bytes"):
            return None
    return info


def run_job(job: Job | Mapping[str, Any], out_root: str | os.PathLike, *, strategy: str = "serial") -> dict:
    """Produce one job's sample folder (idempotent). Returns small metadata, never arrays.

    ``strategy="serial"`` computes the sample's graph in this task; ``"spread"`` hands it to the
    cluster through ``worker_client()`` so one large sample uses every worker.
    """
    from z2t_dask.io.atomic import atomic_path
    from z2t_dask.sample import simulate

    if isinstance(job, Mapping):
        job = Job(**job)
    root = Path(out_root)
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
    else:
        sample.save(folder, overwrite=True, scheduler="sync")
    info = {
        "key": job.key,
        "name": job.name,
        "seed": job.seed,
        "params": job.params,
        "outputs": _outputs(folder),
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
