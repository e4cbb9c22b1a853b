"""Multi-channel outputs: (T, C, Y, X) OME-TIFF / OME-Zarr / HDF5 with channel names, the split-view chip,
emitters.h5 per-channel truth and channel table, CSV per-channel columns; read back by z2t and tifffile."""

from __future__ import annotations

import copy
import csv
import json
import re

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.io.emitters_h5 import read_emitters_h5

CHANNELS = [
    {"name": "green", "wavelength_nm": 525.0},
    {"name": "red", "wavelength_nm": 680.0, "efficiency": 0.8, "transform": {"shift_px": [1.5, -0.5]}},
]
SPECIES = [
    {"name": "A", "fraction": 0.5, "ratio": [0.3, 0.7], "ratio_spread": 0.1},
    {"name": "B", "fraction": 0.5, "ratio": [0.6, 0.4], "ratio_spread": 0.05},
]


def doc(**top) -> dict:
    d = small_config(emitters={"frames": 6})
    d["channels"] = copy.deepcopy(CHANNELS)
    d["emitters"]["species"] = copy.deepcopy(SPECIES)
    d.update(top)
    return d


@pytest.fixture(scope="module")
def sample():
    return z2t.simulate(doc(), seed=2)


@pytest.fixture(scope="module")
def frames(sample):
    return sample.frames.compute()


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr", "hdf5"])
def test_stack_round_trip_with_c_axis(sample, frames, fmt, tmp_path):
    folder = sample.save(tmp_path / "s", format=fmt)
    opened = z2t.open_sample(folder)
    assert opened.frames.shape == (6, 2, 20, 24)
    assert np.array_equal(opened.frames.compute(), frames)
    names = opened.attrs["channel_names"]
    assert (json.loads(names) if isinstance(names, str) else names) == ["green", "red"]


