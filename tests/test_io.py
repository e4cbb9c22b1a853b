"""I/O layer: atomic writes, streaming iterators, OME-TIFF, emitters.h5 and CSV."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile

from z2t_dask.engine.streaming import iter_frame_blocks, iter_frames
from z2t_dask.errors import FormatError
from z2t_dask.io.atomic import atomic_dir, atomic_path
from z2t_dask.io.csv import RECORDS_CSV_COLUMNS, write_records_csv
from z2t_dask.io.emitters_h5 import XYZ_UNITS, read_emitters_h5, write_emitters_h5
from z2t_dask.io.tiff import read_ome_tiff, read_ome_tiff_metadata, write_ome_tiff

FIXTURES = Path("/work/shared/fixtures/original")


def movie(dtype=np.uint16, shape=(9, 12, 20)) -> np.ndarray:
    g = np.random.default_rng(0)
    data = (g.random(shape) * 1000).astype(dtype)
    data[0] = 0  # empty frames must survive too
    data[4] = 0
    return data


def blocks_of(data: np.ndarray):
    """Uneven blocks, including a bare 2-D frame."""
    yield data[0:3]
    yield data[3]
    yield data[4:5]
    yield data[5:9]


# --------------------------------------------------------------------------- atomic


def test_atomic_path_moves_into_place_and_leaves_no_temp(tmp_path):
    final = tmp_path / "out.bin"
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.tmp-")
        tmp.write_bytes(b"abc")
        assert not final.exists()
    assert final.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_atomic_path_removes_temp_on_exception(tmp_path, kind):
    final = tmp_path / "out"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            if kind == "file":
                tmp.write_bytes(b"partial")
            else:
                tmp.mkdir()
                (tmp / "x").write_bytes(b"partial")
            raise RuntimeError("boom")
    assert final.read_bytes() == b"old"  # previous output untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_refuses_existing_unless_overwrite(tmp_path):
    final = tmp_path / "sample_001"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(final):
            pass
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["sample_001"]


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_iter_frame_blocks_in_order_and_equal_to_compute(prefetch):
    arr = da.random.default_rng(5).random((23, 16, 12), chunks=((5, 1, 7, 10), (8, 8), (12,)))
    blocks = list(iter_frame_blocks(arr, prefetch=prefetch))
    assert [b.shape[0] for b in blocks] == [5, 1, 7, 10]
    np.testing.assert_array_equal(np.concatenate(blocks), arr.compute())
    frames = list(iter_frames(arr, prefetch=prefetch))
    assert len(frames) == 23 and all(f.shape == (16, 12) for f in frames)
    np.testing.assert_array_equal(np.stack(frames), arr.compute())


@pytest.mark.parametrize("prefetch", [1, 3])
def test_iter_frame_blocks_computes_at_most_prefetch_blocks_ahead(prefetch):
    started: list[int] = []
    lock = threading.Lock()

    def record(block, block_info=None):
        with lock:
            started.append(block_info[0]["chunk-location"][0])
        return block

    base = da.zeros((40, 4, 4), chunks=(2, 4, 4))
    arr = base.map_blocks(record, dtype=base.dtype)
    for i, block in enumerate(iter_frame_blocks(arr, prefetch=prefetch)):
        with lock:
            assert len(started) <= i + 1 + prefetch
        assert block.shape == (2, 4, 4)
    assert sorted(started) == list(range(20))


@pytest.mark.cluster
def test_iter_frame_blocks_scheduler_none_uses_active_distributed_client():
    distributed = pytest.importorskip("distributed")
    arr = da.random.default_rng(4).random((12, 8, 8), chunks=(5, 8, 8))
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as tasks,
    ):
        blocks = list(iter_frame_blocks(arr, prefetch=2, scheduler=None))
    assert len(tasks.data) > 0  # the blocks ran on the cluster
    np.testing.assert_array_equal(np.concatenate(blocks), arr.compute())


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_iter_frame_blocks_post_runs_where_each_block_is_computed(prefetch):
    arr = da.random.default_rng(6).random((11, 6, 5), chunks=(3, 6, 5))
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def post(block):
        with lock:
            seen.append((threading.current_thread().name, block.shape[0]))
        return ("done", block.sum())

    out = list(iter_frame_blocks(arr, prefetch=prefetch, post=post))
    expected = [arr[i : i + 3].compute().sum() for i in range(0, 11, 3)]
    assert [tag for tag, _ in out] == ["done"] * 4
    np.testing.assert_allclose([v for _, v in out], expected, rtol=0, atol=0)
    threads = {name for name, _ in seen}
    if prefetch == 0:
        assert threads == {threading.current_thread().name}  # computed and post-processed in the caller
    else:
        assert all(name.startswith("z2t-prefetch") for name in threads)
    assert sorted(n for _, n in seen) == [2, 3, 3, 3]
    # a NumPy array is one block, post-processed in the caller
    assert list(iter_frame_blocks(np.ones((2, 3, 3)), prefetch=prefetch, post=lambda b: b.shape)) == [(2, 3, 3)]


def test_iter_frame_blocks_rejects_bad_prefetch():
    with pytest.raises(ValueError, match="prefetch"):
        iter_frame_blocks(da.zeros((4, 2, 2), chunks=2), prefetch=-1)


# --------------------------------------------------------------------------- OME-TIFF


@pytest.mark.parametrize(("compression", "tag"), [(None, 1), ("none", 1), ("zstd", 50000), ("zlib", 8)])
def test_ome_tiff_round_trip_from_block_iterator(tmp_path, compression, tag):
    data = movie()
    path = write_ome_tiff(
        tmp_path / "s.ome.tiff",
        blocks_of(data),
        shape=data.shape,
        dtype=data.dtype,
        pixel_size_nm=(101.11, 98.83),
        compression=compression,
    )
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 1
        series = tif.series[0]
        assert series.shape == data.shape and series.axes == "TYX" and series.dtype == np.uint16
        assert len(tif.pages) == data.shape[0]
        assert tif.pages[0].compression == tag and tif.pages[0].predictor == 1
        assert not tif.is_bigtiff
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        np.testing.assert_array_equal(series.asarray(), data)
    assert pixels["PhysicalSizeX"] == pytest.approx(0.10111)
    assert pixels["PhysicalSizeY"] == pytest.approx(0.09883)
    assert pixels["PhysicalSizeXUnit"] == "µm" and pixels["PhysicalSizeYUnit"] == "µm"
    assert pixels["SizeT"] == 9 and pixels["SizeY"] == 12 and pixels["SizeX"] == 20


def _tag_pixel_size_nm(page) -> tuple[float, float]:
    """(x, y) nm from a page's XResolution / YResolution (pixels per cm, ResolutionUnit 3)."""
    assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
    (xn, xd), (yn, yd) = page.tags["XResolution"].value, page.tags["YResolution"].value
    return 1e7 * xd / xn, 1e7 * yd / yn


