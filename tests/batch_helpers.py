"""Task functions for batch tests (importable by Dask workers, not defined in a test's __main__)."""

from __future__ import annotations

from pathlib import Path

from z2t_dask.batch import run_job


def flaky_run_job(job, out_root, **kw):
    """Raise on a job's first attempt, then behave like run_job."""
    flag = Path(out_root) / f".flaky-{job['key']}"
    if not flag.exists():
        flag.write_text("failed once")
        raise RuntimeError("transient failure (first attempt)")
    return run_job(job, out_root, **kw)


def always_failing_job(job, out_root, **kw):
    raise ValueError(f"deterministic failure of {job['name']}")


def worker_killing_job(job, out_root, **kw):
    """Kill the worker process running it (as an out-of-memory kill would)."""
    import os

    os._exit(1)
