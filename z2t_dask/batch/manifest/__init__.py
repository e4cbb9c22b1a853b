"""The batch manifest: an SQLite store with one row per job, and its JSON exports. The only reader and writer.

The client process (:func:`z2t_dask.batch.run_batch`) owns the manifest of a batch output folder;
workers never touch it. It lives in ``manifest.sqlite`` (SQLite in WAL mode, ``synchronous=NORMAL``):
one row per job, and each change of a job (submitted, finished, failed) is one small transaction,
so a job costs the same at 100 or 100,000 jobs (about 0.1 ms here), a reader (``z2t inspect``)
sees a consistent state while a batch runs, and a driver killed at any moment (SIGKILL) leaves a
store that opens with every committed change (a power loss may lose the last few, which the job
markers still carry: a rerun adopts those jobs). An append-only journal was measured too (15 us
per update against 100 us) but needs compaction, a full replay for every reader and its own
torn-line handling; the job cost (>= 10 ms) makes the difference invisible.

The document a reader gets (:func:`read_manifest`), and ``manifest.json`` holds, is a JSON object::

    {"schema": 1,                      # SCHEMA_VERSION of z2t_dask.batch.spec
     "batch": {"description", "source", "seed", "retries"},
     "jobs": {"<job folder>": {"key", "seed", "params", "index", "state", "attempts", "outputs",
                               "seconds" (s), "submitted"/"finished" (Unix time, s), "error",
                               "traceback", "host", "records", "frames"}},
     "runs": [{"started", "finished" (Unix time, s), "jobs", "to_run"}],
     "updated": <Unix time, s>}

A job's ``state`` is one of ``pending``, ``running``, ``done``, ``skipped`` (done in an earlier
run), ``failed``, ``interrupted`` or ``not-in-batch`` (no longer part of the batch config).
``manifest.json`` and the original tool's ``batch_status.json`` (``completed_jobs``,
``failed_jobs``, ``start_time``, ``last_update``) are exports for people and scripts: written when
a run starts and ends and on demand (:func:`export_manifest`), never per job; a reader that wants
the live state calls :func:`read_manifest`. A folder with only a ``manifest.json`` (written before
the store existed) is migrated into a store on its first resume.

Readers (``z2t inspect``, ``z2t preview``, ``z2t export``, verify) use :func:`read_manifest` /
:func:`read_status`, which name the file in their error on a malformed, truncated or damaged one.
"""

from __future__ import annotations

from z2t_dask.batch.manifest.files import (
    MANIFEST,
    STATUS,
    STORE,
    export_manifest,
    has_manifest,
    ordered_jobs,
    read_manifest,
    read_status,
)
from z2t_dask.batch.manifest.store import Manifest

__all__ = [
    "MANIFEST",
    "STATUS",
    "STORE",
    "Manifest",
    "export_manifest",
    "has_manifest",
    "ordered_jobs",
    "read_manifest",
    "read_status",
]
