"""OME-Zarr: NGFF metadata, round trips (zarr v3 and v2), resume after a killed writer, distributed writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import z2t_dask as z2t
from z2t_dask.engine.streaming import resolve_scheduler
from z2t_dask.io.atomic import partial_sibling, resumable_dir
from z2t_dask.io.zarr import PROGRESS_DIR, NGFFError, read_ome_zarr, storage_chunks, validate_ngff, write_ome_zarr

CFG = {
    "tiff": {"roi_width": 72, "roi_height": 64},
    "emitters": {"frames": 20, "num_emitters": 60},
    "psf": {"patch_size": 15},
    "render": {"chunk_frames": 2, "tile_size": 32},
}
TILES = 2 * 3  # 64 x 72 px in 32 px tiles
BLOCKS = 10 * TILES  # 20 frames in chunks of 2


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_ome_zarr_round_trip_and_ngff_metadata(tmp_path, zarr_format):
    cfg = {**CFG, "output": {"zarr_format": zarr_format}}
    s = z2t.simulate(cfg, seed=3)
    out = s.save(tmp_path / "s", format="ome-zarr")
    assert sorted(p.name for p in out.iterdir()) == ["emitters.h5", "s.ome.zarr"]
    stack = out / "s.ome.zarr"
    ms = validate_ngff(stack)
    assert ms["version"] == {3: "0.5", 2: "0.4"}[zarr_format]
    assert [(a["name"], a["type"], a.get("unit")) for a in ms["axes"]] == [
        ("t", "time", None),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    o = s.config.optical
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([1.0, o.pixel_size_nm_y / 1000, o.pixel_size_nm_x / 1000])
    arr = zarr.open_array(store=str(stack / "0"), mode="r")
    assert arr.metadata.zarr_format == zarr_format and arr.chunks == (2, 32, 32)
    assert np.array_equal(arr[...], s.frames.compute()) and np.array_equal(read_ome_zarr(stack).compute(), arr[...])
    group = zarr.open_group(store=str(stack), mode="r")
    assert json.loads(group.attrs["z2t"]["config"])["tiff"]["roi_width"] == 72 and group.attrs["z2t"]["units"] == "ADU"
    if zarr_format == 3:
        assert type(arr.compressors[0]).__name__ == "ZstdCodec" and arr.metadata.dimension_names == ("t", "y", "x")
    else:
        meta = json.loads((stack / "0" / ".zarray").read_text())
        assert meta["compressor"]["id"] == "zstd" and meta["dimension_separator"] == "/"
    assert not list(tmp_path.glob(".*"))  # no partial or temporary left


def test_validate_ngff_reports_layout_errors(tmp_path):
    s = z2t.simulate(CFG, seed=1)
    stack = s.save(tmp_path / "a", format="ome-zarr") / "a.ome.zarr"
    group = zarr.open_group(store=str(stack), mode="r+")
    good = group.attrs["ome"]
    bad = json.loads(json.dumps(good))
    bad["multiscales"][0]["axes"] = [good["multiscales"][0]["axes"][i] for i in (1, 0, 2)]  # space before time
    bad["multiscales"][0]["axes"][2]["unit"] = "pixel"
    bad["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [1.0, 0.1]
    group.attrs["ome"] = bad
    with pytest.raises(NGFFError) as err:
        validate_ngff(stack)
    msg = str(err.value)
    assert "ordered time" in msg and "'pixel' is not an NGFF unit" in msg and "scale must be 3" in msg
    bad = json.loads(json.dumps(good))
    bad["version"] = "0.4"
    bad["multiscales"][0]["datasets"][0]["path"] = "missing"
    group.attrs["ome"] = bad
    with pytest.raises(NGFFError, match=r"(?s)ome.version must be '0.5'.*'missing' is not an array"):
        validate_ngff(stack)


def test_storage_chunks_align_with_dask_blocks():
    # large frames: one frame per zarr chunk; every dask block covers whole zarr chunks
    assert storage_chunks(((5, 5, 2), (1200,), (1200,)), 2) == (1, 1200, 1200)
    assert storage_chunks(((32, 32, 8), (40,), (40,)), 2) == (32, 40, 40)
    assert storage_chunks(((6, 6, 6), (256, 256, 88), (600,)), 2) == (6, 256, 600)
    assert storage_chunks(((4, 6, 6), (64,), (64,)), 4)[0] == 2  # gcd of irregular chunks


CHILD = textwrap.dedent("""
    import sys, time
    import z2t_dask as z2t
    from z2t_dask.io.zarr import write_ome_zarr
    from tests.test_zarr import CFG, slow

    s = z2t.simulate(CFG, seed=5)
    frames = s.frames.map_blocks(slow, dtype=s.frames.dtype)
    write_ome_zarr(sys.argv[1], frames, pixel_size_nm=(100, 100), fingerprint="fp-test", scheduler="sync")
