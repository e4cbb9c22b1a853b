"""Outputs on object stores (issue 17 part 3): a local S3 server (moto, 127.0.0.1) and ``memory://``; never a cloud.

Facts checked: a sample written to ``s3://`` holds byte for byte the files of a local save of the
same config and seed and reads back through ``open_sample``; a batch on ``s3://`` resumes without
redoing anything and is inspected from the store; a job that fails mid-write leaves no marker and is
redone (its leftovers cleared); an interrupted OME-Zarr write on a store resumes block by block.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.batch import run_batch
from z2t_dask.errors import BatchConfigError, OutputFolderError, RemoteStoreError
from z2t_dask.io.remote import SAMPLE_MARKER, RemoteFolder, is_url, resolve_output
from z2t_dask.testing.samples import tiny_config, tiny_config_dict
from z2t_dask.tools.cli import main

BUCKET = "z2t-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; AWS_* point every client at it."""
    pytest.importorskip("moto.server", reason="moto (+ flask, flask-cors) is in the [test] extra")
    pytest.importorskip("s3fs", reason="s3fs is in the [remote] and [test] extras")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("Z2T_CACHE_DIR", str(tmp_path / "cache"))


def _local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_urls_are_passed_as_is_and_paths_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_output("s3://b/run/") == "s3://b/run"
    assert resolve_output("rel/out") == tmp_path / "rel" / "out"
    assert is_url("gs://b/x") and is_url("file:///tmp/x") and not is_url("C:\\data") and not is_url("out/x")


def test_unknown_protocol_is_refused_naming_the_url():
    with pytest.raises(RemoteStoreError, match="nosuchfs://b/x"):
        z2t.simulate(tiny_config(), seed=1).save("nosuchfs://b/x")


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_s3_sample_matches_a_local_save_byte_for_byte(s3, tmp_path, fmt):
    cfg = tiny_config(output={"format": fmt})
    url = f"{s3}/samples-{fmt}/sample_007"
    sample = z2t.simulate(cfg, seed=7)
    assert sample.save(url) == url
    local = z2t.simulate(cfg, seed=7).save(tmp_path / "sample_007")
    folder = RemoteFolder(url)
    listing = folder.listing()
    files = _local_files(local)
    assert set(listing) == set(files) | {SAMPLE_MARKER}
    for rel, data in files.items():
        assert (folder / rel).read_bytes() == data, rel
    marker = json.loads((folder / SAMPLE_MARKER).read_bytes())
    suffix = ".ome.zarr" if fmt == "ome-zarr" else ".ome.tiff"
    assert marker["format"] == fmt and marker["stack"] == f"sample_007{suffix}"
    assert marker["files"]["emitters.h5"]["bytes"] == len(files["emitters.h5"])

    back = z2t.open_sample(url)
    ref = z2t.open_sample(local)
    np.testing.assert_array_equal(back.frames.compute(), ref.frames.compute())
    np.testing.assert_array_equal(back.records["xyz"], ref.records["xyz"])
    assert back.attrs["seed"] == 7 and back.pixel_size_nm == ref.pixel_size_nm
    with pytest.raises(FileExistsError, match="sample_007"):
        sample.save(url)
    info = z2t.summarize(url, verify=True)
    assert info["kind"] == "sample" and info["frames"] == cfg.emitters.frames and info["verify"]["ok"]


def test_memory_round_trip_and_cli(tmp_path, capsys):
    cfg = tiny_config(output={"format": "hdf5"})
    sample = z2t.simulate(cfg, seed=2)
    url = sample.save("memory://z2t-mem/a/sample_002")
    s = z2t.open_sample(url)
    np.testing.assert_array_equal(s.frames.compute(), sample.compute())
    assert len(s.records["xyz"]) == sample.truth.n_records
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_config_dict()))
    assert main(["simulate", "--config", str(config), "--output-dir", "memory://z2t-mem/cli", "--seed", "4"]) == 0
    assert main(["inspect", "memory://z2t-mem/cli/sample_004"]) == 0
    assert "sample memory://z2t-mem/cli/sample_004" in capsys.readouterr().out
    assert main(["simulate", "--config", str(config), "--output-dir", "memory://z2t-mem/cli", "--seed", "4"]) == 2