def test_ome_tiff_resolution_tags_carry_the_pixel_size(tmp_path):
    """Readers that ignore the OME-XML (ImageJ's own TIFF reader, PIL, GDAL) get the pixel size from the tags."""
    data = movie()
    path = write_ome_tiff(
        tmp_path / "r.ome.tiff", blocks_of(data), shape=data.shape, dtype=data.dtype, pixel_size_nm=(101.11, 98.83)
    )
    with tifffile.TiffFile(path) as tif:
        sizes = {_tag_pixel_size_nm(page) for page in tif.pages}  # every page, not only the first
        np.testing.assert_array_equal(tif.series[0].asarray(), data)
    assert len(sizes) == 1
    (x_nm, y_nm) = sizes.pop()
    assert x_nm == pytest.approx(101.11, rel=1e-9) and y_nm == pytest.approx(98.83, rel=1e-9)  # anisotropic
    # what ImageJ shows: 1 / XResolution cm per pixel, in µm
    with tifffile.TiffFile(path) as tif:
        xres = tif.pages[0].tags["XResolution"].value
    assert 1e4 * xres[1] / xres[0] == pytest.approx(0.10111, rel=1e-9)


def test_saved_sample_tiff_tags_give_the_configured_pixel_size(tmp_path):
    import z2t_dask as z2t
    from z2t_dask.testing import tiny_config

    cfg = tiny_config(optical={"use_default_config": False, "pixel_size_nm_x": 117.0, "pixel_size_nm_y": 64.5})
    folder = z2t.simulate(cfg, seed=2).save(tmp_path / "sample_002")
    with tifffile.TiffFile(folder / "sample_002.ome.tiff") as tif:
        x_nm, y_nm = _tag_pixel_size_nm(tif.pages[0])
    assert (x_nm, y_nm) == pytest.approx((117.0, 64.5), rel=1e-9)


