"""Batch engine on real dask.distributed clusters (no mocks): expansion, retries, resume, scale-out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from distributed import Client, LocalCluster

from z2t_dask.batch import JOB_MARKER, MANIFEST, BatchConfigError, expand_jobs, load_batch_config, run_batch
from z2t_dask.tools.cli import main

HERE = Path(__file__).resolve().parent


def tiny_base(**over):
    base = {
        "emitters": {"num_emitters": 20, "frames": 4, "margin_px": 1.0},
        "tiff": {"roi_size": 16},
        "psf": {"patch_size": 15},
        "zernike": {"synthetic_shape": [300, 300]},
    }
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return base


def grid_config(out, **extra):
    return {
        "base_output_dir": str(out),
        "seed": 3,
        "base_config": tiny_base(),
        "variable_configs": {"num_emitters": [5, 10, 15], "roi_size": [16, 20]},
        "sample_configs": {"num_samples": 2, "frames_per_sample": 4},
        **extra,
    }


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


def manifest(out) -> dict:
    """The batch's manifest as it is now (its store; manifest.json is only exported at a run's start and end)."""
    from z2t_dask.batch import read_manifest

    return read_manifest(out)


# ---- expansion ---------------------------------------------------------------------------------


def test_grid_times_samples_expands_to_distinct_jobs(tmp_path):
    jobs = expand_jobs(load_batch_config(grid_config(tmp_path)))
    assert len(jobs) == 12
    assert len({j.key for j in jobs}) == 12 and len({j.seed for j in jobs}) == 12
    combos = {(j.config["emitters"]["num_emitters"], j.config["tiff"]["roi_width"]) for j in jobs}
    assert combos == {(n, r) for n in (5, 10, 15) for r in (16, 20)}  # the original made them identical
    assert all(j.config["emitters"]["frames"] == 4 for j in jobs)
    assert jobs[0].name == "job_0000_num_emitters_5_roi_size_16/sample_001"
    # keys are stable and depend on config and seed
    again = expand_jobs(load_batch_config(grid_config(tmp_path)))
    assert [j.key for j in again] == [j.key for j in jobs]
    other = expand_jobs(load_batch_config(grid_config(tmp_path), seed=4))
    assert not {j.key for j in other} & {j.key for j in jobs}


def test_variables_dotted_paths_and_linked_roi_keys(tmp_path):
    cfg = {
        "base_output_dir": str(tmp_path),
        "base_config": tiny_base(emitters={"area_px": 16.0}, zernike={"crop_size": 16}),
        "variables": {"tiff.roi_size": [16, 32], "tiff.noise_params.background": [50, 100]},
    }
    jobs = expand_jobs(load_batch_config(cfg))
    assert len(jobs) == 4
    j = jobs[-1]
    assert j.config["tiff"]["roi_width"] == 32 and j.config["emitters"]["area_px"] == 32
    assert j.config["zernike"]["crop_size"] == 32 and j.config["tiff"]["noise_params"]["background"] == 100


def test_bad_batch_configs_name_the_key(tmp_path):
    with pytest.raises(BatchConfigError) as ei:
        load_batch_config(
            {"base_config": tiny_base(), "variable_configs": {"crop_offset": [[0, 0]]}, "sample_config": {}}
        )
    p = dict(ei.value.problems)
    assert "ambiguous" in p["variable_configs.crop_offset"]
    assert "did you mean 'sample_configs'" in p["sample_config"]
    with pytest.raises(BatchConfigError) as ei:
        expand_jobs(load_batch_config({"base_config": tiny_base(), "variables": {"emitters.frames": [0, 2]}}))
    assert any("emitters.frames" in k for k, _ in ei.value.problems)
    with pytest.raises(BatchConfigError) as ei:
        load_batch_config({"base_config": tiny_base(), "variable_configs": {"num_emiters": [1]}})
    assert "num_emitters" in dict(ei.value.problems)["variable_configs.num_emiters"]


def test_original_batch_configs_load(original, tmp_path):
    for name in ("batch_config_100samples_40.json", "batch_config_100samples_256.json"):
        with pytest.raises(BatchConfigError, match="zmap_path.*not found"):
            load_batch_config(original(name))
        spec = load_batch_config(original(name), zmap=str(original("result_phase_retrieval.h5")), output_dir=tmp_path)
        jobs = expand_jobs(spec)
        assert len(jobs) == 100 and jobs[0].name == "sample_001" and jobs[-1].name == "sample_100"
        assert all(j.config["emitters"]["frames"] == 200 for j in jobs)
        assert len({j.seed for j in jobs}) == 100
    spec = load_batch_config(original("sample_config.json"), zmap=str(original("result_phase_retrieval.h5")))
    with pytest.raises(BatchConfigError, match="density_mu_sig"):
        expand_jobs(spec)  # the original silently ran it with defaults


# ---- the manifest --------------------------------------------------------------------------------


def test_manifest_round_trip_and_truncated_manifest_names_the_file(tmp_path, caplog, capsys):
    from z2t_dask.batch import Manifest, read_manifest, read_status
    from z2t_dask.batch.manifest import STORE
    from z2t_dask.errors import FormatError, InspectError, Z2TError
    from z2t_dask.tools.summary import summarize

    out = tmp_path / "b"
    out.mkdir()
    spec = load_batch_config(grid_config(out))
    m = Manifest(out, spec, resume=True)
    m.jobs["sample_002"] = {"state": "done", "index": 1, "key": "k2"}
    m.jobs["sample_001"] = {"state": "failed", "index": 0, "key": "k1", "error": "ValueError: boom\n"}
    m.write()
    doc = read_manifest(out)  # the store
    exported = json.loads((out / MANIFEST).read_text())
    assert doc == exported == read_manifest(out / MANIFEST)
    # the export is byte for byte the document as the manifest.json of earlier versions was written
    assert (out / MANIFEST).read_text() == json.dumps(exported, indent=1, sort_keys=True)
    assert doc["schema"] == 1 and doc["batch"]["seed"] == 3 and set(doc["jobs"]) == {"sample_001", "sample_002"}
    status = read_status(out)
    assert status["completed_jobs"] == ["sample_002"]
    assert status["failed_jobs"][0]["job_id"] == "sample_001"
    assert status["failed_jobs"][0]["error"] == "ValueError: boom"
    assert list(summarize(out)["jobs"]) == ["sample_001", "sample_002"]  # batch order (index)
    m.close()

    # a damaged store names its file, for the reader and for z2t inspect
    store = out / STORE
    good = store.read_bytes()
    store.write_bytes(b"not a database" * 100)
    with pytest.raises(FormatError, match=r"manifest\.sqlite.*damaged") as ei:
        read_manifest(out)
    assert str(store) in str(ei.value) and isinstance(ei.value, Z2TError)
    assert main(["inspect", str(out)]) == 2
    assert str(store) in capsys.readouterr().err
    # ... and the runner's manifest moves it aside (a warning) and starts from manifest.json
    with caplog.at_level("WARNING", logger="z2t_dask.batch"):
        again = Manifest(out, spec, resume=True)
    assert set(again.jobs) == {"sample_001", "sample_002"} and "unreadable" in caplog.text
    assert again.jobs["sample_001"]["error"] == "ValueError: boom\n"
    assert [p.name for p in out.glob(f"{STORE}.damaged-*")] and store.read_bytes() != good
    again.close()
    caplog.clear()

    # a folder with only manifest.json (written before the store existed): a truncated one names the file
    for p in out.glob(f"{STORE}*"):
        p.unlink()
    text = (out / MANIFEST).read_text()
    (out / MANIFEST).write_text(text[: len(text) // 2])  # a truncated write
    with pytest.raises(FormatError, match=r"manifest\.json.*malformed or truncated") as ei:
        read_manifest(out)
    assert str(out / MANIFEST) in str(ei.value) and isinstance(ei.value, Z2TError)
    with pytest.raises(InspectError, match=r"manifest\.json"):
        summarize(out)
    assert main(["inspect", str(out)]) == 2
    assert str(out / MANIFEST) in capsys.readouterr().err
    (out / MANIFEST).write_text("[1, 2]")
    with pytest.raises(FormatError, match="expected a JSON object, got list"):
        read_manifest(out)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path)

    # the runner's manifest starts afresh (with a warning) over an unreadable one
    (out / MANIFEST).write_text(text[:10])
    with caplog.at_level("WARNING", logger="z2t_dask.batch"):
        fresh = Manifest(out, spec, resume=True)
    assert fresh.jobs == {} and "unreadable" in caplog.text
    fresh.close()


# ---- execution on a LocalCluster ----------------------------------------------------------------


@pytest.mark.cluster
def test_localcluster_grid_batch(client, tmp_path):
    res = run_batch(grid_config(tmp_path / "out"), client, progress=False)
    assert res.exit_code == 0 and len(res.states()["done"]) == 12
    m = manifest(tmp_path / "out")
    emitters = []
    for name, entry in m["jobs"].items():
        folder = tmp_path / "out" / name
        n, roi = entry["params"]["emitters.num_emitters"], entry["params"]["tiff.roi_size"]
        with h5py.File(folder / "emitters.h5") as f:
            assert f["emitters/xyz"].shape == (n, 3)
            assert json.loads(f.attrs["config"])["tiff"]["roi_width"] == roi
            emitters.append(f["emitters/xyz"][()])
        assert tifffile.TiffFile(folder / f"{name.split('/')[-1]}.ome.tiff").series[0].shape == (4, roi, roi)
        for rel, meta in entry["outputs"].items():
            assert (folder / rel).stat().st_size == meta["bytes"]
    # pairwise different emitters (the original's forked workers repeated them)
    for i in range(len(emitters)):
        for j in range(i + 1, len(emitters)):
            if emitters[i].shape == emitters[j].shape:
                assert not np.array_equal(emitters[i], emitters[j])
    status = json.loads((tmp_path / "out" / "batch_status.json").read_text())
    assert len(status["completed_jobs"]) == 12 and status["failed_jobs"] == []
    assert (tmp_path / "out" / "batch.log").read_text().count("done ") == 12


@pytest.mark.cluster
def test_retry_then_success_and_always_failing(client, tmp_path):
    sys.path.insert(0, str(HERE))
    from batch_helpers import always_failing_job, flaky_run_job

    cfg = {
        "base_output_dir": str(tmp_path / "a"),
        "base_config": tiny_base(),
        "sample_configs": {"num_samples": 2, "frames_per_sample": 3},
    }
    res = run_batch(cfg, client, retries=2, progress=False, job_fn=flaky_run_job)
    assert res.exit_code == 0
    assert all(j["attempts"] == 1 for j in res.jobs.values())  # attempts that reached the simulation
    cfg["base_output_dir"] = str(tmp_path / "b")
    res = run_batch(cfg, client, retries=1, progress=False, job_fn=always_failing_job)
    assert res.exit_code == 1 and res.failed == ["sample_001", "sample_002"]
    entry = manifest(tmp_path / "b")["jobs"]["sample_001"]
    assert entry["state"] == "failed" and "deterministic failure of sample_001" in entry["error"]
    assert "always_failing_job" in entry["traceback"]
    assert "FAILED sample_001" in res.summary()
    # a rerun leaves failed jobs failed unless asked; --retry-failed redoes them (now with the real job)
    res = run_batch(cfg, client, progress=False)
    assert res.failed == ["sample_001", "sample_002"]
    res = run_batch(cfg, client, progress=False, retry_failed=True)
    assert res.exit_code == 0 and sorted(res.states()["done"]) == ["sample_001", "sample_002"]
    assert json.loads((tmp_path / "b" / "batch_status.json").read_text())["failed_jobs"] == []


@pytest.mark.cluster
def test_cli_exit_codes(client, tmp_path, capsys):
    addr = client.scheduler.address
    # a missing sCMOS map is bad input: exit 2 before any job runs, naming the key and file, nothing written
    cfg = {
        "base_output_dir": str(tmp_path / "f"),
        "retries": 0,
        "base_config": tiny_base(camera={"model": "scmos", "scmos_offset": str(tmp_path / "nope.npy")}),
        "sample_configs": {"num_samples": 1, "frames_per_sample": 2},
    }
    p = tmp_path / "f.json"
    p.write_text(json.dumps(cfg))
    assert main(["batch", "--config", str(p), "--scheduler", addr, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "camera.scmos_offset" in err and "nope.npy" in err and not (tmp_path / "f").exists()
    # so is a map that is no array of numbers: checked once on the client, before any job runs
    np.save(tmp_path / "words.npy", np.array(["not", "numbers"]))
    cfg["base_config"]["camera"]["scmos_offset"] = str(tmp_path / "words.npy")
    p.write_text(json.dumps(cfg))
    assert main(["batch", "--config", str(p), "--scheduler", addr, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sample_001: camera.scmos_offset" in err and "words.npy" in err and not (tmp_path / "f").exists()
    # a job that fails on the workers (a file where its folder goes) -> exit 1, listed with the path
    del cfg["base_config"]["camera"]
    cfg["variables"] = {"emitters.num_emitters": [5]}
    p.write_text(json.dumps(cfg))
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "job_0000_num_emitters_5").write_text("a file, not a folder")
    assert main(["batch", "--config", str(p), "--scheduler", addr, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAILED job_0000_num_emitters_5/sample_001" in out and str(tmp_path / "f" / "job_0000_num_emitters_5") in out
    # a bad config: exit 2, nothing written
    cfg["base_config"]["emitters"]["num_emiters"] = 3
    cfg["base_output_dir"] = str(tmp_path / "g")
    p.write_text(json.dumps(cfg))
    assert main(["batch", "--config", str(p), "--scheduler", addr]) == 2
    assert "num_emiters" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


@pytest.mark.cluster
def test_changing_one_parameter_redoes_exactly_the_affected_jobs(client, tmp_path):
    cfg = grid_config(tmp_path / "out")
    run_batch(cfg, client, progress=False)
    markers = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob(JOB_MARKER)}
    cfg["variable_configs"]["num_emitters"] = [5, 12, 15]  # 10 -> 12: 4 jobs change
    res = run_batch(cfg, client, progress=False)
    s = res.states()
    assert len(s["done"]) == 4 and len(s["skipped"]) == 8
    assert all("num_emitters_12" in n for n in s["done"])
    for p, t in markers.items():  # untouched jobs not redone
        if "num_emitters_10" not in str(p):
            assert p.stat().st_mtime_ns == t
    # a changed base parameter changes every key: nothing silently skipped
    cfg["base_config"]["psf"]["patch_size"] = 13
    res = run_batch(cfg, client, progress=False)
    assert len(res.states()["done"]) == 12


# ---- failures of processes ------------------------------------------------------------------------


def heavy_config(out, n=6):
    return {
        "base_output_dir": str(out),
        "seed": 9,
        "strategy": "serial",
        "base_config": tiny_base(
            emitters={"num_emitters": 400, "frames": 60}, tiff={"roi_size": 64}, psf={"patch_size": 21}
        ),
        "sample_configs": {"num_samples": n, "frames_per_sample": 60},
    }


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_killed_mid_batch_completes(tmp_path):
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        pids = list(c.run(os.getpid).values())
        killed = []

        def kill_once(entry):
            if not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        res = run_batch(heavy_config(tmp_path / "k"), c, progress=kill_once, retries=0)
    assert killed and res.exit_code == 0 and len(res.states()["done"]) == 6
    for name, entry in res.jobs.items():
        folder = tmp_path / "k" / name
        assert tifffile.TiffFile(folder / f"{name}.ome.tiff").series[0].shape == (60, 64, 64)
        for rel, meta in entry["outputs"].items():
            assert (folder / rel).stat().st_size == meta["bytes"]
    assert not list((tmp_path / "k").rglob(".*.tmp-*"))


@pytest.mark.cluster
def test_job_that_kills_workers_is_reported(tmp_path):
    import dask

    sys.path.insert(0, str(HERE))
    from batch_helpers import worker_killing_job

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as c,
        ):
            cfg = {
                "base_output_dir": str(tmp_path),
                "base_config": tiny_base(),
                "sample_configs": {"num_samples": 1, "frames_per_sample": 2},
            }
            res = run_batch(cfg, c, progress=False, job_fn=worker_killing_job)
    assert res.exit_code == 1
    assert "kills workers (memory?)" in res.jobs["sample_001"]["error"]


@pytest.mark.cluster
@pytest.mark.slow
def test_interrupted_driver_resumes_without_redoing(tmp_path):
    cfgp = tmp_path / "b.json"
    out = tmp_path / "r"
    cfgp.write_text(json.dumps(heavy_config(out, n=8)))
    exe = os.path.join(os.path.dirname(sys.executable), "z2t")
    proc = subprocess.Popen(
        [exe, "batch", "--config", str(cfgp), "--max-workers", "2", "--no-progress"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    done_before: list[str] = []
    while time.time() < deadline:
        try:
            done_before = [n for n, j in manifest(out)["jobs"].items() if j["state"] == "done"]
        except (OSError, ValueError):
            pass
        if len(done_before) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its LocalCluster
    proc.wait(timeout=30)
    assert 2 <= len(done_before) < 8
    marker_times = {n: (out / n / JOB_MARKER).stat().st_mtime_ns for n in done_before}
    res = run_batch(cfgp, max_workers=2, progress=False)
    s = res.states()
    assert res.exit_code == 0
    assert set(done_before) <= set(s["skipped"])  # finished jobs skipped by key ...
    assert len(s.get("done", [])) + len(s["skipped"]) == 8
    for n, t in marker_times.items():  # ... and not done twice
        assert (out / n / JOB_MARKER).stat().st_mtime_ns == t
    assert not list(out.rglob(".*.tmp-*"))  # nothing half-written left
    for n in res.jobs:
        assert tifffile.TiffFile(out / n / f"{n}.ome.tiff").series[0].shape == (60, 64, 64)


# ---- scale-out ----------------------------------------------------------------------------------


def _frames_and_truth(folder: Path, name: str):
    frames = tifffile.imread(folder / f"{name.split('/')[-1]}.ome.tiff")
    with h5py.File(folder / "emitters.h5") as f:
        truth = {k: f[k][()] for k in ("emitters/xyz", "records/phot", "records/frame_ix", "zernike_coeffs/phase")}
    return frames, truth


@pytest.mark.cluster
@pytest.mark.slow
def test_loopback_scheduler_and_workers_same_bytes_as_localcluster(client, tmp_path):
    bindir = os.path.dirname(sys.executable)
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [
                os.path.join(bindir, "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    ]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        addr = json.loads(sched_file.read_text())["address"]
        assert addr.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [os.path.join(bindir, "dask"), "worker", addr, "--nthreads", "1", "--no-dashboard"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            )
        with Client(addr) as c:
            c.wait_for_workers(2, timeout=60)
        cfg = grid_config(tmp_path / "remote")
        p = tmp_path / "g.json"
        p.write_text(json.dumps(cfg))
        assert main(["batch", "--config", str(p), "--scheduler", addr, "--no-progress"]) == 0
        local = run_batch({**cfg, "base_output_dir": str(tmp_path / "local")}, client, progress=False)
        assert local.exit_code == 0
        remote = manifest(tmp_path / "remote")["jobs"]
        assert remote.keys() == local.jobs.keys()
        hosts = {j["host"] for j in remote.values()}
        assert hosts
        for name in remote:
            assert remote[name]["key"] == local.jobs[name]["key"]
            fa, ta = _frames_and_truth(tmp_path / "remote" / name, name)
            fb, tb = _frames_and_truth(tmp_path / "local" / name, name)
            assert fa.tobytes() == fb.tobytes()
            for k in ta:
                assert ta[k].tobytes() == tb[k].tobytes(), k
    finally:
        for pr in procs:
            try:
                os.killpg(pr.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pr in procs:
            pr.wait(timeout=30)


@pytest.mark.cluster
def test_slurm_job_script_without_sbatch(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from z2t_dask.batch.cluster import ClusterError, load_slurm_spec, resolve_client, slurm_cluster

    spec = tmp_path / "slurm.yaml"
    spec.write_text(
        "queue: gpu\naccount: lab123\ncores: 8\nprocesses: 2\nmemory: 32GiB\nwalltime: '02:00:00'\n"
        "jobs: 4\njob_script_prologue: ['source ~/venvs/z2t/bin/activate']\n"
    )
    assert load_slurm_spec(spec)["jobs"] == 4
    cluster = slurm_cluster(spec, require_sbatch=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH -A lab123" in script and "#SBATCH -t 02:00:00" in script
    assert "--cpus-per-task=8" in script and "source ~/venvs/z2t/bin/activate" in script
    assert "--nworkers 2" in script
    with pytest.raises(ClusterError, match="did you mean walltime"):
        load_slurm_spec({"wallclock": "01:00:00"})
    if shutil.which("sbatch") is None:
        with pytest.raises(ClusterError, match="sbatch"):
            with resolve_client(slurm=spec):
                pass