def test_folder_without_marker_is_incomplete(capsys):
    sample = z2t.simulate(tiny_config(), seed=5)
    url = sample.save("memory://z2t-mem/inc/sample_005")
    (RemoteFolder(url) / SAMPLE_MARKER).unlink()  # as if the writer was killed before its commit
    with pytest.raises(RemoteStoreError, match="no z2t_sample.json"):
        z2t.open_sample(url)
    assert main(["inspect", url]) == 2
    assert "neither a complete sample folder" in capsys.readouterr().err
    # a new save clears the leftovers and commits again (no FileExistsError: nothing complete was there)
    (RemoteFolder(url) / "stray.bin").write_bytes(b"x")
    sample.save(url)
    assert "stray.bin" not in RemoteFolder(url).listing()
    assert z2t.open_sample(url).frames.shape == sample.frames.shape


def test_interrupted_zarr_on_a_store_resumes_block_by_block(monkeypatch):
    from z2t_dask.io import remote_zarr

    sample = z2t.simulate(tiny_config(output={"format": "ome-zarr"}), seed=8, chunk_frames=2)
    url = "memory://z2t-mem/zarr/sample_008"
    real = remote_zarr.RemoteMarkedTarget.__setitem__
    calls = []

    def fail_after_two(self, region, value):
        if len(calls) == 2:
            raise RuntimeError("connection lost")
        calls.append(region)
        real(self, region, value)

    monkeypatch.setattr(remote_zarr.RemoteMarkedTarget, "__setitem__", fail_after_two)
    with pytest.raises(RuntimeError, match="connection lost"):
        sample.save(url, scheduler="sync")
    image = RemoteFolder(url) / "sample_008.ome.zarr"
    assert not (RemoteFolder(url) / SAMPLE_MARKER).exists()
    assert (image / ".z2t-progress" / remote_zarr.OPEN_MARK).exists()
    monkeypatch.setattr(remote_zarr.RemoteMarkedTarget, "__setitem__", real)
    written = []
    monkeypatch.setattr(
        remote_zarr.RemoteMarkedTarget,
        "__setitem__",
        lambda self, region, value: (written.append(region), real(self, region, value)),
    )
    sample.save(url, scheduler="sync")
    assert len(written) == 1  # 3 blocks of 2 frames: the two stored before the failure are kept
    assert not any(k.startswith(".z2t-progress") for k in image.listing())
    np.testing.assert_array_equal(z2t.open_sample(url).frames.compute(), sample.compute())


def _batch_config(url: str, **extra) -> dict:
    return {
        "base_output_dir": url,
        "seed": 3,
        "base_config": tiny_config_dict(emitters={"frames": 3}),
        "variable_configs": {"num_emitters": [5, 10]},
        "sample_configs": {"num_samples": 2, "frames_per_sample": 3},
        **extra,
    }


