"""Batch reliability (issue 15): user paths resolved on the client, the output-folder probe, one run per
folder (lock), verified resume and ``z2t inspect --verify``, bad Zmaps and failed starts that write
nothing, a clean Ctrl-C. Real clusters and real processes; the probe's refusal also with a worker
that truly does not see the folder (a private mount namespace) where the system allows one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from distributed import Client, LocalCluster

from z2t_dask.batch import JOB_MARKER, BatchLockError, run_batch
from z2t_dask.batch.cluster import OutputFolderError
from z2t_dask.batch.lock import LOCK_FILE, batch_lock, read_lock
from z2t_dask.batch.verify import verify_folder
from z2t_dask.errors import ClusterError, ZmapError, interrupt_of
from z2t_dask.tools.cli import main

HERE = Path(__file__).resolve().parent
ZMAP = HERE.parent.parent / "shared" / "fixtures" / "original" / "result_phase_retrieval.h5"
Z2T = os.path.join(os.path.dirname(sys.executable), "z2t")


def tiny_base(**over):
    base = {
        "emitters": {"num_emitters": 12, "frames": 3, "margin_px": 1.0},
        "tiff": {"roi_size": 16},
        "psf": {"patch_size": 13},
        "zernike": {"synthetic_shape": [300, 300]},
    }
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return base


def small_batch(out, n=2, **base_over):
    return {
        "base_output_dir": str(out),
        "seed": 5,
        "base_config": tiny_base(**base_over),
        "sample_configs": {"num_samples": n, "frames_per_sample": 3},
    }


def heavy_batch(out, n=8):
    return {
        "base_output_dir": str(out),
        "seed": 9,
        "strategy": "serial",
        "base_config": tiny_base(
            emitters={"num_emitters": 400, "frames": 60}, tiff={"roi_size": 64}, psf={"patch_size": 21}
        ),
        "sample_configs": {"num_samples": n, "frames_per_sample": 60},
    }


@pytest.fixture(scope="module")
def workers_cwd(tmp_path_factory):
    return tmp_path_factory.mktemp("workers_cwd")


@pytest.fixture(scope="module")
def client(workers_cwd):
    """Two worker processes whose current folder is ``workers_cwd`` (not the test's); not the default client."""
    here = os.getcwd()
    os.chdir(workers_cwd)
    try:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    finally:
        os.chdir(here)
    with cluster, Client(cluster, set_as_default=False) as c:
        assert set(c.run(os.getcwd).values()) == {str(workers_cwd)}
        yield c


def manifest(out) -> dict:
    """The batch's manifest as it is now (its store; manifest.json is only exported at a run's start and end)."""
    from z2t_dask.batch import read_manifest

    return read_manifest(out)


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


# ---- user paths are resolved on the client -----------------------------------------------------------


@pytest.mark.cluster
def test_relative_output_dir_and_zmap_resolve_on_the_client(client, workers_cwd, tmp_path, monkeypatch, capsys):
    if not ZMAP.is_file():
        pytest.skip(f"original fixture missing: {ZMAP}")
    user = tmp_path / "user"
    (user / "maps").mkdir(parents=True)
    shutil.copy(ZMAP, user / "maps" / "z.h5")
    monkeypatch.chdir(user)
    res = run_batch(small_batch("rel/out"), client, zmap="maps/z.h5", progress=False)
    assert res.exit_code == 0 and res.output_dir == user / "rel" / "out"
    for name, job in res.jobs.items():
        assert (user / "rel" / "out" / name / JOB_MARKER).is_file()
        assert job["host"]
    assert not (workers_cwd / "rel").exists()  # nothing where the workers run
    assert all(j["zmap_path"] == str(user / "maps" / "z.h5") for j in _job_configs(user / "rel" / "out"))
    assert main(["inspect", "rel/out", "--json"]) == 0  # what the user sees from their folder
    info = json.loads(capsys.readouterr().out)
    assert info["states"] == {"done": 2} and all(j["folder_exists"] for j in info["jobs"].values())


def _job_configs(out: Path) -> list[dict]:
    import h5py

    cfgs = []
    for marker in sorted(out.rglob(JOB_MARKER)):
        with h5py.File(marker.parent / "emitters.h5") as f:
            cfgs.append(json.loads(f.attrs["config"]))
    return cfgs


@pytest.mark.cluster
def test_scmos_maps_resolve_relative_to_the_batch_config(client, tmp_path, monkeypatch, capsys):
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "maps").mkdir(parents=True)
    np.save(cfg_dir / "maps" / "offset.npy", np.full((300, 300), 120.0, np.float32))
    cfg = small_batch(tmp_path / "out", n=1, camera={"model": "scmos", "scmos_offset": "maps/offset.npy"})
    p = write_config(cfg_dir / "batch.json", cfg)
    monkeypatch.chdir(tmp_path)  # neither the config's folder nor the workers'
    res = run_batch(p, client, progress=False)
    assert res.exit_code == 0
    (cfg_used,) = _job_configs(tmp_path / "out")
    assert cfg_used["camera"]["scmos_offset"] == str(cfg_dir / "maps" / "offset.npy")
    frames = tifffile.imread(tmp_path / "out" / "sample_001" / "sample_001.ome.tiff")
    assert frames.min() >= 120  # the map's offset is in every pixel
    # a missing map is refused before any job runs, naming the key and the resolved file
    cfg["base_config"]["camera"]["scmos_offset"] = "maps/missing.npy"
    cfg["base_output_dir"] = str(tmp_path / "out2")
    write_config(cfg_dir / "batch.json", cfg)
    assert main(["batch", "--config", str(p), "--no-progress"]) == 2
    assert "base_config.camera.scmos_offset" in capsys.readouterr().err and not (tmp_path / "out2").exists()
    # so is a map smaller than the ROI (checked once on the client, naming the job, key and file)
    np.save(cfg_dir / "maps" / "small.npy", np.full((10, 10), 120.0, np.float32))
    cfg["base_config"]["camera"]["scmos_offset"] = "maps/small.npy"
    write_config(cfg_dir / "batch.json", cfg)
    assert main(["batch", "--config", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "sample_001: camera.scmos_offset" in err and "small.npy" in err and not (tmp_path / "out2").exists()


@pytest.mark.cluster
def test_sample_save_relative_ome_zarr_under_a_client_lands_where_the_user_is(
    client, workers_cwd, tmp_path, monkeypatch
):
    import z2t_dask as z2t

    monkeypatch.chdir(tmp_path)
    sample = z2t.simulate(tiny_base(), seed=4)
    out = sample.save("rel/s", format="ome-zarr", scheduler=client.get)
    assert out == tmp_path / "rel" / "s"
    opened = z2t.open_sample("rel/s")
    assert np.array_equal(np.asarray(opened.frames), sample.compute())
    assert not (workers_cwd / "rel").exists() and not list(tmp_path.glob("rel/.*"))


# ---- the output-folder probe ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_probe_refuses_workers_that_do_not_see_the_folder(tmp_path, monkeypatch):
    import z2t_dask.batch.cluster as cluster_mod

    def blind(path, token):
        return "elsewhere", False

    monkeypatch.setattr(cluster_mod, "_sees_token", blind)
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl,
        Client(cl, set_as_default=False) as c,
    ):
        new = tmp_path / "parent" / "new"
        with pytest.raises(OutputFolderError, match=r"not visible to 1 of 1 Dask workers") as ei:
            run_batch(small_batch(new), c, progress=False)
        assert str(new) in str(ei.value) and "elsewhere" in str(ei.value)
        assert isinstance(ei.value, ClusterError) and not (tmp_path / "parent").exists()  # nothing left
        existing = tmp_path / "existing"
        existing.mkdir()
        (existing / "keep.txt").write_text("x")
        with pytest.raises(OutputFolderError):
            run_batch(small_batch(existing), c, progress=False)
        assert sorted(p.name for p in existing.iterdir()) == ["batch.log", "keep.txt"]  # no manifest, no lock


def test_a_worker_without_the_folder_refuses_the_job_and_creates_nothing(tmp_path):
    from z2t_dask.batch import expand_jobs, load_batch_config, run_job

    (job,) = expand_jobs(load_batch_config(small_batch(tmp_path / "a", n=1)))
    with pytest.raises(ClusterError, match=r"does not exist on worker host"):
        run_job(job.to_dict(), str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()


@pytest.mark.cluster
@pytest.mark.slow
def test_probe_with_a_worker_in_another_mount_namespace(tmp_path, capsys):
    """A real worker that does not see the folder: its own mount namespace hides it under a tmpfs."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {hidden}"], capture_output=True
        ).returncode
    ):
        pytest.skip("no private mount namespaces here (unshare -m needs privileges)")
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", scheduler_port=0, dashboard_address=None
    ) as cl:
        worker = subprocess.Popen(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                f"mount -t tmpfs none {hidden} && exec {bindir}/dask worker {cl.scheduler_address} "
                "--nthreads 1 --no-dashboard --no-nanny",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        try:
            with Client(cl, set_as_default=False) as c:
                c.wait_for_workers(1, timeout=60)
                p = write_config(tmp_path / "b.json", small_batch(hidden / "out", n=1))
                t = time.time()
                assert main(["batch", "--config", str(p), "--scheduler", cl.scheduler_address, "--no-progress"]) == 2
                assert time.time() - t < 30
                err = capsys.readouterr().err
                assert f"the batch output folder {hidden / 'out'} is not visible to 1 of 1 Dask workers" in err
                assert not (hidden / "out").exists()  # refused before any job: removed on the client too
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)


# ---- one run per output folder ---------------------------------------------------------------------------


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's batch lock until killed."""
    code = (
        "import sys, time; from z2t_dask.batch.lock import batch_lock\n"
        "with batch_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_is_refused_naming_the_holder_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".sample_001.tmp-123-abcdef"  # a temporary of the holder's run, in progress
    leftover.mkdir()
    (leftover / "part.tiff").write_bytes(b"123")
    p = write_config(tmp_path / "b.json", small_batch(out))
    holder = _hold_lock(out)
    try:
        lock = read_lock(out)
        assert lock is not None and lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        assert main(["batch", "--config", str(p), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and socket.gethostname() in err and "another z2t batch" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert (leftover / "part.tiff").read_bytes() == b"123"  # the start-up cleanup did not run
        assert sorted(q.name for q in out.iterdir()) == [".sample_001.tmp-123-abcdef", LOCK_FILE]
        assert read_lock(out) == lock  # still the holder's
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_another_host_is_refused_with_what_to_delete(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "node-17", "pid": 4242, "started": 1.0, "token": "t"}))
    with pytest.raises(BatchLockError, match=r"host node-17, pid 4242.*delete .*\.z2t_batch\.lock"):
        with batch_lock(tmp_path):
            pass
    assert read_lock(tmp_path)["host"] == "node-17"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_locks_of_this_host_are_taken_over_with_a_warning(tmp_path, caplog):
    host = socket.gethostname()
    dead = _dead_pid()
    for stale in (
        {"host": host, "pid": dead, "started": time.time() - 5, "token": "dead"},
        {"host": host, "pid": os.getpid(), "started": 1000.0, "token": "reused"},  # pid reused since 1970
    ):
        (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
        with caplog.at_level(logging.WARNING, logger="z2t_dask.batch"):
            with batch_lock(tmp_path) as mine:
                assert read_lock(tmp_path) == mine and mine["pid"] == os.getpid()
        assert f"pid {stale['pid']}" in caplog.text and "stale lock" in caplog.text
        assert not (tmp_path / LOCK_FILE).exists()  # released
        caplog.clear()
    # a live holder of this host is never taken over
    with batch_lock(tmp_path):
        with pytest.raises(BatchLockError, match=rf"pid {os.getpid()}.*still running"):
            with batch_lock(tmp_path):
                pass


@pytest.mark.cluster
def test_stale_lock_then_full_run(client, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    lock = {"host": socket.gethostname(), "pid": dead, "started": time.time() - 60, "token": "x"}
    (out / LOCK_FILE).write_text(json.dumps(lock))
    (out / ".sample_002.tmp-1-00").mkdir()  # the dead run's leftover: cleaned once the lock is ours
    with caplog.at_level(logging.WARNING, logger="z2t_dask.batch"):
        res = run_batch(small_batch(out), client, progress=False)
    assert res.exit_code == 0 and f"pid {dead}" in caplog.text
    assert not (out / LOCK_FILE).exists() and not (out / ".sample_002.tmp-1-00").exists()


@pytest.mark.cluster
@pytest.mark.slow
def test_two_concurrent_runs_the_second_is_refused_and_the_first_completes(tmp_path, capsys):
    out = tmp_path / "out"
    p = write_config(tmp_path / "b.json", heavy_batch(out, n=6))
    first = subprocess.Popen(
        [Z2T, "batch", "--config", str(p), "--max-workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if any(j["state"] == "running" for j in manifest(out)["jobs"].values()):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert main(["batch", "--config", str(p), "--max-workers", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, stderr
    assert "6 done" in stdout
    report = verify_folder(out)
    assert report["ok"] and report["jobs_verified"] == 6 and report["files_verified"] == 12
    assert not (out / LOCK_FILE).exists() and not list(out.rglob(".*.tmp-*"))


# ---- verified resume -----------------------------------------------------------------------------------


def _flip_byte(path: Path, keep_mtime: bool) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert path.stat().st_size == st.st_size


@pytest.mark.cluster
def test_verified_resume_and_inspect_verify(client, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    cfg = small_batch(out, n=3)
    assert run_batch(cfg, client, progress=False).exit_code == 0
    tiff = out / "sample_001" / "sample_001.ome.tiff"
    original = tiff.read_bytes()
    marker = json.loads((out / "sample_001" / JOB_MARKER).read_text())
    meta = marker["outputs"]["sample_001.ome.tiff"]
    assert meta["mtime_ns"] == tiff.stat().st_mtime_ns and len(meta["sha256"]) == 64
    assert manifest(out)["jobs"]["sample_001"]["outputs"] == marker["outputs"]
    assert main(["inspect", str(out), "--verify"]) == 0
    assert "6 files of 3 finished jobs hashed (sha256): all match" in capsys.readouterr().out

    # a byte flipped in place, size and time kept: the fast path cannot see it ...
    _flip_byte(tiff, keep_mtime=True)
    res = run_batch(cfg, client, progress=False)
    assert res.states() == {"skipped": ["sample_001", "sample_002", "sample_003"]}
    # ... inspect --verify does (exit 3, names the file), on the batch and on the job's folder
    assert main(["inspect", str(out), "--verify"]) == 3
    cap = capsys.readouterr()
    assert f"DAMAGED {tiff}: sha256 differs" in cap.out and "1 damaged file(s)" in cap.err
    assert main(["inspect", str(out / "sample_001"), "--verify", "--json"]) == 3
    info = json.loads(capsys.readouterr().out)
    assert info["verify"]["ok"] is False and str(tiff) in info["verify"]["damaged"][0]
    # ... and so does z2t batch --verify: the job is redone (a warning names the file), the others skipped
    p = write_config(tmp_path / "b.json", cfg)
    with caplog.at_level(logging.WARNING, logger="z2t_dask.batch"):
        assert main(["batch", "--config", str(p), "--verify", "--scheduler", client.scheduler.address]) == 0
    assert f"{tiff}: sha256 differs" in caplog.text and "sample_001" in caplog.text
    states = {n: j["state"] for n, j in manifest(out)["jobs"].items()}
    assert states == {"sample_001": "done", "sample_002": "skipped", "sample_003": "skipped"}
    assert tiff.read_bytes() == original  # redone: the same bytes as the first time
    assert verify_folder(out)["ok"]
    caplog.clear()

    # a byte flipped with a new modification time is caught by the fast path of a plain resume
    _flip_byte(out / "sample_002" / "emitters.h5", keep_mtime=False)
    with caplog.at_level(logging.WARNING, logger="z2t_dask.batch"):
        res = run_batch(cfg, client, progress=False)
    assert res.states() == {"skipped": ["sample_001", "sample_003"], "done": ["sample_002"]}
    assert "sample_002/emitters.h5: sha256 differs" in caplog.text
    # a file that only changed time (a copy that did not keep times) is hashed and accepted
    h5 = out / "sample_003" / "emitters.h5"
    os.utime(h5, ns=(h5.stat().st_atime_ns, h5.stat().st_mtime_ns + 5_000_000_000))
    res = run_batch(cfg, client, progress=False)
    assert sorted(res.states()["skipped"]) == ["sample_001", "sample_002", "sample_003"]
    # the manifest and the marker must agree
    from z2t_dask.batch import Manifest, load_batch_config

    m = Manifest(out, load_batch_config(cfg), resume=True)
    entry = m.jobs["sample_003"]
    entry["outputs"]["emitters.h5"]["sha256"] = "0" * 64
    m.jobs["sample_003"] = entry
    m.close()
    report = verify_folder(out)
    assert not report["ok"] and "record different checksums" in report["damaged"][0]


@pytest.mark.cluster
def test_inspect_verify_names_a_file_whose_damage_keeps_the_folder_from_being_summarized(client, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_batch(small_batch(out, n=1), client, progress=False).exit_code == 0
    tiff = out / "sample_001" / "sample_001.ome.tiff"
    data = bytearray(tiff.read_bytes())
    at = data.index(b"z2t_dask/provenance")
    start = data.index(b"{", at)  # the provenance JSON of the OME annotation
    data[start] = ord("[")  # same size, no longer JSON
    st = tiff.stat()
    tiff.write_bytes(bytes(data))
    os.utime(tiff, ns=(st.st_atime_ns, st.st_mtime_ns))
    for path in (out, out / "sample_001"):
        assert main(["inspect", str(path), "--verify"]) == 3
        cap = capsys.readouterr()
        assert f"DAMAGED {tiff}: sha256 differs" in cap.out and "1 damaged file(s)" in cap.err
    assert main(["inspect", str(out / "sample_001"), "--verify", "--json"]) == 3
    info = json.loads(capsys.readouterr().out)
    assert "annotation is not JSON" in info["unreadable"] and info["verify"]["ok"] is False
    # without --verify the damage is an error naming the file, as before
    assert main(["inspect", str(out / "sample_001")]) != 0
    assert str(tiff) in capsys.readouterr().err


def test_inspect_verify_on_other_kinds(tmp_path, capsys):
    import z2t_dask as z2t

    folder = z2t.simulate(tiny_base(), seed=1).save(tmp_path / "plain")
    assert main(["inspect", str(folder), "--verify"]) == 0  # written by simulate: no checksums to compare
    assert "nothing verified: no z2t_job.json" in capsys.readouterr().out
    assert main(["inspect", str(folder / "emitters.h5"), "--verify"]) == 2
    assert "--verify checks the recorded checksums of batch and sample folders" in capsys.readouterr().err


# ---- bad Zmaps and failed starts write nothing -----------------------------------------------------------


def test_a_batch_zmap_that_is_not_a_zmap_fails_before_any_job(tmp_path, capsys):
    import h5py

    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not a zmap")
    no_phase = tmp_path / "empty.h5"
    with h5py.File(no_phase, "w") as f:
        f["something"] = np.zeros(3)
    p = write_config(tmp_path / "b.json", small_batch(tmp_path / "out", n=4))
    for bad, expected in ((not_hdf5, "as HDF5"), (no_phase, "z_maps/phase")):
        t = time.time()
        assert main(["batch", "--config", str(p), "--zmap", str(bad), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and expected in err and "Traceback" not in err
        assert time.time() - t < 20  # no cluster started, no job tried
        assert not (tmp_path / "out").exists()
    with pytest.raises(ZmapError, match="zmap_path"):
        run_batch(small_batch(tmp_path / "out"), zmap=str(no_phase), progress=False)


def _write_zmap(path: Path, maps: np.ndarray) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f["z_maps/phase"] = maps.astype(np.float32)
    return path


def test_an_all_nan_zmap_or_a_roi_beyond_the_zmap_fails_before_any_job(tmp_path, capsys):
    good = np.full((21, 40, 40), 0.05)
    zmap = _write_zmap(tmp_path / "nan.h5", np.full_like(good, np.nan))
    cfg = small_batch(tmp_path / "out", n=2)
    cfg["base_config"]["zmap_path"] = str(zmap)
    p = write_config(tmp_path / "b.json", cfg)
    assert main(["batch", "--config", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and str(zmap) in err and "zmap_path" in err
    assert not (tmp_path / "out").exists()
    # one grid point puts the ROI beyond the Zmap (30 + 16 px > 40 px): refused up front, naming job and key
    cfg["variables"] = {"tiff.crop_offset": [[0, 0], [30, 0]]}
    cfg["base_config"]["zmap_path"] = str(_write_zmap(tmp_path / "small.h5", good))
    p = write_config(tmp_path / "b.json", cfg)
    assert main(["batch", "--config", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tiff.crop_offset" in err and "small.h5" in err and "job_0001_crop_offset_-30-0-" in err
    assert not (tmp_path / "out").exists()


def test_failed_starts_write_nothing(tmp_path, monkeypatch, capsys):
    p = write_config(tmp_path / "b.json", small_batch(tmp_path / "out"))
    # no bokeh for --dashboard
    monkeypatch.setitem(sys.modules, "bokeh", None)
    assert main(["batch", "--config", str(p), "--dashboard", "--no-progress"]) == 2
    assert "bokeh" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # no sbatch for --slurm (or no dask-jobqueue)
    if shutil.which("sbatch") is None:
        slurm = tmp_path / "slurm.yaml"
        slurm.write_text("cores: 1\nmemory: 1GiB\n")
        assert main(["batch", "--config", str(p), "--slurm", str(slurm), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "sbatch" in err or "dask-jobqueue" in err
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_unreachable_scheduler_writes_nothing(tmp_path, capsys):
    p = write_config(tmp_path / "b.json", small_batch(tmp_path / "out"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["batch", "--config", str(p), "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress"]) == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- Ctrl-C --------------------------------------------------------------------------------------------


def _interrupt_inside_a_lock() -> RuntimeError:
    """What Ctrl-C inside ``threading.Condition.wait`` can leave: a RuntimeError raised while handling it."""
    try:
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("cannot release un-acquired lock")
    except RuntimeError as exc:
        return exc


def test_interrupt_of_finds_the_ctrl_c_behind_an_error():
    exc = _interrupt_inside_a_lock()
    assert isinstance(interrupt_of(exc), KeyboardInterrupt)
    assert interrupt_of(KeyboardInterrupt()) is not None
    assert interrupt_of(RuntimeError("a real bug")) is None
    try:  # a cycle in the chain ends the search
        raise ValueError("x") from exc
    except ValueError as err:
        exc.__context__.__context__ = err
        assert isinstance(interrupt_of(err), KeyboardInterrupt)


def test_cli_reports_an_interrupt_that_surfaced_as_a_lock_error(monkeypatch, tmp_path, capsys):
    import z2t_dask.tools.cli as cli

    def batch(args):
        raise _interrupt_inside_a_lock()

    monkeypatch.setattr(cli, "_batch", batch)
    p = write_config(tmp_path / "b.json", small_batch(tmp_path / "out"))
    assert main(["batch", "--config", str(p), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == "z2t batch: interrupted; no output was left half-written"


@pytest.mark.cluster
def test_an_interrupt_inside_as_completed_marks_the_jobs_in_flight_interrupted(client, tmp_path, monkeypatch):
    """Ctrl-C while the driver waits on ``as_completed`` (a Condition): the jobs in flight are interrupted."""
    import distributed

    class Interrupted:
        def __init__(self, *a, **k):
            pass

        def add(self, fut):
            pass

        def __iter__(self):
            raise _interrupt_inside_a_lock()

    monkeypatch.setattr(distributed, "as_completed", Interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(small_batch(out, n=2), client, progress=False)
    assert {j["state"] for j in manifest(out)["jobs"].values()} == {"interrupted"}


@pytest.mark.cluster
@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "out"
    # enough jobs that the batch is still running when the signal comes, however fast the machine
    # (8 such jobs took ~4 s on one VM and were all done within 0.5 s of the first start on another)
    p = write_config(tmp_path / "b.json", heavy_batch(out, n=48))
    proc = subprocess.Popen(
        [Z2T, "batch", "--config", str(p), "--max-workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if any(j["state"] == "running" for j in manifest(out)["jobs"].values()):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    time.sleep(0.2)  # jobs are running on the workers
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the driver and its workers
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["z2t batch: interrupted; no output was left half-written"], stderr
    assert not (out / LOCK_FILE).exists()
    states = {j["state"] for j in manifest(out)["jobs"].values()}
    assert "interrupted" in states and "running" not in states
    res = run_batch(p, max_workers=2, progress=False)  # the rerun completes
    assert res.exit_code == 0 and verify_folder(out)["ok"] and not list(out.rglob(".*.tmp-*"))
