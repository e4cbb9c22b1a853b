"""Batch start-up: workers forked warm (batch/warm.py) and the cluster started while the inputs are checked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import distributed  # noqa: F401  (its config defaults: distributed.worker.multiprocessing-method)
import pytest

import z2t_dask.batch.runner as runner
from z2t_dask.batch import run_batch
from z2t_dask.batch.cluster import (
    FORKSERVER_PRELOAD,
    LOCAL_CLUSTER_CONFIG,
    forkserver_workers,
    pre_spawn_environ,
    resolve_client,
    start_forkserver,
)
from z2t_dask.batch.warm import WARM_MODULES, warm_imports
from z2t_dask.errors import ClusterError, ZmapError

TINY = {
    "emitters": {"num_emitters": 20, "frames": 4, "margin_px": 1.0},
    "tiff": {"roi_size": 16},
    "psf": {"patch_size": 15},
    "zernike": {"synthetic_shape": [300, 300]},
}


def tiny_batch(out: Path, n: int = 2) -> dict:
    return {
        "base_output_dir": str(out),
        "seed": 7,
        "base_config": TINY,
        "sample_configs": {"num_samples": n, "frames_per_sample": 4},
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- warm-up imports --------------------------------------------------------------------------------


def test_warm_imports_report_failures_and_never_raise(tmp_path, monkeypatch):
    (tmp_path / "z2t_warm_broken.py").write_text("raise RuntimeError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    failed = warm_imports(("z2t_warm_broken", "z2t_warm_missing", "json"))
    assert [f.split(":")[0] for f in failed] == ["z2t_warm_broken", "z2t_warm_missing"]
    assert "RuntimeError: broken on import" in failed[0]
    assert "ModuleNotFoundError" in failed[1]
    assert "json" in sys.modules


def test_warm_modules_exist_and_the_preload_names_the_warm_module():
    assert warm_imports(WARM_MODULES) == []  # a renamed module would silently stop warming the workers
    assert FORKSERVER_PRELOAD[-1] == "z2t_dask.batch.warm"


def test_warm_imports_skip_xarray_for_dask_array_only():
    """The forkserver's dask.array import leaves xarray and pandas out; xarray stays importable."""
    code = (
        "import sys; import z2t_dask.batch.warm; import dask.array as da\n"
        "assert 'xarray' not in sys.modules and 'pandas' not in sys.modules, 'xarray or pandas imported'\n"
        "assert int(da.ones(4, chunks=2).sum().compute()) == 4\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('xarray') is not None:\n"
        "    import xarray\n"
        "    assert isinstance(xarray.DataArray([1.0]), xarray.DataArray)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_a_multiprocessing_method_the_user_chose_is_left_alone():
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        assert start_forkserver() is False
        with forkserver_workers() as applied:
            assert applied is False
            assert dask.config.get("distributed.worker.multiprocessing-method") == "fork"
    before = dask.config.get("distributed.worker.multiprocessing-method")
    with forkserver_workers() as applied:
        if applied:
            assert dask.config.get("distributed.worker.multiprocessing-method") == "forkserver"
    assert dask.config.get("distributed.worker.multiprocessing-method") == before


@pytest.mark.cluster
def test_private_cluster_workers_start_warm_and_write_the_same_bytes(tmp_path, monkeypatch):
    """Workers of the private LocalCluster have a job's modules before their first job; bytes unchanged."""
    out = tmp_path / "out"
    monkeypatch.setenv("Z2T_WARM_TEST_ENV", "set after the forkserver may have started")
    with resolve_client(max_workers=1) as c:
        names = ("Z2T_WARM_TEST_ENV", "OMP_NUM_THREADS", "PYTHONHASHSEED")
        env = c.run(lambda: {k: os.environ.get(k) for k in names})
        expected = {"Z2T_WARM_TEST_ENV": os.environ["Z2T_WARM_TEST_ENV"], **pre_spawn_environ()}
        assert list(env.values()) == [{k: expected[k] for k in names}]  # this process's variables, and Dask's
        probe = ("z2t_dask.batch.warm", "z2t_dask.sample", "z2t_dask.engine.render", "dask.array", "tifffile")
        seen = c.run(lambda: [m in sys.modules for m in probe])
        assert list(seen.values()) == [[True] * len(probe)]
        settings = c.run(lambda: {k: dask.config.get(k) for k in LOCAL_CLUSTER_CONFIG})
        assert list(settings.values()) == [LOCAL_CLUSTER_CONFIG]  # the quieter event-loop checks reach the workers
        res = run_batch(tiny_batch(out), c, progress=False)
    assert res.exit_code == 0
    from z2t_dask.batch.grid import BatchJobs
    from z2t_dask.batch.spec import load_batch_config
    from z2t_dask.sample import simulate

    for job in BatchJobs(load_batch_config(tiny_batch(out))):  # the same job, simulated in this process
        ref = tmp_path / "ref" / job.name
        simulate(job.config, seed=job.seed).save(ref, overwrite=True, scheduler="sync")
        tiffs = sorted(p.name for p in ref.glob("*.tif*"))
        assert tiffs
        for name in [*tiffs, "emitters.h5"]:
            assert sha256(out / job.name / name) == sha256(ref / name), name


# ---- the cluster starts while the inputs are checked -------------------------------------------------


class FakeStart:
    """A client resolver that takes a while to start, records its exit, and may fail."""

    def __init__(self, events: list, fail: BaseException | None = None, delay: float = 0.3):
        self.events, self.fail, self.delay = events, fail, delay

    def __enter__(self):
        time.sleep(self.delay)
        self.events.append(("started", threading.current_thread().name))
        if self.fail is not None:
            raise self.fail
        return object()

    def __exit__(self, exc_type, exc, tb):
        self.events.append(("closed", exc_type))
        return False


def _bad_zmap(tmp_path: Path) -> str:
    bad = tmp_path / "notes.h5"
    bad.write_text("not a zmap")
    return str(bad)


def _no_start_thread_left() -> bool:
    return not any(t.name == "z2t-cluster-start" for t in threading.enumerate())


def test_bad_input_while_the_cluster_starts_closes_it_and_writes_nothing(tmp_path, monkeypatch):
    events: list = []
    monkeypatch.setattr(runner._ClientSession, "_resolver", lambda self: FakeStart(events))
    out = tmp_path / "new" / "out"
    with pytest.raises(ZmapError, match="zmap_path"):
        run_batch(tiny_batch(out), zmap=_bad_zmap(tmp_path), progress=False)
    assert events == [("started", "z2t-cluster-start"), ("closed", ZmapError)]  # started in the background, closed
    assert not (tmp_path / "new").exists() and _no_start_thread_left()


def test_a_failed_background_start_raises_its_error_and_writes_nothing(tmp_path, monkeypatch):
    events: list = []
    fail = ClusterError("cannot start the cluster (test)")
    monkeypatch.setattr(runner._ClientSession, "_resolver", lambda self: FakeStart(events, fail))
    out = tmp_path / "out"
    with pytest.raises(ClusterError, match="cannot start the cluster"):
        run_batch(tiny_batch(out), progress=False)
    assert events == [("started", "z2t-cluster-start")]  # nothing to close: the start failed
    assert not out.exists() and _no_start_thread_left()
    events.clear()  # both fail: the input's error is the one reported
    with pytest.raises(ZmapError, match="zmap_path"):
        run_batch(tiny_batch(out), zmap=_bad_zmap(tmp_path), progress=False)
    assert events == [("started", "z2t-cluster-start")] and not out.exists()


def test_ctrl_c_while_the_inputs_are_checked_closes_the_starting_cluster(tmp_path, monkeypatch):
    events: list = []
    monkeypatch.setattr(runner._ClientSession, "_resolver", lambda self: FakeStart(events))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "check_inputs", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(tiny_batch(out), progress=False)
    assert events == [("started", "z2t-cluster-start"), ("closed", KeyboardInterrupt)]
    assert not out.exists() and _no_start_thread_left()


def test_an_existing_output_folder_starts_no_cluster_before_planning(tmp_path, monkeypatch):
    """A rerun of a finished batch needs no cluster: none is started in the background either."""
    events: list = []
    monkeypatch.setattr(runner._ClientSession, "_resolver", lambda self: FakeStart(events))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ZmapError):
        run_batch(tiny_batch(out), zmap=_bad_zmap(tmp_path), progress=False)
    assert events == [] and list(out.iterdir()) == []