@pytest.fixture(scope="module")
def process_client():
    """Workers in other processes: they reach the store only through its URL and the environment."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_s3_batch_resumes_without_redoing_and_is_inspected(s3, tmp_path, process_client):
    url = f"{s3}/batch"
    cfg = _batch_config(url)
    first = run_batch(cfg, client=process_client, progress=False, state_dir=tmp_path / "state")
    assert first.exit_code == 0 and len(first.states()["done"]) == 4
    root = RemoteFolder(url)
    markers = {n: (root / n / "z2t_job.json").read_json() for n in first.jobs}
    assert all(m is not None and m["attempt"] == 1 for m in markers.values())
    assert {"manifest.json", "batch_status.json"} <= set(root.listing())

    again = run_batch(cfg, client=process_client, progress=False, state_dir=tmp_path / "state")
    assert set(again.states()) == {"skipped"} and len(again.jobs) == 4
    # another machine (a new state folder): starts from the mirrored manifest, nothing redone
    other = run_batch(cfg, client=process_client, progress=False, state_dir=tmp_path / "other")
    assert set(other.states()) == {"skipped"}
    assert {n: (root / n / "z2t_job.json").read_json() for n in first.jobs} == markers  # no job rewritten

    info = z2t.summarize(url, verify=True)
    assert info["kind"] == "batch" and info["jobs_total"] == 4 and info["verify"]["ok"]
    assert all(j["marker"] and j["bytes"] > 0 for j in info["jobs"].values())
    name = sorted(first.jobs)[0]
    s = z2t.open_sample(f"{url}/{name}")
    assert s.frames.shape[0] == 3 and s.config["emitters"]["num_emitters"] in (5, 10)

    damaged = root / name / "emitters.h5"
    damaged.write_bytes(damaged.read_bytes() + b"x")  # a file changed after its job finished
    assert not z2t.summarize(url, verify=True)["verify"]["ok"]
    redo = run_batch(cfg, client=process_client, progress=False, state_dir=tmp_path / "state")
    assert redo.states()["done"] == [name] and len(redo.states()["skipped"]) == 3
    assert (root / name / "z2t_job.json").read_json()["attempt"] == 2
    assert z2t.summarize(url, verify=True)["verify"]["ok"]


def test_memory_store_is_refused_for_workers_in_other_processes(tmp_path, process_client):
    with pytest.raises(OutputFolderError, match="memory://z2t-mem/private"):
        run_batch(
            _batch_config("memory://z2t-mem/private"), client=process_client, progress=False, state_dir=tmp_path / "s"
        )


def test_job_failing_mid_write_leaves_no_marker_and_is_redone(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    from z2t_dask.io import remote

    url = "memory://z2t-mem/failing"
    real_upload = remote.RemoteFolder.upload

    def upload_one_then_fail(self, local, exclude=()):
        first = sorted(p for p in Path(local).rglob("*") if p.is_file())[0]
        (self / first.name).write_bytes(first.read_bytes())
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(remote.RemoteFolder, "upload", upload_one_then_fail)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        failed = run_batch(_batch_config(url), client=c, progress=False, retries=0, state_dir=tmp_path / "st")
        assert failed.exit_code == 1 and len(failed.failed) == 4
        root = RemoteFolder(url)
        for name in failed.jobs:
            left = root / name
            assert left.listing() and not (left / "z2t_job.json").exists() and not (left / SAMPLE_MARKER).exists()
        monkeypatch.setattr(remote.RemoteFolder, "upload", real_upload)
        redone = run_batch(_batch_config(url), client=c, progress=False, retry_failed=True, state_dir=tmp_path / "st")
    assert redone.exit_code == 0 and len(redone.states()["done"]) == 4
    for name, entry in redone.jobs.items():
        folder = root / name
        marker = (folder / "z2t_job.json").read_json()
        assert marker is not None and marker["attempt"] == 2 and entry["attempts"] == 2
        assert set(folder.listing()) == set(marker["outputs"]) | {"z2t_job.json", SAMPLE_MARKER}


def test_batch_storage_options_must_be_a_mapping(tmp_path):
    from z2t_dask.batch import load_batch_config

    with pytest.raises(BatchConfigError, match="storage_options"):
        load_batch_config(_batch_config("s3://b/x", storage_options="key=secret"))
    spec = load_batch_config(_batch_config("s3://b/x/", storage_options={"anon": False}))
    assert spec.output_dir == "s3://b/x" and spec.storage_options == {"anon": False}


def test_prefetch_serves_markers_from_one_listing_until_a_write():
    import fsspec

    root = RemoteFolder("memory://z2t-mem/prefetch")
    for i in range(3):
        (root / f"job_{i}" / "z2t_job.json").write_json({"key": f"k{i}"})
        (root / f"job_{i}" / "data.bin").write_bytes(b"x" * (i + 1))
    assert root.prefetch(("z2t_job.json",)) == 3
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/z2t-mem/prefetch/job_1/z2t_job.json", b'{"key": "changed behind its back"}')
    job = RemoteFolder(root / "job_1")  # planning wraps the folder again: it keeps the cache
    assert (job / "z2t_job.json").read_json() == {"key": "k1"}  # from memory: no request
    assert job.listing() == {"data.bin": 2, "z2t_job.json": len(json.dumps({"key": "k1"}, indent=1))}
    with pytest.raises(FileNotFoundError):
        (root / "job_9" / "z2t_job.json").read_bytes()  # a prefetched name not listed: absent, no request
    fs.pipe_file("/z2t-mem/prefetch/job_1/counter", b"2")
    assert (job / "counter").read_text() == "2"  # names not prefetched are read fresh
    (root / "job_2" / "z2t_job.json").unlink()  # any write through the folder drops the cache
    assert (job / "z2t_job.json").read_json() == {"key": "changed behind its back"}
    assert "z2t_job.json" not in (root / "job_2").listing()


def test_unreachable_store_is_a_remote_store_error_naming_the_url(tmp_path):
    pytest.importorskip("s3fs", reason="s3fs is in the [remote] and [test] extras")
    options = {
        "endpoint_url": f"http://127.0.0.1:{_free_port()}",  # nothing listens there
        "key": "k",
        "secret": "s",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    with pytest.raises(RemoteStoreError, match="s3://nowhere/run/sample_001: .*Connect"):
        z2t.simulate(tiny_config(), seed=1).save("s3://nowhere/run/sample_001", storage_options=options)
    cfg = _batch_config("s3://nowhere/batch", storage_options=options)
    with pytest.raises(RemoteStoreError, match="s3://nowhere/batch"):
        run_batch(cfg, progress=False, state_dir=tmp_path / "state")