def test_ome_tiff_float_provenance_and_bigtiff_override(tmp_path):
    data = movie(np.float32)
    provenance = {"seed": np.int64(7), "config": {"roi": [40, 40]}, "note": "a < b & c"}
    path = write_ome_tiff(
        tmp_path / "f.ome.tiff",
        iter(data),
        shape=data.shape,
        dtype=np.float32,
        pixel_size_nm=100.0,
        description="test movie",
        metadata=provenance,
        bigtiff=True,
    )
    np.testing.assert_array_equal(read_ome_tiff(path), data)
    meta = read_ome_tiff_metadata(path)
    assert meta["bigtiff"] and meta["n_series"] == 1 and meta["shape"] == data.shape
    assert meta["pixel_size_nm"] == pytest.approx((100.0, 100.0))
    assert meta["description"] == "test movie"
    assert meta["provenance"] == {"seed": 7, "config": {"roi": [40, 40]}, "note": "a < b & c"}


def test_ome_tiff_rejects_lzw(tmp_path):
    data = movie(np.float32)
    with pytest.raises(FormatError, match="lzw"):  # a FormatError is a ValueError too
        write_ome_tiff(
            tmp_path / "x.ome.tiff",
            iter(data),
            shape=data.shape,
            dtype=np.float32,
            pixel_size_nm=100,
            compression="lzw",
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n_frames", [8, 10])
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_ome_tiff_frame_count_mismatch_raises_and_leaves_nothing(tmp_path, n_frames, compression):
    data = movie()
    frames = [data[i % 9] for i in range(n_frames)]
    with pytest.raises(ValueError, match="shape\\[0\\] = 9"):
        write_ome_tiff(
            tmp_path / "bad.ome.tiff",
            iter(frames),
            shape=data.shape,
            dtype=data.dtype,
            pixel_size_nm=100,
            compression=compression,
        )
    assert list(tmp_path.iterdir()) == []


def test_ome_tiff_from_dask_stream_and_original_fixture_metadata(tmp_path):
    arr = da.random.default_rng(1).integers(0, 500, (12, 16, 16), chunks=(5, 16, 16)).astype(np.uint16)
    path = write_ome_tiff(
        tmp_path / "d.ome.tiff", iter_frame_blocks(arr), shape=arr.shape, dtype=arr.dtype, pixel_size_nm=(100, 100)
    )
    np.testing.assert_array_equal(read_ome_tiff(path), arr.compute())
    meta = read_ome_tiff_metadata(FIXTURES / "simulation_40.ome.tiff")
    assert meta["shape"] == (200, 40, 40) and meta["pixel_size_nm"] == pytest.approx((101.11, 98.83))


# --------------------------------------------------------------------------- emitters.h5


def make_tables(n=50, m=120, t=10):
    g = np.random.default_rng(3)
    emitters = {
        "xyz": g.random((n, 3)) * 40,  # float64 in: must be cast
        "intensity": g.random(n) * 5000,
        "t0": g.random(n) * t,
        "on_time": g.random(n) * 3,
        "id": np.arange(n, dtype=np.int32),
    }
    ids = g.integers(0, n, m)
    records = {
        "xyz": emitters["xyz"][ids],
        "phot": g.random(m) * 3000,
        "frame_ix": g.integers(0, t, m).astype(np.int32),
        "id": ids,
        "inside": g.random(m) > 0.2,
    }
    zernike = {"phase": g.random((n, 21)), "mag": g.random((n, 21))}
    return emitters, records, zernike


def test_emitters_h5_round_trip_names_dtypes_attrs_units(tmp_path):
    emitters, records, zernike = make_tables()
    frames = da.random.default_rng(2).random((10, 8, 8), chunks=(4, 8, 8)).astype(np.float32)
    attrs = {"seed": 42, "config": {"roi": 40, "camera": {"model": "emccd"}}, "stages": ["a", "b"]}
    path = write_emitters_h5(
        tmp_path / "emitters.h5",
        emitters=emitters,
        records=records,
        zernike_coeffs=zernike,
        attrs=attrs,
        frames=frames,
        units={"frames": "photons"},
    )
    with h5py.File(path, "r") as f:
        dtypes = {
            name: f[name].dtype
            for name in (
                "emitters/xyz",
                "emitters/intensity",
                "emitters/t0",
                "emitters/on_time",
                "emitters/id",
                "records/xyz",
                "records/phot",
                "records/frame_ix",
                "records/id",
                "zernike_coeffs/phase",
                "zernike_coeffs/mag",
            )
        }
        assert f["frames"].chunks == (1, 8, 8) and f["frames"].shape == (10, 8, 8)
        assert isinstance(f.attrs["config"], str)  # dicts stored as JSON strings
    assert dtypes == {
        "emitters/xyz": np.float32,
        "emitters/intensity": np.float32,
        "emitters/t0": np.float32,
        "emitters/on_time": np.float32,
        "emitters/id": np.int64,
        "records/xyz": np.float32,
        "records/phot": np.float32,
        "records/frame_ix": np.int64,
        "records/id": np.int64,
        "zernike_coeffs/phase": np.float32,
        "zernike_coeffs/mag": np.float32,
    }
    back = read_emitters_h5(path, load_frames=True)
    assert set(back.emitters) == {"xyz", "intensity", "t0", "on_time", "id"}
    assert set(back.records) == {"xyz", "phot", "frame_ix", "id", "inside"}
    np.testing.assert_array_equal(back.emitters["xyz"], emitters["xyz"].astype(np.float32))
    np.testing.assert_array_equal(back.records["frame_ix"], records["frame_ix"])
    np.testing.assert_array_equal(back.records["inside"], records["inside"])
    assert back.records["inside"].dtype == bool
    np.testing.assert_array_equal(back.zernike_coeffs["mag"], zernike["mag"].astype(np.float32))
    assert back.attrs["seed"] == 42 and back.attrs["config"] == attrs["config"] and back.attrs["stages"] == ["a", "b"]
    assert "z2t_dask_version" in back.attrs
    assert back.units["records/xyz"] == XYZ_UNITS and back.units["emitters/xyz"] == XYZ_UNITS
    assert back.units["frames"] == "photons" and back.units["records/frame_ix"].startswith("frame index")
    np.testing.assert_array_equal(back.frames, frames.compute())
    assert back.frames_shape == (10, 8, 8)


def test_emitters_h5_validation_names_the_dataset(tmp_path):
    emitters, records, zernike = make_tables()
    cases = [
        ({**emitters, "xyz": emitters["xyz"][:, :2]}, records, "emitters/xyz"),
        (emitters, {k: v for k, v in records.items() if k != "phot"}, "records/phot"),
        (emitters, {**records, "id": records["id"] + 50}, "records/id"),
        (emitters, {**records, "frame_ix": records["frame_ix"].astype(float)}, "records/frame_ix"),
        (emitters, {**records, "phot": records["phot"][:-1]}, "records/phot"),
    ]
    for em, rec, name in cases:
        with pytest.raises(ValueError, match=name):
            write_emitters_h5(tmp_path / "e.h5", emitters=em, records=rec, zernike_coeffs=zernike)
    with pytest.raises(ValueError, match="zernike_coeffs/mag"):
        write_emitters_h5(
            tmp_path / "e.h5",
            emitters=emitters,
            records=records,
            zernike_coeffs={"phase": zernike["phase"], "mag": zernike["mag"][:10]},
        )
    with pytest.raises(ValueError, match="records/frame_ix"):  # frame index beyond the frames written
        write_emitters_h5(
            tmp_path / "e.h5",
            emitters=emitters,
            records=records,
            zernike_coeffs=None,
            frames=np.zeros((3, 4, 4), np.float32),
        )
    assert list(tmp_path.iterdir()) == []


def test_emitters_h5_frames_from_shape_and_block_iterator(tmp_path):
    emitters, records, _ = make_tables()
    frames = movie(np.uint16, (10, 6, 7))
    path = write_emitters_h5(
        tmp_path / "a.h5",
        emitters=emitters,
        records=records,
        zernike_coeffs=None,
        frames=(frames.shape, iter([frames[:4], frames[4], frames[5:]])),
    )
    back = read_emitters_h5(path, load_frames=True)
    np.testing.assert_array_equal(back.frames, frames)
    assert back.zernike_coeffs == {}
    for wrong in (frames[:9], np.concatenate([frames, frames[:1]])):  # one frame short / one too many
        with pytest.raises(ValueError, match="declared"):
            write_emitters_h5(
                tmp_path / "b.h5",
                emitters=emitters,
                records=records,
                zernike_coeffs=None,
                frames=(frames.shape, iter(wrong)),
            )
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_read_emitters_h5_missing_dataset_names_file_and_dataset(tmp_path):
    path = tmp_path / "broken.h5"
    emitters, records, _ = make_tables()
    with h5py.File(path, "w") as f:
        for key, value in emitters.items():
            f[f"emitters/{key}"] = value
        f["records/xyz"] = records["xyz"]
    with pytest.raises(ValueError, match=r"broken\.h5.*records/phot"):
        read_emitters_h5(path)


def test_read_original_fixture():
    data = read_emitters_h5(FIXTURES / "emitters_40.h5")
    assert data.emitters["xyz"].shape == (5000, 3) and data.emitters["xyz"].dtype == np.float32
    assert data.emitters["id"].dtype == np.int64
    assert data.records["xyz"].shape == (9721, 3) and data.records["phot"].shape == (9721,)
    assert data.records["frame_ix"].dtype == np.int64
    assert data.records["frame_ix"].min() >= 0 and data.records["frame_ix"].max() < 200
    assert data.zernike_coeffs["phase"].shape == (5000, 21) and data.zernike_coeffs["mag"].dtype == np.float32
    assert data.attrs == {} and data.units == {}


# --------------------------------------------------------------------------- CSV


def test_records_csv_header_and_values(tmp_path):
    _, records, _ = make_tables()
    path = write_records_csv(tmp_path / "gt.csv", records)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RECORDS_CSV_COLUMNS
    body = rows[1:]
    assert len(body) == 120
    np.testing.assert_array_equal([int(r[0]) for r in body], records["frame_ix"])
    np.testing.assert_array_equal([int(r[1]) for r in body], records["id"])
    xyz = np.array([[float(v) for v in r[2:5]] for r in body], dtype=np.float32)
    np.testing.assert_array_equal(xyz, records["xyz"].astype(np.float32))  # exact float32 round trip
    np.testing.assert_array_equal([r[6] == "1" for r in body], records["inside"])
    assert [p.name for p in tmp_path.iterdir()] == ["gt.csv"]