# ---- fast PSF libraries built by the client while the cluster starts ----------------------------------


def _fast_jobs(out: Path, n: int = 2, **psf) -> list:
    from z2t_dask.batch.grid import BatchJobs
    from z2t_dask.batch.spec import load_batch_config

    cfg = tiny_batch(out, n)
    cfg["base_config"] = {**TINY, "psf": {**TINY["psf"], "mode": "fast", **psf}}
    return list(BatchJobs(load_batch_config(cfg)))


def test_prebuild_stores_each_distinct_library_once_for_the_workers(tmp_path, monkeypatch):
    from z2t_dask.batch.plan import prebuild_libraries
    from z2t_dask.physics.optics.psf_library import clear_cache

    cache = tmp_path / "psf-cache"
    monkeypatch.setenv("Z2T_PSF_CACHE", str(cache))
    clear_cache()
    jobs = _fast_jobs(tmp_path / "out", n=3)
    assert prebuild_libraries(jobs, stop=lambda: True) == 0 and not cache.exists()  # the cluster is up: skip
    assert prebuild_libraries(jobs) == 1  # three samples, one library
    stored = sorted(p.name.split("-")[1] for p in cache.glob("psf-*"))
    assert stored == ["lib", "tables"]
    clear_cache()  # as in a fresh worker: make_psf_model loads it (the same library)
    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import make_psf_model
    from z2t_dask.physics.optics import psf_store

    calls = []
    monkeypatch.setattr(psf_store, "save_library", lambda *a, **k: calls.append(a))
    lib = make_psf_model(load_config(jobs[0].config))
    assert calls == [] and lib.info["error"]["samples"] == 256  # loaded, not built (a build stores it)
    clear_cache()


