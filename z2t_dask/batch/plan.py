"""What a batch run does before any job starts: check its inputs, decide which jobs to run.

:func:`check_inputs` opens every distinct Zmap and sCMOS map of a batch once on the client (a bad
``--zmap`` or map is refused before any job runs). :func:`plan_jobs` sets each job's manifest
entry for this run: skipped (done earlier with the same key and outputs matching their
checksums, or finished by a killed run and adopted from its marker), pending (new, changed,
unfinished, damaged, or failed with ``retry_failed``) or left failed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from z2t_dask.batch.checksums import check_outputs
from z2t_dask.batch.jobs import JOB_MARKER, check_marker, read_attempts
from z2t_dask.batch.manifest import Manifest
from z2t_dask.batch.spec import Job

if TYPE_CHECKING:
    from z2t_dask.physics.zmap import Zmap

__all__ = ["check_inputs", "plan_jobs", "prebuild_libraries"]

log = logging.getLogger("z2t_dask.batch")


def check_inputs(jobs: Iterable[Job], source: str | None = None) -> int:
    """Check every distinct Zmap, ROI on it and sCMOS map of the jobs once, on the client, as the jobs will.

    The Zmap is read (:func:`~z2t_dask.engine.assembly.make_zmap`), its aberration field built for
    the job's ROI and ``tiff.crop_offset`` (the ROI must lie on the Zmap) and evaluated over the
    ROI's corners and centre; the camera is built (:func:`~z2t_dask.engine.assembly.make_camera`:
    sCMOS ``.npy`` maps loaded, their dtype and shape checked against the chip and ROI). Each
    distinct Zmap is read once and each distinct (Zmap, ROI) and (camera, ROI) checked once, so a
    grid of 10⁴ jobs costs a few checks.

    Parameters
    ----------
    jobs
        The jobs, or one job per grid point (:meth:`~z2t_dask.batch.grid.BatchJobs.point_jobs`:
        samples of one point share their Zmap, ROI and camera).
    source
        The batch config file, named in a :class:`BatchConfigError`.

    Returns
    -------
    int
        The number of distinct checks made.

    Raises
    ------
    ZmapError
        A ``zmap_path`` that is not a readable Zmap, or NaN over a job's ROI (the message names
        the file and the job): the batch is refused before any job runs, instead of failing every
        job on the workers.
    BatchConfigError
        A ROI beyond its Zmap, an sCMOS map that is no chip-sized 2-D array of numbers (the key,
        prefixed by the job's name).
    """
    import json

    import numpy as np

    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import aberration_field, make_camera, make_zmap
    from z2t_dask.errors import BatchConfigError, ConfigError, ZmapError

    zmaps: dict[str, Zmap] = {}
    seen: set[str] = set()
    for job in jobs:
        c = job.config
        zsig = json.dumps(
            [c.get("zmap_path"), c.get("zernike"), (c.get("optical") or {}).get("wavelength_nm"), c.get("psf")],
            sort_keys=True,
            default=str,
        )
        t = c.get("tiff") or {}
        roi = [t.get("roi_width"), t.get("roi_height"), t.get("crop_offset")]
        zroi = json.dumps([zsig, roi], default=str)
        cam = json.dumps([c.get("camera"), roi], sort_keys=True, default=str)
        if zroi in seen and cam in seen:
            continue
        try:
            cfg = load_config(c)
            if zroi not in seen:
                if zsig not in zmaps:
                    zmaps[zsig] = make_zmap(cfg)
                field = aberration_field(cfg, zmaps[zsig])
                h, w = cfg.image_shape
                xs, ys = [0.0, w - 1.0, 0.0, w - 1.0, (w - 1) / 2], [0.0, 0.0, h - 1.0, h - 1.0, (h - 1) / 2]
                field.at(np.array(xs), np.array(ys))
            if cam not in seen:
                make_camera(cfg)
        except ZmapError as exc:
            raise ZmapError(f"zmap_path (--zmap) of job {job.name}: {exc}") from None
        except ConfigError as exc:
            raise BatchConfigError([(f"{job.name}: {k}", m) for k, m in exc.problems], source) from None
        seen.update((zroi, cam))
    return len(seen)


def _library_signature(c: dict) -> str | None:
    """What a job config's fast PSF libraries depend on (None: exact mode, no library); equal for repeats.

    ``make_psf_model``'s key decides which library a job gets; this only tells repeats apart.
    """
    if (c.get("psf") or {}).get("mode", "exact") != "fast" and not c.get("channels"):
        return None
    e, t = c.get("emitters") or {}, c.get("tiff") or {}
    return json.dumps(
        [
            [c.get(k) for k in ("zmap_path", "zernike", "optical", "psf", "channels")],
            [e.get(k) for k in ("z_range_um", "margin_px", "area_px", "focus_depth_um")],
            [t.get(k) for k in ("roi_size", "roi_width", "roi_height", "crop_offset")],
        ],
        sort_keys=True,
        default=str,
    )


def prebuild_libraries(jobs: Iterable[Job], stop: Callable[[], bool] = lambda: False, skip: Iterable[Job] = ()) -> int:
    """Build each distinct fast PSF library of the jobs in this process, so the workers load it from disk.

    A fast-mode job builds its library (about a second for the W1 config) on each worker's first
    job, unless the on-disk cache (:mod:`~z2t_dask.physics.optics.psf_store`) holds it. The client
    calls this while its cluster starts (spare time): each library is then built once and each
    worker loads it. Built with :func:`~z2t_dask.engine.assembly.make_psf_model`, so the very
    library a job would build (the same key, hence the same bytes). Nothing is done with the cache
    off (``$Z2T_PSF_CACHE=off``); exact-mode jobs have no library. Never raises: a job meets its
    own errors.

    Parameters
    ----------
    jobs
        The jobs, or one per grid point (:meth:`~z2t_dask.batch.grid.BatchJobs.point_jobs`).
    stop
        Called before each build; True stops (e.g. the cluster has started: its workers build the rest).
    skip
        Jobs whose libraries are loaded elsewhere (the job the workers' forkserver warms with,
        :mod:`~z2t_dask.batch.warm`): not loaded or built here too.

    Returns
    -------
    int
        The number of libraries built or loaded here.
    """
    try:
        from z2t_dask.physics.optics import psf_store

        if psf_store.cache_dir() is None:
            return 0
        from z2t_dask.config import load_config
        from z2t_dask.engine.assembly import make_psf_model
        from z2t_dask.engine.channels import channel_config
    except Exception:  # pragma: no cover - a broken install: the jobs report it
        return 0
    seen = {sig for sig in (_library_signature(job.config) for job in skip) if sig is not None}
    n = 0
    for job in jobs:
        c = job.config
        sig = _library_signature(c)
        if sig is None or sig in seen:
            continue
        seen.add(sig)
        if stop():
            break
        try:
            cfg = load_config(c)
            for sub in [channel_config(cfg, k) for k in range(len(cfg.channels))] if cfg.channels else [cfg]:
                if sub.psf.mode == "fast":
                    make_psf_model(sub)
                    n += 1
        except Exception as exc:  # the job meets it again and reports it
            log.debug("prebuild of the PSF library of %s failed: %s", job.name, exc)
    return n


def plan_jobs(
    jobs: Iterable[Job], manifest: Manifest, out: Path, *, resume: bool, retry_failed: bool, verify: bool
) -> list[int]:
    """Set each job's manifest entry for this run; return the indices (:attr:`Job.index`) of the jobs to run.

    A job done earlier with the same key is skipped when its marker is there and its outputs still
    match their record (the fast check: sizes and times against the manifest's record, no file
    read; or every sha256 against the marker with ``verify``); damaged outputs are logged at WARNING,
    naming the files, their marker removed and the job redone. A job whose folder holds its
    finished marker while the manifest does not say so (a driver killed after the job finished)
    is adopted from its marker (``skipped``), not run again. The entries are written in a few
    large transactions (:meth:`Manifest.bulk`); the jobs are consumed one at a time (an iterator
    of 10⁵ jobs is fine).
    """
    to_run: list[int] = []
    recorded = manifest.brief()  # folder -> (state, key): one query, not one per job
    with manifest.bulk():
        for job in jobs:
            state, key = recorded.pop(job.name, (None, None))
            same = state is not None and key == job.key
            if resume and same and state == "failed" and not retry_failed:
                continue
            if resume and same and state in ("done", "skipped") and not verify and _still_done(manifest, job, out):
                if state != "skipped":
                    manifest.set_state(job.name, "skipped")
                continue
            marker, damaged = check_marker(out / job.name, job.key, full=verify) if resume else (None, [])
            if damaged:
                log.warning("job %s: outputs differ from their checksums, redoing it: %s", job.name, "; ".join(damaged))
                (out / job.name / JOB_MARKER).unlink(missing_ok=True)
            elif marker is not None:
                if same and state in ("done", "skipped"):
                    if state != "skipped":
                        manifest.set_state(job.name, "skipped")
                else:  # finished, but the manifest did not record it: adopt it from its marker
                    log.info("job %s: finished in an earlier run (its marker), not recorded: adopted", job.name)
                    manifest.put(job.name, _adopted(job, marker, out))
                continue
            if state is not None and not same:
                log.info("job %s: config changed (key %s -> %s): redo", job.name, key, job.key)
            prev = manifest.get(job.name) if same else None
            manifest.put(
                job.name,
                {
                    "key": job.key,
                    "seed": job.seed,
                    "params": job.params,
                    "index": job.index,
                    "attempts": prev.get("attempts", 0) if prev is not None else 0,
                    "state": "pending",
                },
            )
            to_run.append(job.index)
    return to_run


def _still_done(manifest: Manifest, job: Job, out: Path) -> bool:
    """The fast path of a resume: a local job folder with its marker and the outputs its manifest entry records.

    Stats only (the marker's existence, each output's size and time; no file is read): the
    manifest's record is the marker's (``z2t inspect --verify`` checks that they agree). Anything
    else (a store, no record, a missing marker, a damaged output) goes through the marker itself
    (:func:`~z2t_dask.batch.jobs.check_marker`), which names what differs.
    """
    if not isinstance(out, Path):  # a batch on a store: batch/remote.py reads its markers
        return False
    entry = manifest.get(job.name)
    outputs = entry.get("outputs") if entry else None
    folder = out / job.name
    if not isinstance(outputs, dict) or not outputs or not os.path.isfile(folder / JOB_MARKER):
        return False
    return not check_outputs(folder, outputs)


def _adopted(job: Job, marker: dict, out: Path) -> dict:
    """The manifest entry of a job finished in an earlier run, from its marker (``z2t_job.json``)."""
    return {
        "key": job.key,
        "seed": job.seed,
        "params": job.params,
        "index": job.index,
        "state": "skipped",
        "outputs": marker.get("outputs", {}),
        "seconds": marker.get("seconds"),
        "finished": marker.get("finished"),
        "error": None,
        "traceback": None,
        "attempts": read_attempts(out, job.key) or marker.get("attempt", 1),
        "host": marker.get("host"),
        "records": marker.get("records"),
        "frames": marker.get("frames"),
    }
