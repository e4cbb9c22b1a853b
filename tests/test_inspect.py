"""``z2t inspect``: sample folder, batch folder (every job), Zmap, emitters.h5, JSON output, bad paths."""

from __future__ import annotations

import json

import pytest
from conftest import small_config
from distributed import Client, LocalCluster

import z2t_dask as z2t
from z2t_dask.tools.cli import main
from z2t_dask.tools.summary import InspectError, detect_kind, estimate_snr, format_summary, summarize


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "sample_007"
    z2t.simulate(small_config(), seed=7).save(out)
    return out


def test_sample_folder_summary(sample_dir):
    info = summarize(sample_dir)
    assert info["kind"] == "sample"
    assert (info["frames"], info["height"], info["width"], info["dtype"]) == (12, 20, 24, "uint16")
    assert info["seed"] == 7 and info["z2t_version"] == z2t.__version__ == info["package_version"]
    assert info["config"]["tiff"]["roi_width"] == 24
    tr = info["truth"]
    assert tr["emitters"] == 40 and tr["records"] == tr["records_inside"] + tr["records_edge"] > 0
    assert tr["emitters_per_frame"]["max"] >= tr["emitters_per_frame"]["median"] >= 0
    assert tr["photons_per_record"]["median"] > 0
    assert info["snr"]["snr"] > 1 and info["background_photons_per_px"] == 50.0
    assert info["stack"]["bytes"] > 0 and info["stack"]["pixels"]["median"] > 0
    names = {f["name"] for f in info["files"]}
    assert names == {"sample_007.ome.tiff", "emitters.h5"}
    text = format_summary(info)
    for word in (
        "12 frames of 20x24 px",
        "uint16",
        "emitters per frame",
        "photons per record",
        "estimated SNR",
        "seed: 7",
        "camera emccd",
    ):
        assert word in text


def test_cli_inspect_json_and_text(sample_dir, capsys):
    assert main(["inspect", str(sample_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in (
        "kind",
        "frames",
        "height",
        "width",
        "dtype",
        "truth",
        "snr",
        "files",
        "bytes",
        "config",
        "seed",
        "package_version",
        "stack",
    ):
        assert key in info
    assert main(["inspect", str(sample_dir / "emitters.h5")]) == 0
    assert "emitters" in capsys.readouterr().out
    assert main(["inspect", str(sample_dir / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.cluster
def test_batch_folder_reports_every_job(tmp_path, capsys):
    batch = {
        "base_output_dir": str(tmp_path / "b"),
        "seed": 1,
        "description": "two jobs",
        "base_config": small_config(),
        "variable_configs": {"num_emitters": [10, 30]},
    }
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        result = z2t.run_batch(batch, client, progress=False)
    assert result.exit_code == 0
    info = summarize(tmp_path / "b")
    assert info["kind"] == "batch" and info["jobs_total"] == 2 and info["states"] == {"done": 2}
    assert set(info["jobs"]) == set(result.jobs)
    for job in info["jobs"].values():
        assert job["state"] == "done" and job["folder_exists"] and job["bytes"] > 0 and job["attempts"] == 1
    assert main(["inspect", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "2 jobs: 2 done" in text and "two jobs" in text
    for name in result.jobs:
        assert name in text
    job_dir = tmp_path / "b" / next(iter(result.jobs))
    assert summarize(job_dir)["job"]["key"] == result.jobs[job_dir.name]["key"]


def test_zmap_and_original_files(original):
    info = summarize(original("result_phase_retrieval.h5"))
    assert info["kind"] == "zmap" and info["shape"] == [300, 300] and info["convention"] == "legacy21"
    assert info["beads"]["total"] == 6 and info["phase_rms_rad"]["max"] > 0
    em = summarize(original("emitters_40.h5"))
    assert em["kind"] == "emitters" and em["truth"]["emitters"] == 5000 and em["truth"]["records"] == 9721
    assert "no provenance" in em["note"]
    st = summarize(original("simulation_40.ome.tiff"))
    assert st["kind"] == "stack" and st["stack"]["shape"][1:] == [40, 40]
    assert "beads: 6" in format_summary(info)


def test_detect_kind_rejects_unknown(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InspectError):
        detect_kind(tmp_path / "x.txt")
    with pytest.raises(InspectError):
        detect_kind(tmp_path)
    with pytest.raises(FileNotFoundError):
        detect_kind(tmp_path / "missing")


def test_snr_estimate_follows_the_noise_model():
    cfg = z2t.load_config(None).to_dict()
    hi = estimate_snr(cfg, 5000.0)["snr"]
    lo = estimate_snr(cfg, 500.0)["snr"]
    assert hi > lo > 0
    cfg["camera"]["em_gain"] = 1.0  # no excess noise, but read noise counts fully
    cfg["camera"]["read_noise_e"] = 0.0
    assert estimate_snr(cfg, 5000.0)["snr"] > hi  # F^2 = 2 costs sqrt(2) at high signal
    cfg["camera"]["model"] = "none"
    assert estimate_snr(cfg, 5000.0)["snr"] is None