def test_prebuild_skips_exact_jobs_an_off_cache_and_never_raises(tmp_path, monkeypatch):
    from z2t_dask.batch.plan import prebuild_libraries

    cache = tmp_path / "psf-cache"
    monkeypatch.setenv("Z2T_PSF_CACHE", str(cache))
    exact = _fast_jobs(tmp_path / "out")
    for job in exact:
        job.config["psf"]["mode"] = "exact"
    assert prebuild_libraries(exact) == 0
    broken = _fast_jobs(tmp_path / "out")
    broken[0].config["zmap_path"] = str(tmp_path / "missing.h5")  # the job will report it; no error here
    assert prebuild_libraries(broken[:1]) == 0
    assert not cache.exists()
    monkeypatch.setenv("Z2T_PSF_CACHE", "off")
    assert prebuild_libraries(_fast_jobs(tmp_path / "out")) == 0


# ---- a small job's stack is computed in one go ------------------------------------------------------


def test_small_job_stacks_are_computed_in_one_go_with_the_streamed_bytes(tmp_path, monkeypatch):
    """run_job computes a small stack whole in its thread (no prefetch threads), a large one streams: same bytes."""
    import z2t_dask.batch.jobs as jobs
    import z2t_dask.sample.core as core
    from z2t_dask.batch.grid import BatchJobs
    from z2t_dask.batch.spec import load_batch_config

    calls = []
    save = core.Sample.save

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("streaming", True))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(core.Sample, "save", spy)
    job = next(iter(BatchJobs(load_batch_config(tiny_batch(tmp_path / "cfg")))))
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    whole.mkdir()
    streamed.mkdir()
    jobs.run_job(job, whole)
    monkeypatch.setattr(jobs, "IN_ONE_GO_BYTES", 0)  # every stack "large": streamed block by block
    jobs.run_job(job, streamed)
    assert calls == [False, True]
    for name in sorted(p.name for p in (whole / job.name).iterdir() if p.name != jobs.JOB_MARKER):
        assert sha256(whole / job.name / name) == sha256(streamed / job.name / name), name
