"""Multi-channel samples through the tools: z2t simulate / render (same bytes from the emitters.h5), inspect
(photons per channel, ratio per species), preview (channels side by side), render-from-file with stored ratios."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.tools.cli import main

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
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "two.json"
    cfg.write_text(json.dumps(doc()))
    assert main(["simulate", "--config", str(cfg), "--output-dir", str(root / "out"), "--seed", "2"]) == 0
    return root / "out" / "sample_002"


def test_cli_simulate_then_render_gives_the_same_bytes(folder, tmp_path):
    import tifffile

    out = tmp_path / "again.ome.tiff"
    assert main(["render", "--h5", str(folder / "emitters.h5"), "--output", str(out), "--seed", "2"]) == 0
    first = tifffile.imread(folder / "sample_002.ome.tiff")
    assert first.shape == (6, 2, 20, 24) and np.array_equal(tifffile.imread(out), first)


def test_render_from_file_uses_the_stored_ratios(folder, tmp_path):
    """An edited emitters/ratio is what the channels render (not a redraw from the seed)."""
    import h5py

    edited = tmp_path / "emitters.h5"
    edited.write_bytes((folder / "emitters.h5").read_bytes())
    with h5py.File(edited, "r+") as f:
        n = f["emitters/ratio"].shape[0]
        f["emitters/ratio"][...] = np.tile(np.float32([1.0, 0.0]), (n, 1))
    s = z2t.load_sample_h5(edited, seed=2)
    assert np.all(s.emitters["ratio"][:, 0] == 1.0) and np.all(s.records["phot_ch"][:, 1] == 0.0)
    assert np.array_equal(s.records["phot_ch"][:, 0], s.records.phot)


def test_inspect_reports_channels_and_species(folder, capsys):
    assert main(["inspect", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "2 channels x 20x24 px" in text
    assert "channel green, 525 nm: photons per record" in text and "channel red, 680 nm" in text
    assert "species A:" in text and "species B:" in text
    assert main(["inspect", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    ch = info["truth"]["channels"]
    assert [c["name"] for c in ch] == ["green", "red"]
    sp = {s["name"]: s for s in info["truth"]["species"]}
    assert abs(sp["A"]["ratio_mean"][0] - 0.3) < 0.1 and abs(sp["B"]["ratio_mean"][0] - 0.6) < 0.1


def test_preview_shows_channels_side_by_side(folder, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    assert main(["preview", str(folder), "-o", str(out)]) == 0
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[1] > img.shape[0] * 0.4 and img.shape[0] > 400  # 3 frame rows + histograms, 2 columns
    s = z2t.simulate(doc(), seed=2)
    assert s.preview(tmp_path / "q.png").is_file()


# ---- batch: grid variables address a channel or species by name ------------------------------------


def batch_doc(out) -> dict:
    return {
        "base_output_dir": str(out),
        "seed": 1,
        "base_config": doc(),
        "variables": {"channels.red.transform.shift_px": [[0, 0], [3, 1]], "emitters.species.A.ratio": [[0.2, 0.8]]},
    }


def test_batch_grid_varies_channel_and_species_keys_by_name(tmp_path):
    from z2t_dask.batch.spec import expand_jobs, load_batch_config
    from z2t_dask.errors import BatchConfigError

    jobs = expand_jobs(load_batch_config(batch_doc(tmp_path)))
    assert [j.config["channels"][1]["transform"]["shift_px"] for j in jobs] == [[0, 0], [3, 1]]
    assert all(j.config["emitters"]["species"][0]["ratio"] == [0.2, 0.8] for j in jobs)
    assert all(j.config["channels"][0]["transform"]["shift_px"] == [0, 0] for j in jobs)  # the other untouched
    bad = batch_doc(tmp_path)
    bad["variables"] = {"channels.blue.efficiency": [0.5]}
    with pytest.raises(BatchConfigError) as err:
        expand_jobs(load_batch_config(bad))
    assert "channels.blue.efficiency" in str(err.value) and "green, red" in str(err.value)


@pytest.mark.cluster
@pytest.mark.slow
def test_batch_runs_two_colour_jobs(tmp_path):
    from distributed import Client, LocalCluster

    from z2t_dask.batch import run_batch

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        res = run_batch(batch_doc(tmp_path / "out"), client, progress=False)
    assert res.exit_code == 0, res.summary()
    folders = sorted(p.parent for p in (tmp_path / "out").rglob("emitters.h5"))
    assert len(folders) == 2
    xy = []
    for f in folders:
        s = z2t.open_sample(f)
        assert s.frames.shape == (6, 2, 20, 24)
        xy.append(s.records["xy_ch"][:, 1] - s.records["xyz"][:, :2])
    assert sorted(np.round(np.median(d, axis=0), 3).tolist() for d in xy) == [[0.0, 0.0], [3.0, 1.0]]


def test_napari_layers_name_channels_and_place_truth_per_channel(folder):
    from z2t_dask.tools.napari_reader import napari_get_reader

    layers = napari_get_reader(str(folder))(str(folder))
    names = [kw["name"] for _, kw, _ in layers]
    assert names[:2] == ["sample_002 [green]", "sample_002 [red]"]
    assert "sample_002 truth [red]" in names and "sample_002 truth [red] (edge)" in names
    s = z2t.open_sample(folder)
    red = next(data for data, kw, kind in layers if kw["name"] == "sample_002 truth [red]")
    inside = s.records["inside_ch"][:, 1]
    xy = s.records["xy_ch"][inside, 1].astype(np.float64)
    assert np.allclose(red[:, 1:], xy[:, ::-1])  # (t, y, x) at the records' positions in the red channel


def test_budget_counts_every_channel():
    import dataclasses

    from z2t_dask.engine.budget import estimate_resources

    two = z2t.load_config(doc())
    one = dataclasses.replace(two, channels=[])
    assert estimate_resources(two)["stack_bytes"] == 2 * estimate_resources(one)["stack_bytes"]
