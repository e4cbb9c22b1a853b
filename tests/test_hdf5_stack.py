"""HDF5 stacks: round trips with every frame, tiles as HDF5 chunks, frames + ground truth in one file."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.errors import FormatError
from z2t_dask.io.emitters_h5 import read_emitters_h5
from z2t_dask.io.hdf5 import iter_hdf5_blocks, read_hdf5_stack, write_hdf5_stack

CFG = {
    "tiff": {"roi_width": 70, "roi_height": 60},
    "emitters": {"frames": 13, "num_emitters": 50},
    "psf": {"patch_size": 15},
    "render": {"chunk_frames": 4},
}


@pytest.mark.parametrize(("compression", "filter_name"), [(None, None), ("zlib", "gzip"), ("lzf", "lzf")])
def test_hdf5_stack_round_trip_every_frame(tmp_path, compression, filter_name):
    s = z2t.simulate({**CFG, "render": {"chunk_frames": 4, "tile_size": 32}}, seed=2)
    ref = s.frames.compute()
    out = s.save(tmp_path / "h", format="hdf5", compression=compression)
    assert sorted(p.name for p in out.iterdir()) == ["emitters.h5", "h.h5"]
    with h5py.File(out / "h.h5") as f:
        d = f["frames"]
        assert d.shape == (13, 60, 70) and d.dtype == np.uint16 and d.chunks == (1, 32, 32)
        assert d.compression == filter_name
        for t in range(13):  # every frame, in order
            assert np.array_equal(d[t], ref[t]), t
        assert d.attrs["units"] == "ADU" and d.attrs["axes"] == "TYX"
        o = s.config.optical
        assert np.allclose(d.attrs["element_size_um"], [1.0, o.pixel_size_nm_y / 1000, o.pixel_size_nm_x / 1000])
        assert f.attrs["seed"] == 2 and "config" in f.attrs
    assert np.array_equal(np.concatenate(list(iter_hdf5_blocks(out / "h.h5", 5))), ref)
    # untiled frames: one HDF5 chunk per frame (what the original's v2/v3 loaders read fastest)
    whole = z2t.simulate(CFG, seed=2).save(tmp_path / "w", format="hdf5")
    with h5py.File(whole / "w.h5") as f:
        assert f["frames"].chunks == (1, 60, 70) and np.array_equal(f["frames"][()], ref)


def test_hdf5_stack_failure_leaves_nothing_and_counts_are_checked(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    with pytest.raises(ValueError, match="yielded 3 frames but 4 were declared"):
        write_hdf5_stack(
            tmp_path / "a.h5", iter([data[:3]]), shape=data.shape, dtype=data.dtype, pixel_size_nm=(100, 100)
        )
    with pytest.raises(FormatError, match="compression"):
        write_hdf5_stack(
            tmp_path / "a.h5",
            iter([data]),
            shape=data.shape,
            dtype=data.dtype,
            pixel_size_nm=(100, 100),
            compression="zstd",
        )
    assert os.listdir(tmp_path) == []
    write_hdf5_stack(
        tmp_path / "a.h5",
        iter([data[:1], data[1], data[2:]]),
        shape=data.shape,
        dtype=np.uint16,
        pixel_size_nm=(100, 110),
        units="photons",
    )
    assert np.array_equal(read_hdf5_stack(tmp_path / "a.h5"), data)


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr", "hdf5"])
def test_frames_in_h5_end_to_end(tmp_path, fmt):
    # the original v2/v3 training loaders read emitters.h5 'frames' next to records/*
    s = z2t.simulate({**CFG, "output": {"frames_in_h5": True}}, seed=5)
    ref = s.frames.compute()
    out = s.save(tmp_path / "s", format=fmt)
    back = read_emitters_h5(out / "emitters.h5", load_frames=True)
    assert back.frames_shape == (13, 60, 70) and np.array_equal(back.frames, ref)
    assert back.units["frames"] == "ADU"
    with h5py.File(out / "emitters.h5") as f:
        assert f["frames"].chunks == (1, 60, 70)
        fix = f["records/frame_ix"][()]
    assert fix.max() < ref.shape[0]