""")


def slow(block):
    """Block function of the killed child: 50 ms per block."""
    time.sleep(0.05)
    return block


@pytest.mark.slow
def test_zarr_resume_after_killed_writer_equals_uninterrupted(tmp_path):
    final = tmp_path / "k.ome.zarr"
    progress = partial_sibling(final) / PROGRESS_DIR
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(final)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and child.poll() is None:
        if progress.is_dir() and len(os.listdir(progress)) >= 5:
            break
        time.sleep(0.01)
    assert child.poll() is None, child.stderr.read().decode()
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = len(os.listdir(progress))
    assert not final.exists() and 5 <= done < BLOCKS  # interrupted

    s = z2t.simulate(CFG, seed=5)
    report = write_ome_zarr(final, s.frames, pixel_size_nm=(100, 100), fingerprint="fp-test")
    assert report.blocks_total == BLOCKS and report.blocks_skipped >= done
    assert report.blocks_written + report.blocks_skipped == BLOCKS
    assert not partial_sibling(final).exists()
    ref = write_ome_zarr(tmp_path / "ref.ome.zarr", s.frames, pixel_size_nm=(100, 100), fingerprint="fp-test")
    assert ref.blocks_written == BLOCKS
    assert np.array_equal(read_ome_zarr(final).compute(), s.frames.compute())
    a, b = files_under(final / "0"), files_under(tmp_path / "ref.ome.zarr" / "0")
    assert a.keys() == b.keys() and a == b  # every chunk file byte-identical
    # a finished output with the same fingerprint is not written again
    assert write_ome_zarr(final, s.frames, pixel_size_nm=(100, 100), fingerprint="fp-test").blocks_written == 0
    with pytest.raises(FileExistsError):
        write_ome_zarr(final, s.frames, pixel_size_nm=(100, 100), fingerprint="other")


def test_interrupted_sample_save_resumes_only_missing_blocks(tmp_path):
    s = z2t.simulate(CFG, seed=2)
    good = s.frames
    calls = []

    def fail_late(block):
        calls.append(1)
        if len(calls) > 12:
            raise RuntimeError("interrupted")
        return block

    meta = np.empty((0, 0, 0), good.dtype)
    s.frames = good.map_blocks(fail_late, meta=meta)
    with pytest.raises(RuntimeError, match="interrupted"):
        s.save(tmp_path / "x", format="ome-zarr", scheduler="sync")
    assert not (tmp_path / "x").exists()
    progress = partial_sibling(partial_sibling(tmp_path / "x") / "x.ome.zarr") / PROGRESS_DIR
    done = len(os.listdir(progress))
    assert 1 <= done <= 12
    calls.clear()
    s.frames = good.map_blocks(lambda b: calls.append(1) or b, meta=meta)
    s.save(tmp_path / "x", format="ome-zarr", scheduler="sync")
    assert len(calls) == BLOCKS - done  # only the missing blocks are computed again
    assert not partial_sibling(tmp_path / "x").exists()
    s.frames = good
    ref = s.save(tmp_path / "ref", format="ome-zarr")
    assert files_under(tmp_path / "x" / "x.ome.zarr" / "0") == files_under(ref / "ref.ome.zarr" / "0")
    with pytest.raises(FileExistsError):  # a finished folder is never replaced silently
        z2t.simulate(CFG, seed=3).save(tmp_path / "x", format="ome-zarr")


def test_store_runs_in_bounded_batches_with_the_same_bytes(tmp_path, monkeypatch):
    """Blocks are stored in da.store calls of at most STORE_BATCH_BLOCKS blocks (bounded scheduler state)."""
    import dask.array as da

    import z2t_dask.io.zarr as zio

    s = z2t.simulate(CFG, seed=4)
    ref = s.save(tmp_path / "ref", format="ome-zarr")
    calls = []
    real_store = da.store

    def counting_store(sources, targets, **kwargs):
        calls.append(sum(int(np.prod(src.numblocks)) for src in sources))
        return real_store(sources, targets, **kwargs)

    monkeypatch.setattr(zio, "STORE_BATCH_BLOCKS", 8)
    monkeypatch.setattr(da, "store", counting_store)
    out = s.save(tmp_path / "b", format="ome-zarr")
    assert sum(calls) == BLOCKS and max(calls) <= 8 and len(calls) >= BLOCKS // 8
    assert files_under(out / "b.ome.zarr" / "0") == files_under(ref / "ref.ome.zarr" / "0")
    # the grouping itself: consecutive, never above the limit unless one source alone is larger
    sources = [s.frames[:2], s.frames[2:6], s.frames[6:8], s.frames[8:20]]  # 6, 12, 6 and 36 blocks
    assert list(zio.store_batches(sources, limit=12)) == [[0], [1], [2], [3]]
    assert list(zio.store_batches(sources, limit=20)) == [[0, 1], [2], [3]]


def test_resumable_dir_keeps_its_progress_but_not_another_contents(tmp_path):
    final = tmp_path / "o"
    seen = []
    for fingerprint in ("a", "a", "b"):
        with pytest.raises(RuntimeError):
            with resumable_dir(final, fingerprint=fingerprint) as work:
                seen.append(sorted(p.name for p in work.iterdir() if p.name != ".z2t-partial"))
                (work / f"{fingerprint}-{len(seen[-1])}").write_text("x")
                raise RuntimeError("killed")
    assert seen == [[], ["a-0"], []]  # the second "a" run resumed; "b" started from an empty folder
    assert sorted(p.name for p in partial_sibling(final).iterdir()) == [".z2t-partial", "b-0"]
    with resumable_dir(final, fingerprint="b") as work:
        assert (work / "b-0").exists()
    assert sorted(p.name for p in final.iterdir()) == ["b-0"] and not partial_sibling(final).exists()


@pytest.mark.cluster
@pytest.mark.slow
def test_distributed_client_writes_zarr_chunks_on_workers_and_tiff_in_order(tmp_path):
    distributed = pytest.importorskip("distributed")
    s = z2t.simulate(CFG, seed=4)
    ref = s.frames.compute()
    assert resolve_scheduler("auto") == "threads"  # no client: local threads
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert resolve_scheduler("auto") is None  # the active client
        with distributed.get_task_stream(client) as ts:
            out = s.save(tmp_path / "d", format="ome-zarr")  # scheduler="auto" finds the client
        store_workers = {t["worker"] for t in ts.data if "store" in t["key"][0] if isinstance(t["key"], tuple)}
        assert len(store_workers) == 2  # both workers wrote chunks
        with distributed.get_task_stream(client) as ts:
            tif = s.save(tmp_path / "t", format="ome-tiff")
        assert len(ts.data) >= s.frames.npartitions  # the blocks ran on the cluster
        pids = client.run(os.getpid)
    assert os.getpid() not in pids.values()
    assert np.array_equal(read_ome_zarr(out / "d.ome.zarr").compute(), ref)
    import tifffile

    assert np.array_equal(tifffile.imread(tif / "t.ome.tiff"), ref)
