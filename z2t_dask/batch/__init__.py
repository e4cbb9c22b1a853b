"""Many samples on dask.distributed: batch specs, jobs, the manifest, the runner and clusters.

=============  ==========================================================================
``spec``       the batch config and its jobs: :class:`BatchSpec`, :func:`load_batch_config`,
               :func:`expand_jobs`, job keys and seeds, user paths resolved on the client
``grid``       the jobs made on demand: :class:`~z2t_dask.batch.grid.BatchJobs` (each grid point
               validated once), shard folders
``jobs``       one job on a worker: :func:`run_job`, its finished marker, attempts
``checksums``  output checksums: recorded per job, the fast (size + time) and full (sha256) checks
``plan``       before a run: every distinct Zmap checked once, which jobs to skip, redo or run
``lock``       one batch per output folder: :func:`~z2t_dask.batch.lock.batch_lock`
``manifest``   the manifest store ``manifest.sqlite`` (one row per job) and its exports
               ``manifest.json`` / ``batch_status.json``, their only reader and writer:
               :class:`Manifest`, :func:`read_manifest`, :func:`export_manifest`
``runner``     the client side: :func:`run_batch`, :class:`BatchResult`
``submit``     bounded submission: at most a window of jobs in flight, consumed as they complete
``folders``    a batch folder's sizes in one walk (``z2t inspect`` of 10⁵ jobs)
``cluster``    which Dask client runs the batch (local, scheduler address, SLURM), the output
               folder probe, quiet Ctrl-C
``verify``     ``z2t inspect --verify``: a batch or sample folder against its recorded checksums
=============  ==========================================================================

Public names are imported lazily (PEP 562): ``import z2t_dask.batch`` (e.g. by a tool that only
reads a manifest) imports neither the config layer nor Dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from z2t_dask.batch.grid import BatchJobs
    from z2t_dask.batch.jobs import JOB_MARKER, run_job
    from z2t_dask.batch.lock import BatchLockError
    from z2t_dask.batch.manifest import MANIFEST, Manifest, export_manifest, read_manifest, read_status
    from z2t_dask.batch.runner import BatchResult, run_batch
    from z2t_dask.batch.spec import (
        SCHEMA_VERSION,
        BatchConfigError,
        BatchSpec,
        Job,
        expand_jobs,
        job_key,
        job_seed,
        load_batch_config,
    )

_EXPORTS = {
    **{
        name: "spec"
        for name in (
            "BatchConfigError",
            "BatchSpec",
            "Job",
            "SCHEMA_VERSION",
            "expand_jobs",
            "job_key",
            "job_seed",
            "load_batch_config",
        )
    },
    **{name: "jobs" for name in ("JOB_MARKER", "run_job")},
    "BatchLockError": "lock",
    "BatchJobs": "grid",
    **{name: "manifest" for name in ("MANIFEST", "Manifest", "export_manifest", "read_manifest", "read_status")},
    **{name: "runner" for name in ("BatchResult", "run_batch")},
}

__all__ = [
    "JOB_MARKER",
    "MANIFEST",
    "SCHEMA_VERSION",
    "BatchConfigError",
    "BatchJobs",
    "BatchLockError",
    "BatchResult",
    "BatchSpec",
    "Job",
    "Manifest",
    "expand_jobs",
    "export_manifest",
    "job_key",
    "job_seed",
    "load_batch_config",
    "read_manifest",
    "read_status",
    "run_batch",
    "run_job",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"z2t_dask.batch.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'z2t_dask.batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