def test_ome_tiff_declares_channels(sample, tmp_path):
    import tifffile

    folder = sample.save(tmp_path / "s", format="ome-tiff")
    with tifffile.TiffFile(folder / "s.ome.tiff") as tif:
        series = tif.series[0]
        assert series.axes == "TCYX" and series.shape == (6, 2, 20, 24)
        xml = tif.ome_metadata
        assert np.array_equal(series.asarray(), sample.frames.compute())
    channels = re.findall(r"<Channel [^>]*>", xml)
    assert len(channels) == 2
    assert 'Name="green"' in channels[0] and 'EmissionWavelength="525.0"' in channels[0]
    assert 'Name="red"' in channels[1] and 'EmissionWavelength="680.0"' in channels[1]
    assert 'EmissionWavelengthUnit="nm"' in channels[1]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_axes_and_omero(sample, zarr_format, tmp_path):
    import zarr

    from z2t_dask.io.ngff import validate_ngff

    s = z2t.simulate(doc(output={"zarr_format": zarr_format}), seed=2)
    folder = s.save(tmp_path / "s", format="ome-zarr")
    store = folder / "s.ome.zarr"
    validate_ngff(store)
    attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    holder = attrs["ome"] if zarr_format == 3 else attrs
    ms = holder["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "y", "x"] and ms["axes"][1]["type"] == "channel"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][:2] == [1.0, 1.0]
    omero = holder["omero"]["channels"]
    assert [c["label"] for c in omero] == ["green", "red"] and omero[1]["color"] == "FF0000"
    arr = zarr.open_array(str(store / "0"), mode="r")
    assert arr.shape == (6, 2, 20, 24) and arr.chunks[1] == 1


def test_hdf5_stack_is_tcyx_with_names(sample, tmp_path):
    import h5py

    folder = sample.save(tmp_path / "s", format="hdf5")
    with h5py.File(folder / "s.h5", "r") as f:
        d = f["frames"]
        assert d.shape == (6, 2, 20, 24) and d.attrs["axes"] == "TCYX"
        assert json.loads(d.attrs["channel_names"]) == ["green", "red"]
        assert d.chunks == (1, 1, 20, 24)


def test_emitters_h5_per_channel_truth_and_channel_table(sample, tmp_path):
    folder = sample.save(tmp_path / "s")
    f = read_emitters_h5(folder / "emitters.h5")
    e, r = sample.emitters, sample.records
    assert np.array_equal(f.emitters["species"], e["species"]) and np.array_equal(f.emitters["ratio"], e["ratio"])
    for key in ("phot_ch", "xy_ch", "inside_ch"):
        assert np.array_equal(f.records[key], r[key]), key
    assert f.records["xy_ch"].shape == (len(r), 2, 2)
    table = f.attrs["channels"]
    assert [c["name"] for c in table] == ["green", "red"] and table[1]["wavelength_nm"] == 680.0
    assert np.allclose(table[1]["affine"], [[1, 0, 1.5], [0, 1, -0.5]])
    assert [s["name"] for s in f.attrs["species"]] == ["A", "B"]
    assert "photons" in f.units["records/phot_ch"]
    # read back as a sample: the truth keeps the channel columns
    back = z2t.open_sample(folder)
    assert np.array_equal(back.records["phot_ch"], r["phot_ch"])


def test_single_channel_outputs_unchanged(tmp_path):
    s = z2t.simulate(small_config(emitters={"frames": 4}), seed=1)
    folder = s.save(tmp_path / "one")
    f = read_emitters_h5(folder / "emitters.h5")
    assert not {"species", "ratio"} & set(f.emitters) and not {"phot_ch", "xy_ch"} & set(f.records)
    assert "channels" not in f.attrs
    assert z2t.open_sample(folder).frames.shape == (4, 20, 24)


def test_csv_per_channel_columns(tmp_path):
    s = z2t.simulate(doc(output={"write_csv": True}), seed=2)
    folder = s.save(tmp_path / "s")
    with open(folder / "ground_truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    r = s.records
    assert len(rows) == len(r)
    for name, c in (("green", 0), ("red", 1)):
        got = np.array([float(row[f"photons_{name}"]) for row in rows], np.float32)
        assert np.array_equal(got, r["phot_ch"][:, c])
        assert np.array_equal(np.array([float(row[f"x_px_{name}"]) for row in rows], np.float32), r["xy_ch"][:, c, 0])
        assert np.array_equal(np.array([float(row[f"inside_{name}"]) for row in rows]) == 1.0, r["inside_ch"][:, c])


def test_split_view_writes_one_chip_side_by_side(tmp_path):
    d = doc(channels_layout="split-view")
    d["camera"] = {"chip_width": 300, "chip_height": 300}
    s = z2t.simulate(d, seed=2)
    assert s.config.channels[1].crop_offset == [124, 50]  # beside channel 0 on the chip
    frames = s.frames.compute()
    folder = s.save(tmp_path / "sv")
    import tifffile

    chip = tifffile.imread(folder / "sv.ome.tiff")
    assert chip.shape == (6, 20, 48)
    assert np.array_equal(chip[:, :, :24], frames[:, 0]) and np.array_equal(chip[:, :, 24:], frames[:, 1])
    back = z2t.open_sample(folder)
    assert back.frames.shape == (6, 2, 20, 24) and np.array_equal(back.frames.compute(), frames)


def test_split_view_with_a_gap_and_rows(tmp_path):
    d = doc(channels_layout="split-view")
    d["channels"][0]["crop_offset"] = [0, 0]
    d["channels"][1]["crop_offset"] = [30, 25]
    s = z2t.simulate(d, seed=2)
    frames = s.frames.compute()
    folder = s.save(tmp_path / "sv", format="hdf5")
    import h5py

    with h5py.File(folder / "sv.h5", "r") as f:
        chip = f["frames"][()]
    assert chip.shape == (6, 45, 54)
    assert np.array_equal(chip[:, 25:, 30:], frames[:, 1]) and np.all(chip[:, 20:25, :] == 0)
    assert np.array_equal(z2t.open_sample(folder).frames.compute(), frames)


# ---- other readers (installed by the test extra when available; skipped otherwise) ------------------


def test_ome_zarr_py_reads_two_channels_with_names(sample, frames, tmp_path):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    folder = sample.save(tmp_path / "s", format="ome-zarr")
    image = list(Reader(parse_url(str(folder / "s.ome.zarr")))())[0]
    assert [a["name"] for a in image.metadata["axes"]] == ["t", "c", "y", "x"]
    assert image.metadata["channel_names"] == ["green", "red"]
    assert np.array_equal(np.asarray(image.data[0]), frames)


@pytest.mark.parametrize("fmt, name", [("ome-tiff", "s.ome.tiff"), ("ome-zarr", "s.ome.zarr")])
def test_bioio_reads_two_channels_with_names(sample, frames, fmt, name, tmp_path):
    pytest.importorskip("bioio")
    pytest.importorskip("bioio_ome_tiff" if fmt == "ome-tiff" else "bioio_ome_zarr")
    from bioio import BioImage

    folder = sample.save(tmp_path / "s", format=fmt)
    image = BioImage(folder / name)
    assert (image.dims.T, image.dims.C, image.dims.Y, image.dims.X) == (6, 2, 20, 24)
    assert [str(c) for c in image.channel_names] == ["green", "red"]
    assert np.array_equal(np.asarray(image.data)[:, :, 0], frames)


@pytest.mark.parametrize("layout, fmt", [("stack", "ome-tiff"), ("split-view", "hdf5")])
def test_frames_in_emitters_h5_are_the_stack(layout, fmt, tmp_path):
    import h5py

    d = doc(channels_layout=layout, output={"frames_in_h5": True})
    folder = z2t.simulate(d, seed=1).save(tmp_path / "s", format=fmt)
    stack = z2t.open_sample(folder)
    with h5py.File(folder / "emitters.h5", "r") as f:
        stored = f["frames"][()]
    expected = (6, 2, 20, 24) if layout == "stack" else (6, 20, 48)
    assert stored.shape == expected
    if layout == "stack":
        assert np.array_equal(stored, stack.frames.compute())
    else:
        assert np.array_equal(stored[:, :, :24], stack.frames[:, 0].compute())
