"""Batches at scale (issue 17): constant-cost manifest store, lazy jobs, bounded submission, crash safety, shards."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from z2t_dask.batch import JOB_MARKER, MANIFEST, BatchConfigError, Manifest, expand_jobs, load_batch_config, run_batch
from z2t_dask.batch.grid import BatchJobs, shard_of
from z2t_dask.batch.manifest import STORE, export_manifest, read_manifest, read_status
from z2t_dask.batch.spec import (
    _LINKED_TO_ROI,
    _fmt_value,
    _get_dotted,
    _paths_base,
    _set_dotted,
    job_key,
    job_seed,
    resolve_user_paths,
)
from z2t_dask.batch.submit import window_for
from z2t_dask.config import config_to_dict, load_config

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # batch_helpers, importable by in-process workers

TINY = {
    "emitters": {"num_emitters": 2, "frames": 1},
    "tiff": {"roi_size": 8},
    "psf": {"patch_size": 7},
    "zernike": {"synthetic_shape": [64, 64]},
}


def tiny_batch(out, n, **extra) -> dict:
    return {
        "base_output_dir": str(out),
        "seed": 11,
        "base_config": copy.deepcopy(TINY),
        "sample_configs": {"num_samples": n, "frames_per_sample": 1},
        **extra,
    }


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


# ---- the store: constant cost per update ---------------------------------------------------------


def _update_cost(tmp: Path, n: int) -> float:
    """Seconds per job update of a store holding ``n`` jobs (as the runner does: submitted, then done)."""
    out = tmp / f"m{n}"
    out.mkdir(parents=True)
    m = Manifest(out, load_batch_config(tiny_batch(out, 1)), resume=True)
    entry = {"key": "k" * 20, "seed": 1, "params": {"sample_id": 1}, "attempts": 0, "state": "pending"}
    with m.bulk():
        for i in range(n):
            m.put(f"sample_{i:06d}", {**entry, "index": i})
    done = {
        "state": "done",
        "outputs": {f"f{k}": {"bytes": 100, "mtime_ns": 1, "sha256": "0" * 64} for k in range(3)},
        "seconds": 0.1,
        "finished": 1.0,
        "attempts": 1,
    }
    t = time.perf_counter()
    for i in range(n):
        m.update(f"sample_{i:06d}", {"state": "running", "submitted": 1.0})
        m.update(f"sample_{i:06d}", done)
    dt = (time.perf_counter() - t) / n
    assert m.count("done") == n and read_manifest(out)["jobs"]["sample_000000"]["outputs"] == done["outputs"]
    m.close()
    return dt


def test_store_update_cost_does_not_grow_with_the_batch(tmp_path):
    small = min(_update_cost(tmp_path / f"small{r}", 200) for r in range(3))  # best of a few: a shared machine
    large = min(_update_cost(tmp_path / f"large{r}", 2000) for r in range(2))
    # the JSON manifest rewritten per job made this ratio ~10 (its cost grew with the batch)
    assert large / small <= 2.0, f"{1e3 * small:.3f} ms per update at 200 jobs, {1e3 * large:.3f} ms at 2000"
    assert large < 0.01  # well under the cost of any job


# ---- lazy jobs ------------------------------------------------------------------------------------


def _eager_reference(spec) -> list[dict]:
    """Every job resolved on its own: the recipe of expand_jobs before jobs were made on demand."""
    import itertools

    keys = [k for k, _ in spec.grid]
    points = list(itertools.product(*[v for _, v in spec.grid])) if spec.grid else [()]
    samples = list(range(1, spec.num_samples + 1)) if spec.num_samples else [0]
    base_roi = _get_dotted(spec.base_config, "tiff.roi_size")
    jobs: list[dict] = []
    for gi, point in enumerate(points):
        grid_name = (
            f"job_{gi:04d}_" + "_".join(f"{k.split('.')[-1]}_{_fmt_value(v)}" for k, v in zip(keys, point))
            if spec.grid
            else ""
        )
        for sid in samples:
            cfg = copy.deepcopy(spec.base_config)
            params = {}
            for k, v in zip(keys, point):
                _set_dotted(cfg, k, v)
                params[k] = v
                if k == "tiff.roi_size" and base_roi is not None:
                    for linked in _LINKED_TO_ROI:
                        if _get_dotted(spec.base_config, linked) == base_roi:
                            _set_dotted(cfg, linked, v)
            if spec.frames_per_sample:
                _set_dotted(cfg, "emitters.frames", spec.frames_per_sample)
            resolve_user_paths(cfg, _paths_base(spec.source))
            sample_name = spec.sample_naming.format(sample_id=sid) if sid else ""
            if sid:
                params["sample_id"] = sid
                if isinstance(_get_dotted(cfg, "tiff"), dict):
                    cfg["tiff"]["filename"] = f"{sample_name}.ome.tiff"
            name = "/".join(p for p in (grid_name, sample_name) if p) or "single_job"
            if spec.shard_folders:
                name = f"{hashlib.sha256(name.encode()).hexdigest()[: spec.shard_folders]}/{name}"
            seed = job_seed(spec.seed, gi, sid)
            _set_dotted(cfg, "emitters.seed", seed)
            resolved = config_to_dict(load_config(cfg))
            canon = json.dumps(  # the key's recipe, written out: keys of existing batch folders must not change
                {"schema": 1, "config": resolved, "seed": int(seed), "name": name},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=True,
                allow_nan=False,
                default=str,
            )
            key = hashlib.sha256(canon.encode()).hexdigest()[:20]
            assert key == job_key(resolved, seed, name)
            jobs.append(
                {"index": len(jobs), "name": name, "params": params, "config": resolved, "seed": seed, "key": key}
            )
    return jobs


@pytest.mark.parametrize(
    "batch",
    [
        {"variable_configs": {"num_emitters": [2, 3], "roi_size": [8, 10]}, "sample_configs": {"num_samples": 3}},
        {"variables": {"tiff.roi_size": [8, 12], "emitters.num_emitters": [1]}},
        {"sample_configs": {"num_samples": 4, "sample_naming": "s{sample_id}"}, "shard_folders": 3},
        {},
    ],
)
def test_jobs_made_on_demand_equal_every_job_resolved_on_its_own(tmp_path, batch, monkeypatch):
    import z2t_dask.batch.grid as grid

    spec = load_batch_config({"base_output_dir": str(tmp_path), "seed": 2, "base_config": copy.deepcopy(TINY), **batch})
    reference = _eager_reference(spec)
    calls: list[dict] = []
    real = grid.load_config

    def counted(cfg):
        calls.append(cfg)
        return real(cfg)

    monkeypatch.setattr(grid, "load_config", counted)
    lazy = BatchJobs(spec)
    jobs = [j.to_dict() for j in lazy]
    n_calls = len(calls)
    assert jobs == reference  # same configs, seeds, names and keys: existing batch folders resume
    assert [j.to_dict() for j in expand_jobs(spec)] == reference
    assert list(lazy.names()) == [j["name"] for j in reference] and len(lazy) == len(reference)
    assert lazy[-1].to_dict() == reference[-1] and lazy.name(len(lazy) - 1) == reference[-1]["name"]
    # each grid point resolved once (plus one check of the per-sample patch), not once per job
    points = lazy.n_points
    assert n_calls == points + (1 if len(lazy.samples) > 1 else 0)


def test_a_100000_job_grid_is_not_materialised(tmp_path):
    import tracemalloc

    spec = load_batch_config(tiny_batch(tmp_path, 25_000, variables={"emitters.num_emitters": [1, 2, 3, 4]}))
    tracemalloc.start()
    t = time.perf_counter()
    jobs = BatchJobs(spec)
    n = sum(1 for _ in jobs.names())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == len(jobs) == 100_000
    assert peak < 50e6, f"{peak / 1e6:.0f} MB to validate and name 100,000 jobs"
    assert time.perf_counter() - t < 30
    assert (
        jobs[99_999].name == "job_0003_num_emitters_4/sample_25000"
        and jobs[99_999].config["emitters"]["num_emitters"] == 4
    )


def test_bad_grid_points_are_all_named_once(tmp_path):
    spec = load_batch_config(tiny_batch(tmp_path, 50, variables={"emitters.num_emitters": [-1, 1, -2]}))
    with pytest.raises(BatchConfigError) as ei:
        BatchJobs(spec)
    keys = [k for k, _ in ei.value.problems]
    assert len(keys) == 2 and all("emitters.num_emitters" in k for k in keys)  # once per grid point, not per job
    assert keys[0].startswith("job_0000_num_emitters_-1/sample_001:")
    assert keys[1].startswith("job_0002_num_emitters_-2/sample_001:")
    with pytest.raises(BatchConfigError, match="shard_folders"):
        load_batch_config(tiny_batch(tmp_path, 2, shard_folders=7))


# ---- bounded submission ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_futures_held_never_exceed_the_window(client, tmp_path, monkeypatch):
    from batch_helpers import quick_job

    monkeypatch.setenv("Z2T_TEST_JOB_SLEEP", "0.01")
    held, on_scheduler = [], []

    def watch(entry):
        held.append(len(client.futures))
        on_scheduler.append(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))

    res = run_batch(tiny_batch(tmp_path / "w", 60), client, progress=watch, job_fn=quick_job, window=5)
    assert res.exit_code == 0 and len(res.states()["done"]) == 60 and len(held) == 60
    assert res.window == 5 and res.max_in_flight == 5  # filled, never more
    assert max(held) <= 5, held  # the client: never more futures than the window
    # the scheduler forgets a released task one message later: O(window), not O(jobs)
    assert max(on_scheduler) <= 2 * 5, on_scheduler
    # the default window: a few times the worker threads
    res = run_batch(tiny_batch(tmp_path / "d", 40), client, progress=False, job_fn=quick_job)
    assert res.window == window_for(2) and 0 < res.max_in_flight <= res.window


# ---- crash safety ---------------------------------------------------------------------------------


@pytest.mark.cluster
def test_driver_killed_with_sigkill_mid_batch_then_rerun_completes_once(client, tmp_path):
    n = 200
    out = tmp_path / "k"
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from batch_helpers import quick_job; "
        "from z2t_dask import run_batch; "
        "run_batch(json.loads(sys.argv[2]), max_workers=2, progress=False, job_fn=quick_job)"
    )
    env = {**os.environ, "Z2T_TEST_JOB_SLEEP": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(HERE), json.dumps(tiny_batch(out, n))],
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, done = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None:
        try:
            done = [k for k, j in read_manifest(out)["jobs"].items() if j["state"] == "done"]
        except (OSError, ValueError):
            pass
        if len(done) >= 40:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its LocalCluster, mid-transaction or not
    proc.wait(timeout=30)
    assert 40 <= len(done) < n, len(done)
    doc = read_manifest(out)  # the killed store opens, with every committed job
    assert len(doc["jobs"]) == n and {k for k, j in doc["jobs"].items() if j["state"] == "done"} >= set(done)
    marker_times = {k: (out / k / JOB_MARKER).stat().st_mtime_ns for k in done}

    from batch_helpers import quick_job

    res = run_batch(tiny_batch(out, n), client, progress=False, job_fn=quick_job)
    assert res.exit_code == 0 and set(res.states()) <= {"done", "skipped"} and len(res.jobs) == n
    assert set(done) <= set(res.states()["skipped"])
    doc = read_manifest(out)
    for name, entry in doc["jobs"].items():  # the store and every marker agree
        marker = json.loads((out / name / JOB_MARKER).read_text())
        assert marker["key"] == entry["key"] and marker["outputs"] == entry["outputs"], name
    for name, t in marker_times.items():  # nothing done twice
        assert (out / name / JOB_MARKER).stat().st_mtime_ns == t, name
    assert len([p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]) == n
    assert not list(out.rglob(".*.tmp-*"))
    assert len(read_status(out)["completed_jobs"]) == n and json.loads((out / MANIFEST).read_text()) == doc


# ---- migration -------------------------------------------------------------------------------------


def test_a_manifest_json_of_the_previous_version_is_migrated(tmp_path):
    fixture = HERE / "data" / "batch_manifest_v1"  # written by the JSON-only manifest (before the store)
    old = json.loads((fixture / MANIFEST).read_text())
    out = tmp_path / "b"
    out.mkdir()
    shutil.copy(fixture / MANIFEST, out / MANIFEST)
    assert read_manifest(out) == old  # no store yet: readers take manifest.json
    spec = load_batch_config({"base_output_dir": str(out), "seed": 5, "base_config": copy.deepcopy(TINY)})
    m = Manifest(out, spec, resume=True)
    assert (out / STORE).is_file() and m.count() == 2
    assert dict(m.jobs.items()) == old["jobs"] and m.runs == old["runs"]
    m.close()
    doc = read_manifest(out)  # now the store
    assert doc["jobs"] == old["jobs"] and doc["runs"] == old["runs"] and doc["schema"] == old["schema"]
    export_manifest(out)
    assert json.loads((out / MANIFEST).read_text())["jobs"] == old["jobs"]
    assert read_status(out)["completed_jobs"] == ["sample_001", "sample_002"]


@pytest.mark.cluster
def test_first_resume_of_a_folder_without_a_store_skips_every_finished_job(client, tmp_path):
    from batch_helpers import quick_job

    out = tmp_path / "b"
    cfg = tiny_batch(out, 6)
    assert run_batch(cfg, client, progress=False, job_fn=quick_job).exit_code == 0
    before = json.loads((out / MANIFEST).read_text())
    times = {k: (out / k / JOB_MARKER).stat().st_mtime_ns for k in before["jobs"]}
    for p in out.glob(f"{STORE}*"):  # as a folder of the previous version: manifest.json only
        p.unlink()
    res = run_batch(cfg, client, progress=False, job_fn=quick_job)
    assert res.states() == {"skipped": sorted(before["jobs"])}
    assert {k: (out / k / JOB_MARKER).stat().st_mtime_ns for k in before["jobs"]} == times
    after = read_manifest(out)
    assert len(after["runs"]) == 2 and after["runs"][0] == before["runs"][0]
    for k, e in before["jobs"].items():
        assert after["jobs"][k] == {**e, "state": "skipped"}


# ---- sharded folders -------------------------------------------------------------------------------


@pytest.mark.cluster
def test_sharded_layout_round_trip(client, tmp_path, capsys):
    from z2t_dask import open_sample
    from z2t_dask.batch.verify import verify_folder
    from z2t_dask.tools.cli import main
    from z2t_dask.tools.summary import summarize

    out = tmp_path / "s"
    cfg = tiny_batch(out, 3, shard_folders=True, variables={"emitters.num_emitters": [1, 2]})
    res = run_batch(cfg, client, progress=False)
    assert res.exit_code == 0 and len(res.jobs) == 6
    for name in res.jobs:
        shard, rest = name.split("/", 1)
        assert shard == shard_of(rest, 2) == hashlib.sha256(rest.encode()).hexdigest()[:2]
        assert (out / shard / rest / JOB_MARKER).is_file()
        s = open_sample(out / name)
        assert s.frames.shape == (1, 8, 8)
    assert {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")} == {
        n.split("/")[0] for n in res.jobs
    }
    again = run_batch(cfg, client, progress=False)
    assert {k: sorted(v) for k, v in again.states().items()} == {"skipped": sorted(res.jobs)}
    info = summarize(out)
    assert info["jobs_total"] == 6 and all(j["folder_exists"] and j["bytes"] > 0 for j in info["jobs"].values())
    assert verify_folder(out)["ok"] and verify_folder(out)["files_verified"] == 12
    assert main(["preview", str(out), "-o", str(tmp_path / "p.png")]) == 0 and (tmp_path / "p.png").is_file()
    capsys.readouterr()


def test_inspect_exports_the_manifest_on_demand_and_prints_compact_json(tmp_path, capsys):
    """``z2t inspect FOLDER --export-manifest --json``: manifest.json / batch_status.json from the store."""
    from z2t_dask.tools.cli import main

    fixture = HERE / "data" / "batch_manifest_v1"
    out = tmp_path / "b"
    out.mkdir()
    shutil.copy(fixture / MANIFEST, out / MANIFEST)
    spec = load_batch_config({"base_output_dir": str(out), "seed": 5, "base_config": copy.deepcopy(TINY)})
    Manifest(out, spec, resume=True).close()  # the store now holds the jobs
    (out / MANIFEST).unlink()
    assert main(["inspect", str(out), "--export-manifest", "--json"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and isinstance(json.loads(printed), dict)  # one compact line
    assert json.loads((out / MANIFEST).read_text()) == read_manifest(out)
    assert read_status(out)["completed_jobs"] == ["sample_001", "sample_002"]
    assert main(["inspect", str(out / MANIFEST), "--export-manifest"]) == 2  # not a batch folder
