"""What a batch run does before any job starts: check the Zmaps, decide which jobs to run.

:func:`check_zmaps` opens every distinct Zmap of a batch once on the client (a bad ``--zmap`` is
refused before any job runs). :func:`plan_jobs` sets each job's manifest entry for this run:
skipped (done earlier with the same key and outputs matching their checksums), pending (new,
changed, unfinished, damaged, or failed with ``retry_failed``) or left failed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from z2t_dask.batch.jobs import JOB_MARKER, check_marker
from z2t_dask.batch.manifest import Manifest
from z2t_dask.batch.spec import Job

__all__ = ["check_zmaps", "plan_jobs"]

log = logging.getLogger("z2t_dask.batch")


def check_zmaps(jobs: list[Job]) -> int:
    """Open every distinct Zmap of the jobs once, on the client, as the jobs will.

    Returns
    -------
    int
        The number of distinct Zmap readings checked.

    Raises
    ------
    ZmapError
        A ``zmap_path`` that is not a readable Zmap (the message names the file): the batch is
        refused before any job runs, instead of failing every job on the workers.
    """
    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import make_zmap
    from z2t_dask.errors import ZmapError

    seen: set[tuple] = set()
    for job in jobs:
        zp = job.config.get("zmap_path")
        if not zp:
            continue
        z, opt, psf = (job.config.get(k, {}) for k in ("zernike", "optical", "psf"))
        sig = (zp, z.get("convention"), z.get("units"), opt.get("wavelength_nm"), psf.get("n_modes"))
        if sig in seen:
            continue
        seen.add(sig)
        try:
            make_zmap(load_config(job.config))
        except ZmapError as exc:
            raise ZmapError(f"zmap_path (--zmap) of job {job.name}: {exc}") from None
    return len(seen)


def plan_jobs(
    jobs: list[Job], manifest: Manifest, out: Path, *, resume: bool, retry_failed: bool, verify: bool
) -> list[Job]:
    """Set each job's manifest entry for this run; return the jobs to run.

    A job done earlier with the same key is skipped when its outputs still match their record
    (the fast check, or every sha256 with ``verify``); damaged outputs are logged at WARNING,
    naming the files, their marker removed and the job redone.
    """
    to_run: list[Job] = []
    for job in jobs:
        prev = manifest.jobs.get(job.name)
        same = prev is not None and prev.get("key") == job.key
        if resume and same and prev is not None and prev.get("state") == "failed" and not retry_failed:
            continue
        marker, damaged = check_marker(out / job.name, job.key, full=verify) if resume else (None, [])
        if damaged:
            log.warning("job %s: outputs differ from their checksums, redoing it: %s", job.name, "; ".join(damaged))
            (out / job.name / JOB_MARKER).unlink(missing_ok=True)
        elif resume and same and prev is not None and prev.get("state") in ("done", "skipped") and marker is not None:
            manifest.jobs[job.name] = {**prev, "state": "skipped"}
            continue
        if prev is not None and not same:
            log.info("job %s: config changed (key %s -> %s): redo", job.name, prev.get("key"), job.key)
        manifest.jobs[job.name] = {
            "key": job.key,
            "seed": job.seed,
            "params": job.params,
            "index": job.index,
            "attempts": prev.get("attempts", 0) if prev is not None and same else 0,
            "state": "pending",
        }
        to_run.append(job)
    return to_run
