"""The stack-format registry: one writer signature for every format, compute=False, opener, detection, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from conftest import small_config
from dask.delayed import Delayed

import z2t_dask as z2t
from z2t_dask.errors import FormatError, MemoryBudgetError
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.formats import (
    find_stack,
    format_from_path,
    get_format,
    iter_stack_blocks,
    open_frames,
    read_stack_info,
    registered_formats,
    write_frames,
)
from z2t_dask.io.registry import StackFormat, StackInfo, detect_format, register_format, unregister_format
from z2t_dask.tools.results import open_sample, open_stack

FORMATS = registered_formats()
PIXEL = (101.11, 98.83)


def stack(dtype=np.uint16) -> da.Array:
    """9 frames of 12 x 20 px in uneven dask blocks; two frames empty."""
    g = np.random.default_rng(0)
    data = (g.random((9, 12, 20)) * 1000).astype(dtype)
    data[0] = 0
    data[4] = 0
    return da.from_array(data, chunks=((3, 1, 1, 4), (12,), (20,)))


def files_under(path: Path) -> dict[str, bytes]:
    """Relative path -> bytes of a file, or of every file under a folder."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_builtin_formats_are_registered():
    assert FORMATS[:3] == ("ome-tiff", "ome-zarr", "hdf5")
    assert [get_format(a).name for a in ("tiff", "TIF", "zarr", "ome.zarr", "h5")] == [
        "ome-tiff",
        "ome-tiff",
        "ome-zarr",
        "ome-zarr",
        "hdf5",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_write_then_open_round_trips_frames_and_pixel_size(tmp_path, fmt, dtype):
    entry = get_format(fmt)
    frames = stack(dtype)
    path = tmp_path / entry.filename("s")
    attrs = {"seed": 11, "config": json.dumps({"tiff": {"roi_width": 20}}), "note": "a < b & c"}
    out = entry.write(path, frames, pixel_size_nm=PIXEL, attrs=attrs, units="ADU" if dtype == np.uint16 else "photons")
    assert out == path and detect_format(out) is entry and entry.probe(out)
    back = open_frames(out)
    assert isinstance(back, da.Array) and back.shape == (9, 12, 20) and back.dtype == np.dtype(dtype)
    assert np.array_equal(back.compute(), frames.compute())  # every frame, exactly
    assert np.array_equal(np.concatenate(list(iter_stack_blocks(out, fmt, 4))), frames.compute())
    info = read_stack_info(out)
    assert isinstance(info, StackInfo) and info.format == fmt and info.shape == (9, 12, 20)
    assert info.pixel_size_nm == pytest.approx(PIXEL)
    assert info.units == ("ADU" if dtype == np.uint16 else "photons")
    assert info.attrs["seed"] == 11 and info.attrs["config"] == attrs["config"] and info.attrs["note"] == "a < b & c"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize("fmt", FORMATS)
def test_compute_false_returns_a_delayed_and_one_graph_writes_the_same_files(tmp_path, fmt):
    entry = get_format(fmt)
    frames = stack()
    one = [
        entry.write(tmp_path / entry.filename(f"one{i}"), frames[i:], pixel_size_nm=PIXEL, attrs={"i": i})
        for i in (0, 1)
    ]
    (tmp_path / "g").mkdir()
    delayed = [
        entry.write(
            tmp_path / "g" / entry.filename(f"one{i}"), frames[i:], pixel_size_nm=PIXEL, attrs={"i": i}, compute=False
        )
        for i in (0, 1)
    ]
    assert all(isinstance(d, Delayed) for d in delayed)
    assert not any((tmp_path / "g" / entry.filename(f"one{i}")).exists() for i in (0, 1))  # nothing written yet
    paths = dask.compute(*delayed)
    assert list(paths) == [tmp_path / "g" / p.name for p in one]
    for a, b in zip(one, paths):
        assert files_under(a) == files_under(b)  # byte-identical files
    assert np.array_equal(open_frames(paths[1]).compute(), frames[1:].compute())


def test_sample_write_stack_compute_false_in_one_graph(tmp_path):
    from z2t_dask.sample import write_stack

    s = z2t.simulate(small_config(), seed=3)
    ref = write_stack(s, tmp_path / "ref.ome.tiff")
    d1 = write_stack(s, tmp_path / "a.ome.tiff", compute=False)
    d2 = write_stack(s, tmp_path / "b.h5", format="hdf5", compute=False)
    a, b = dask.compute(d1, d2)
    assert a.read_bytes() == ref.read_bytes()
    assert np.array_equal(open_stack(b).compute(), s.frames.compute())


def test_non_streaming_delayed_write_is_refused_before_anything_exists(tmp_path):
    big = da.zeros((2 * 10**6, 4096, 4096), dtype=np.uint16, chunks=(1, 4096, 4096))
    for fmt in FORMATS:
        entry = get_format(fmt)
        with pytest.raises(MemoryBudgetError, match="needs about"):
            entry.write(tmp_path / entry.filename("x"), big, pixel_size_nm=100, streaming=False, compute=False)
    assert list(tmp_path.iterdir()) == []


def test_tiff_carries_the_provenance_of_zarr_and_hdf5_and_is_reproducible(tmp_path):
    cfg = small_config()
    first = z2t.simulate(cfg, seed=7)
    attrs = first.attrs()
    folders = {fmt: first.save(tmp_path / fmt.replace("-", "_"), format=fmt) for fmt in FORMATS[:3]}
    for fmt, folder in folders.items():
        opened = open_sample(folder)
        assert opened.format == fmt
        assert opened.attrs["seed"] == 7 == first.seed
        assert opened.attrs["config"] == attrs["config"]  # the config JSON, as written
        assert json.loads(opened.attrs["config"]) == json.loads(attrs["config"])
        for key in ("conventions", "zmap", "psf", "z2t_version", "pixel_size_nm", "image_shape", "dtype"):
            assert opened.attrs[key] == attrs[key], (fmt, key)
        assert opened.pixel_size_nm == pytest.approx(
            (first.config.optical.pixel_size_nm_x, first.config.optical.pixel_size_nm_y)
        )
    # same config and seed: byte-identical TIFF (no timestamp, no random UUID); another seed differs
    again = z2t.simulate(cfg, seed=7).save(tmp_path / "again", format="ome-tiff")
    assert (again / "again.ome.tiff").read_bytes() == (folders["ome-tiff"] / "ome_tiff.ome.tiff").read_bytes()
    other = z2t.simulate(cfg, seed=8).save(tmp_path / "other", format="ome-tiff")
    assert (other / "other.ome.tiff").read_bytes() != (again / "again.ome.tiff").read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_detection_from_every_suffix(tmp_path, fmt):
    entry = get_format(fmt)
    for suffix in entry.suffixes:
        for name in (f"movie{suffix}", f"movie{suffix.upper()}", f"a/b/movie{suffix}/"):
            assert detect_format(name) is entry, name
            assert format_from_path(name, default=None) == fmt
            assert entry.detect(name)
    assert format_from_path("movie.png") == "ome-tiff"  # the default
    with pytest.raises(FormatError, match=r"movie\.png: not a frame stack"):
        format_from_path("movie.png", default=None)
    assert detect_format("movie.png") is None


def test_unknown_format_or_codec_raises_format_error_naming_the_key(tmp_path):
    with pytest.raises(FormatError, match=r"output\.format: unknown format 'png'") as err:
        get_format("png")
    assert isinstance(err.value, ValueError) and isinstance(err.value, z2t.Z2TError)
    with pytest.raises(FormatError, match=r"--format: unknown format 'bmp'"):
        get_format("bmp", "--format")
    with pytest.raises(FormatError, match=r"compression: ome-tiff offers zstd, zlib, none, not 'lzw'"):
        get_format("ome-tiff").write(tmp_path / "x.ome.tiff", stack(), pixel_size_nm=100, compression="lzw")
    with pytest.raises(FormatError, match=r"compression: hdf5 offers none, zlib, lzf, not 'zstd'"):
        get_format("hdf5").write(tmp_path / "x.h5", stack(), pixel_size_nm=100, compression="zstd", compute=False)
    s = z2t.simulate(small_config(), seed=1)
    with pytest.raises(FormatError, match=r"format: unknown format 'jpeg'"):
        s.save(tmp_path / "s", format="jpeg")
    with pytest.raises(FormatError, match=r"compression: ome-zarr offers zstd, zlib, none, not 'lzf'"):
        s.save(tmp_path / "s", format="ome-zarr", compression="lzf")
    assert list(tmp_path.iterdir()) == []


def test_malformed_stack_files_raise_format_error_naming_the_file(tmp_path):
    import h5py

    from z2t_dask.io.emitters_h5 import read_emitters_h5

    bad = tmp_path / "bad.ome.tiff"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(FormatError, match=r"bad\.ome\.tiff: not a readable TIFF"):
        open_stack(bad)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(FormatError, match=r"empty\.h5: no dataset 'frames'"):
        open_stack(tmp_path / "empty.h5")
    with pytest.raises(FormatError, match=r"empty\.h5: missing dataset 'emitters/xyz'"):
        read_emitters_h5(tmp_path / "empty.h5")
    text = tmp_path / "emitters.h5"
    text.write_text("x")
    with pytest.raises(FormatError, match=r"emitters\.h5: not a readable HDF5 file"):
        read_emitters_h5(text)
    with pytest.raises(FormatError, match=r"nothing\.zarr: no zarr array '0'"):
        (tmp_path / "nothing.zarr").mkdir()
        open_stack(tmp_path / "nothing.zarr")
    with pytest.raises(FileNotFoundError):
        open_stack(tmp_path / "missing.ome.tiff")


def test_find_stack_prefers_the_folder_name_and_skips_ground_truth(tmp_path):
    folder = tmp_path / "sample_001"
    folder.mkdir()
    assert find_stack(folder) is None
    write_frames(folder / "emitters.h5", stack(), pixel_size_nm=100)  # an .h5 with frames: still the truth
    assert find_stack(folder) is None
    write_frames(folder / "zz.h5", stack(), pixel_size_nm=100)
    assert find_stack(folder) == folder / "zz.h5"
    write_frames(folder / "simulation_40.ome.tiff", stack(), pixel_size_nm=100)
    assert find_stack(folder) == folder / "simulation_40.ome.tiff"  # TIFF before a shared-suffix .h5
    write_frames(folder / "sample_001.ome.zarr", stack(), pixel_size_nm=100)
    assert find_stack(folder) == folder / "sample_001.ome.zarr"  # z2t's naming first


# --------------------------------------------------------------------------- a new format is one entry


def _npy_store(request) -> Path:
    with atomic_path(request.path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=request.frames.dtype, shape=request.frames.shape)
        t0 = 0
        for block in request.blocks():
            out[t0 : t0 + len(block)] = block
            t0 += len(block)
        out.flush()
        del out
    return request.path


def _npy_open(path):
    return da.from_array(np.load(path, mmap_mode="r"), chunks=(4, -1, -1))


def _npy_info(path):
    arr = np.load(path, mmap_mode="r")
    return StackInfo(format="npy-stack", shape=arr.shape, dtype=arr.dtype)


def _npy_blocks(path, block_frames):
    arr = np.load(path, mmap_mode="r")
    for t0 in range(0, arr.shape[0], block_frames):
        yield np.array(arr[t0 : t0 + block_frames])


NPY = StackFormat(
    name="npy-stack",
    suffix=".frames.npy",
    suffixes=(".frames.npy",),
    aliases=("npy",),
    compressions=("none",),
    default_compression="none",
    store=_npy_store,
    open=_npy_open,
    info=_npy_info,
    iter_blocks=_npy_blocks,
    probe=lambda p: Path(p).is_file(),
)


@pytest.fixture
def npy_format():
    register_format(NPY)
    yield NPY
    unregister_format("npy-stack")


def test_a_new_format_is_one_registry_entry(tmp_path, npy_format):
    s = z2t.simulate(small_config(output={"frames_in_h5": True}), seed=2)
    out = s.save(tmp_path / "n", format="npy")
    assert sorted(p.name for p in out.iterdir()) == ["emitters.h5", "n.frames.npy"]
    opened = open_sample(out)
    assert opened.format == "npy-stack" and np.array_equal(opened.frames.compute(), s.frames.compute())
    assert opened.attrs["seed"] == 2  # no provenance in .npy: the ground truth's attributes
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    # the frame copy into emitters.h5 reads the new format back through its block iterator
    assert np.array_equal(read_emitters_h5(out / "emitters.h5", load_frames=True).frames, s.frames.compute())
    unregister_format("npy")
    with pytest.raises(FormatError, match="unknown format 'npy'"):
        s.save(tmp_path / "m", format="npy")
    register_format(NPY)


@pytest.mark.cluster
def test_deferred_writes_run_on_a_distributed_worker(tmp_path):
    """compute=False under a Client: one worker thread performs each write, computing its own blocks."""
    distributed = pytest.importorskip("distributed")
    frames = stack()
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        delayed = [
            write_frames(tmp_path / get_format(fmt).filename("w"), frames, pixel_size_nm=PIXEL, compute=False)
            for fmt in FORMATS[:3]
        ]
        with distributed.get_task_stream(client) as ts:
            paths = dask.compute(*delayed)
        workers = set(client.scheduler_info()["workers"])
    writes = [t for t in ts.data if str(t["key"]).startswith("z2t-write-")]
    assert len(writes) == 3 and {t["worker"] for t in writes} <= workers  # each write was one worker task
    for path in paths:
        assert np.array_equal(open_frames(path).compute(), frames.compute()), path
