"""Batch start-up and shut-down (issue 16): the workers' forkserver runs a miniature of the first job (its PSF
library, kernels and modules inherited by every worker), starts before ``z2t batch`` reads its config, and
freezes its heap; the client skips the library the forkserver loads; ``z2t`` freezes its heap before exiting.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import z2t_dask.batch.forkserver as fs
import z2t_dask.tools.cli as cli
from z2t_dask.batch.grid import BatchJobs
from z2t_dask.batch.spec import load_batch_config
from z2t_dask.batch.warm import WARM_FRAMES, _wait_for_job, miniature, warm_job

TINY = {
    "emitters": {"num_emitters": 40, "frames": 8, "margin_px": 1.0},
    "tiff": {"roi_size": 16},
    "psf": {"patch_size": 15, "mode": "fast"},
    "zernike": {"synthetic_shape": [300, 300]},
}


def tiny_batch(out: Path, n: int = 2) -> dict:
    return {
        "base_output_dir": str(out),
        "seed": 11,
        "base_config": TINY,
        "sample_configs": {"num_samples": n, "frames_per_sample": 8},
    }


def first_job(tmp_path: Path):
    return next(iter(BatchJobs(load_batch_config(tiny_batch(tmp_path / "out")))))


# ---- the warm-up job --------------------------------------------------------------------------------


def test_miniature_keeps_what_libraries_depend_on_and_shortens_the_movie(tmp_path):
    job = first_job(tmp_path).to_dict()
    mini = miniature(job)
    assert mini is not None and mini["name"] == "warm" and mini["seed"] == job["seed"] and mini["key"] == job["key"]
    e, e0 = mini["config"]["emitters"], job["config"]["emitters"]
    assert (e["frames"], e["num_emitters"]) == (WARM_FRAMES, 40 * WARM_FRAMES // 8)  # the same emitters per frame
    assert {k: v for k, v in e.items() if k not in ("frames", "num_emitters")} == {
        k: v for k, v in e0.items() if k not in ("frames", "num_emitters")
    }
    assert {k: v for k, v in mini["config"].items() if k != "emitters"} == {
        k: v for k, v in job["config"].items() if k != "emitters"
    }
    assert job["config"]["emitters"]["frames"] == 8  # the job itself is left alone
    one = {**job, "config": {**job["config"], "emitters": {**e0, "frames": 1, "num_emitters": 3}}}
    assert miniature(one)["config"]["emitters"]["frames"] == 1  # never longer than the job
    assert miniature({**job, "config": {"emitters": {"num_emitters": 5}}}) is None  # size unknown: no warm-up
    assert miniature({**job, "config": None}) is None


def test_warm_job_runs_quietly_leaves_nothing_and_never_raises(tmp_path, monkeypatch, recwarn):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("Z2T_PSF_CACHE", str(tmp_path / "psf-cache"))
    job = first_job(tmp_path).to_dict()
    assert warm_job(job) is True
    bad = {**job, "config": {**job["config"], "zmap_path": str(tmp_path / "missing.h5")}}
    assert warm_job(bad) is False  # the job will report it; the warm-up only skips it
    assert warm_job(None) is False
    assert list((tmp_path / "tmp").iterdir()) == []  # its temporary folders are removed
    assert len(recwarn) == 0  # quiet: the real job reports what it meets


def test_an_early_forkserver_reads_its_job_once_and_stops_waiting_when_its_parent_exits(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"key": "k1", "config": {}}))
    assert _wait_for_job(str(path), os.getppid(), timeout=1.0) == {"key": "k1", "config": {}}
    assert not path.exists()  # consumed
    path.write_text("")
    assert _wait_for_job(str(path), os.getppid(), timeout=1.0) is None  # "no job": go on without one
    t = time.monotonic()
    assert _wait_for_job(str(path), os.getppid() + 1, timeout=30.0) is None  # another parent: it exited
    assert _wait_for_job(str(path), os.getppid(), timeout=0.05) is None  # the safety limit
    assert time.monotonic() - t < 5.0


# ---- handing the job to the forkserver ---------------------------------------------------------------


def test_the_warm_job_is_plain_json_within_a_size_limit(tmp_path):
    job = first_job(tmp_path)
    text, key = fs._warm_payload(job)
    assert key == job.key and json.loads(text) == job.to_dict()
    assert fs._warm_payload(None) == ("", None)
    assert fs._warm_payload({"key": "k", "config": {"x": {1, 2}}}) == ("", None)  # not JSON: no warm-up job
    assert fs._warm_payload({"key": "k", "config": {"x": "y" * (fs._WARM_JOB_MAX + 1)}}) == ("", None)


def test_an_early_forkserver_gets_the_job_or_is_stopped_when_it_must_not_serve(tmp_path, monkeypatch):
    """start_forkserver hands the job to a server started early, or stops it (another method, other variables)."""
    import dask

    stops: list[int] = []
    monkeypatch.setattr(fs, "_stopper", lambda: lambda: stops.append(1))
    monkeypatch.setattr(fs, "_spawn", lambda *a, **k: pytest.fail("no second server: the early one serves"))
    monkeypatch.setattr(fs, "_forkserver_available", lambda: True)
    from multiprocessing import forkserver

    monkeypatch.setattr(forkserver, "ensure_running", lambda: None)
    job = first_job(tmp_path)
    path = str(tmp_path / "job.json")
    monkeypatch.setitem(fs._state, "preloaded", True)
    monkeypatch.setitem(fs._state, "warmed", None)
    monkeypatch.setitem(fs._state, "early", (path, fs.pre_spawn_environ()))
    for k in fs.pre_spawn_environ():  # the hand-over sets the Nanny's variables in this process: restore them
        absent = k not in os.environ
        monkeypatch.setenv(k, os.environ.get(k, "x"))
        if absent:
            monkeypatch.delenv(k)
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        assert fs.start_forkserver(job) is True
    assert json.loads(Path(path).read_text()) == job.to_dict() and fs.warmed_job_key() == job.key
    assert fs._state["early"] is None and stops == []
    Path(path).unlink()
    monkeypatch.setitem(fs._state, "early", (path, fs.pre_spawn_environ()))
    monkeypatch.setitem(fs._state, "warmed", None)
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):  # the user's choice
        assert fs.start_forkserver(job) is False
    assert Path(path).read_text() == "" and stops == [1]  # released without a job, then stopped
    assert fs._state["preloaded"] is False and fs.warmed_job_key() is None


def test_the_client_skips_the_library_the_forkserver_loads(tmp_path, monkeypatch):
    from z2t_dask.batch.plan import prebuild_libraries
    from z2t_dask.physics.optics.psf_library import clear_cache

    cache = tmp_path / "psf-cache"
    monkeypatch.setenv("Z2T_PSF_CACHE", str(cache))
    clear_cache()
    jobs = list(BatchJobs(load_batch_config(tiny_batch(tmp_path / "out", n=3))))
    assert prebuild_libraries(jobs, skip=jobs[:1]) == 0 and not cache.exists()  # one library: the warmed one
    other = jobs[0].to_dict()
    other["config"]["psf"]["patch_size"] = 17  # another library
    from z2t_dask.batch.spec import Job

    assert prebuild_libraries([*jobs, Job(**other)], skip=jobs[:1]) == 1
    clear_cache()


# ---- the command line ---------------------------------------------------------------------------------


def test_z2t_batch_starts_the_forkserver_before_reading_its_config_only_for_a_private_cluster(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(fs, "start_forkserver_early", lambda: calls.append(1) or True)
    early = cli._batch_workers_early
    assert early(["batch", "--config", "b.json", "--no-progress"]) and early(["-v", "batch", "--config", "b.json"])
    assert len(calls) == 2
    for argv in (
        ["batch", "--config", "b.json", "--scheduler", "tcp://h:8786"],
        ["batch", "--config", "b.json", "--scheduler=tcp://h:8786"],
        ["batch", "--config", "b.json", "--slurm", "s.yaml"],
        ["batch", "--help"],
        ["simulate", "--config", "batch"],
        ["batch", "--config", "b.json", "--output-dir", str(tmp_path)],  # a rerun: maybe nothing to run
        ["batch", "--config", "b.json", f"--output-dir={tmp_path}"],
        [],
    ):
        assert early(argv) is False, argv
    assert early(["batch", "--config", "b.json", "--output-dir", str(tmp_path / "new")]) and len(calls) == 3


@pytest.mark.slow
def test_a_z2t_batch_that_runs_nothing_ends_its_early_forkserver_with_it(tmp_path):
    """A bad config exits at once, and so does the forkserver started before it was read: a caller
    reading the output (which the server shares) is not kept waiting for the server's imports."""
    z2t = os.path.join(os.path.dirname(sys.executable), "z2t")
    t = time.monotonic()
    run = subprocess.run(
        [z2t, "batch", "--config", str(tmp_path / "missing.json")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "batch config not found" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 2 and "Traceback" not in run.stderr  # nothing from the server
    assert time.monotonic() - t < 30  # the server would otherwise wait for a job until WARM_WAIT_S


def test_z2t_freezes_its_heap_before_exiting_only_as_the_program(tmp_path, monkeypatch):
    frozen: list[int] = []
    monkeypatch.setattr(cli.gc, "freeze", lambda: frozen.append(1))
    missing = str(tmp_path / "missing.h5")
    assert cli.main(["inspect", missing]) == 2 and frozen == []  # called from Python: left alone
    monkeypatch.setattr(sys, "argv", ["z2t", "inspect", missing])
    assert cli.main() == 2 and frozen == [1]  # the console script: its process ends next


# ---- end to end, in a fresh process ---------------------------------------------------------------------

_SCRIPT = r"""
import gc, hashlib, json, os, sys
from pathlib import Path
from z2t_dask.batch.forkserver import WARM_JOB_ENV, start_forkserver_early, warmed_job_key
assert start_forkserver_early()  # as `z2t batch` does, before it reads its config
from z2t_dask.batch import run_batch
from z2t_dask.batch.cluster import resolve_client
from z2t_dask.batch.grid import BatchJobs
from z2t_dask.batch.spec import load_batch_config
from z2t_dask.sample import simulate

cfg, ref = json.loads(sys.argv[1]), Path(sys.argv[2])
jobs = list(BatchJobs(load_batch_config(cfg)))


def state():
    from z2t_dask.physics.optics import psf_library
    return [len(psf_library._LIBRARIES), gc.get_freeze_count() > 0, os.environ.get(WARM_JOB_ENV)]


with resolve_client(max_workers=1, warm_job=jobs[0]) as c:
    workers = list(c.run(state).values())  # before any job
    res = run_batch(cfg, c, progress=False)
digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
same = []
for job in jobs:  # the same jobs, simulated in this process without any warm-up
    simulate(job.config, seed=job.seed).save(ref / job.name, overwrite=True, scheduler="sync")
    for p in sorted((ref / job.name).iterdir()):
        same.append([p.name, digest(p) == digest(Path(cfg["base_output_dir"]) / job.name / p.name)])
print(json.dumps({"warmed": warmed_job_key() == jobs[0].key, "workers": workers, "exit": res.exit_code,
                  "same": same, "env": os.environ.get(WARM_JOB_ENV)}))
"""


@pytest.mark.slow
@pytest.mark.cluster
def test_workers_inherit_the_warm_up_job_of_an_early_forkserver_and_write_the_same_bytes(tmp_path):
    env = {**os.environ, "Z2T_PSF_CACHE": str(tmp_path / "psf-cache")}
    cfg = tiny_batch(tmp_path / "out")
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(cfg), str(tmp_path / "ref")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["warmed"] and got["exit"] == 0 and got["env"] is None
    assert got["workers"] == [[1, True, None]]  # the library loaded and the heap frozen before its first job
    names = [name for name, _ in got["same"]]
    assert any(n.endswith(".ome.tiff") for n in names) and "emitters.h5" in names
    assert all(ok for _, ok in got["same"]), got["same"]
    digest = hashlib.sha256((tmp_path / "out" / "sample_001" / "emitters.h5").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((tmp_path / "ref" / "sample_001" / "emitters.h5").read_bytes()).hexdigest()


# ---- per job: a local run_job's result is read from its marker ----------------------------------------


class _Future:
    """A finished future: its result, and whether it was fetched."""

    def __init__(self, result: dict):
        self._result, self.fetched = result, 0

    def result(self) -> dict:
        self.fetched += 1
        return self._result


def test_a_finished_local_job_is_recorded_from_its_marker_without_fetching_its_result(tmp_path):
    from z2t_dask.batch.jobs import JOB_MARKER, run_job
    from z2t_dask.batch.submit import _finished_info
    from z2t_dask.io.remote import RemoteFolder

    marker = {"key": "k1", "outputs": {"a.tif": {"bytes": 1}}, "seconds": 0.2, "attempt": 1, "finished": 1.0}
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / JOB_MARKER).write_text(json.dumps(marker))
    fut = _Future({**marker, "fetched": True})
    assert _finished_info(fut, run_job, tmp_path, "job", "k1") == marker and fut.fetched == 0
    assert _finished_info(fut, run_job, tmp_path, "job", "k2")["fetched"] and fut.fetched == 1  # another job's
    assert _finished_info(fut, run_job, tmp_path, "none", "k1")["fetched"]  # no marker
    (tmp_path / "job" / JOB_MARKER).write_text("{truncated")
    assert _finished_info(fut, run_job, tmp_path, "job", "k1")["fetched"]  # unreadable
    (tmp_path / "job" / JOB_MARKER).write_text(json.dumps(marker))
    assert _finished_info(fut, lambda *a, **k: {}, tmp_path, "job", "k1")["fetched"]  # another task function
    store = RemoteFolder(f"memory://{tmp_path.name}")
    assert _finished_info(fut, run_job, store, "job", "k1")["fetched"] and fut.fetched == 5  # a store


def test_a_private_cluster_drops_the_dashboard_sampling_unless_the_dashboard_is_asked_for():
    from z2t_dask.batch.cluster import LOCAL_CLUSTER_CONFIG, local_cluster_config

    assert local_cluster_config() == LOCAL_CLUSTER_CONFIG
    assert LOCAL_CLUSTER_CONFIG["distributed.worker.profile.enabled"] is False  # no stack sampling every 10 ms
    shown = local_cluster_config(dashboard=True)
    assert not {"distributed.worker.profile.enabled", "distributed.admin.system-monitor.interval"} & set(shown)
    assert shown["distributed.admin.tick.interval"] == LOCAL_CLUSTER_CONFIG["distributed.admin.tick.interval"]
