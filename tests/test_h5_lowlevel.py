"""The low-level HDF5 helpers of :mod:`z2t_dask.io.h5files` write the bytes h5py's high-level calls write."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from z2t_dask.io.h5files import create_plain_dataset, h5_writer, new_attrs, write_failure_check

ATTRS = {
    "text": "x = column, y = row; z in µm",
    "empty": "",
    "int": 7,
    "big": 2**62,
    "float": 1.5,
    "flag": True,
    "f32": np.float32(0.25),
    "u16": np.uint16(3),
    "raw": b"bytes",
    "array": np.arange(6, dtype=np.int32).reshape(2, 3),
    "bools": np.array([True, False]),
    "größe": "utf-8 name",
}
DATASETS = {
    "xyz": ((5, 3), np.float32),
    "id": ((5,), np.int64),
    "inside": ((5,), np.bool_),
    "none": ((0,), np.float32),
    "grid": ((2, 3, 4), np.uint16),
}


def _file_bytes(fill) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w", track_times=False) as f:
        fill(f)
    return buf.getvalue()


def _high(f: h5py.File) -> None:
    for key, value in ATTRS.items():
        f.attrs[key] = value
    g = f.create_group("g", track_times=False)
    for name, (shape, dtype) in DATASETS.items():
        ds = g.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
        ds[...] = np.ones(shape, dtype)
        ds.attrs["units"] = f"units of {name}"


def _low(f: h5py.File) -> None:
    new_attrs(f, ATTRS)
    g = f.create_group("g", track_times=False)
    for name, (shape, dtype) in DATASETS.items():
        ds = create_plain_dataset(g, name, shape, np.dtype(dtype))
        h5py.Dataset(ds)[...] = np.ones(shape, dtype)
        new_attrs(ds, {"units": f"units of {name}"})


def test_low_level_helpers_write_h5pys_bytes() -> None:
    high, low = _file_bytes(_high), _file_bytes(_low)
    assert len(high) > 2000
    assert low == high
    assert _file_bytes(_low) == high  # again, on the types and property lists made by the first file
    with h5py.File(io.BytesIO(low), "r") as f:
        assert f.attrs["text"] == ATTRS["text"] and f.attrs["größe"] == "utf-8 name"
        np.testing.assert_array_equal(f.attrs["array"], ATTRS["array"])
        assert f["g/inside"].dtype == np.bool_ and f["g/grid"].shape == (2, 3, 4)
        assert f["g/xyz"].attrs["units"] == "units of xyz"


def test_new_attrs_refuses_an_existing_name() -> None:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        new_attrs(f, {"a": 1})
        with pytest.raises(OSError):  # the HDF5 library's own error: never a silent replacement
            new_attrs(f, {"a": 2})
        assert f.attrs["a"] == 1


def test_write_failure_check_raises_the_sinks_error(tmp_path) -> None:
    with pytest.raises(OSError, match="disk full"):
        with h5_writer(tmp_path / "x.h5") as f:
            check = write_failure_check(f)
            check()  # nothing failed yet
            from z2t_dask.io import h5files

            sink = next(s for s in h5files._SINKS.values() if s._raw.name == str(tmp_path / "x.h5"))
            sink.error = OSError(28, "disk full")
            check()


def _write_table(path, n: int = 3000) -> None:
    with h5_writer(path) as f:
        new_attrs(f, {"note": "small file"})
        ds = create_plain_dataset(f, "x", (n, 3), np.dtype(np.float32))
        h5py.Dataset(ds)[...] = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
        new_attrs(ds, {"units": "px"})


@pytest.mark.parametrize("memory_bytes", [0, 4096, 1 << 20])
def test_sink_gives_the_same_bytes_in_memory_on_disk_and_spilled(tmp_path, monkeypatch, memory_bytes) -> None:
    from z2t_dask.io import h5files

    _write_table(tmp_path / "ref.h5")  # 36 KB: assembled in memory, written at once
    monkeypatch.setattr(h5files, "MEMORY_BYTES", memory_bytes)  # 0: every write to disk; 4096: spilled midway
    _write_table(tmp_path / "x.h5")
    assert (tmp_path / "x.h5").read_bytes() == (tmp_path / "ref.h5").read_bytes()
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert f["x"][-1, 2] == 8999.0 and f.attrs["note"] == "small file"


def test_a_failed_write_of_the_in_memory_file_is_raised(tmp_path, monkeypatch) -> None:
    import errno
    import os

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError) as info:
        _write_table(tmp_path / "x.h5")
    assert info.value.errno == errno.ENOSPC


def test_inline_strips_encoded_in_batches_equal_frame_by_frame_and_keep_error_order() -> None:
    """``encoded_strips`` inline: a batched zstd encoder gives each strip's own bytes, in order; a bad
    frame's error comes after the strips of the frames before it."""
    from z2t_dask.io.tiff_pages import INLINE_BATCH, FrameFeed, encoded_strips, strip_encoder

    rng = np.random.default_rng(3)
    movie = rng.normal(100.0, 10.0, (INLINE_BATCH + 9, 40, 40)).astype(np.float32)
    encode = strip_encoder("zstd", {"level": 1})
    single = [bytes(encode(f[r : r + 7])) for f in movie for r in range(0, 40, 7)]
    assert list(encoded_strips(iter(movie), encode, 7)) == single
    assert list(encoded_strips(iter(movie), lambda s: encode(s), 7)) == single  # no `many`: frame by frame

    frames = [*movie[:5], np.zeros((3, 3), np.float32)]
    got: list[bytes] = []
    with pytest.raises(ValueError, match="frame 5 has shape"):
        for strip in encoded_strips(FrameFeed(iter(frames), (6, 40, 40), np.dtype(np.float32)), encode, 40):
            got.append(strip)
    assert got == [bytes(encode(f)) for f in movie[:5]]


def test_zstd_strips_of_read_only_empty_and_strided_data_are_imagecodecs_bytes() -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    from z2t_dask.io.tiff_pages import strip_encoder

    encode = strip_encoder("zstd", {"level": 1})
    rng = np.random.default_rng(5)
    frame = rng.poisson(300.0, (40, 40)).astype(np.uint16)
    frozen = frame.copy()
    frozen.flags.writeable = False
    strips = [frame, frozen, frame[:, ::2], np.zeros((0, 40), np.uint16)]
    expected = [bytes(imagecodecs.zstd_encode(np.ascontiguousarray(s).tobytes(), level=1)) for s in strips]
    assert [bytes(encode(s)) for s in strips] == expected
    many = getattr(encode, "many", None)
    if many is not None:
        assert [bytes(b) for b in many(strips)] == expected
