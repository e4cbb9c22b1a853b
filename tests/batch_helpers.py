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


def quick_job(job, out_root, **kw):
    """A job without simulation: one small output file and the marker, as run_job writes them.

    Sleeps ``Z2T_TEST_JOB_SLEEP`` seconds (default 0) first, so a test can catch a batch mid-way.
    """
    import json
    import os
    import time

    from z2t_dask.batch.checksums import record_outputs
    from z2t_dask.batch.jobs import JOB_MARKER, _bump_attempts, finished_marker
    from z2t_dask.io.atomic import atomic_path

    folder = Path(out_root) / job["name"]
    done = finished_marker(folder, job["key"])
    if done is not None:
        return {**done, "reused": True}
    attempt = _bump_attempts(Path(out_root), job["key"])
    time.sleep(float(os.environ.get("Z2T_TEST_JOB_SLEEP", "0")))
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "data.json") as tmp:
        Path(tmp).write_text(json.dumps({"seed": job["seed"], "name": job["name"]}))
    info = {
        "key": job["key"],
        "name": job["name"],
        "outputs": record_outputs(folder, exclude=(JOB_MARKER,)),
        "seconds": 0.0,
        "attempt": attempt,
        "finished": time.time(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    with atomic_path(folder / JOB_MARKER) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1, sort_keys=True))
    return info
