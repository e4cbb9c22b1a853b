"""One sample end to end: files, original layout, atomicity, the original's emitters.h5, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.tools.cli import main

ORIGINAL_DATASETS = {
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


def test_save_writes_original_sample_folder(tmp_path):
    s = z2t.simulate(small_config(), seed=7)
    out = s.save(tmp_path / "sample_007")
    assert sorted(p.name for p in out.iterdir()) == ["emitters.h5", "sample_007.ome.tiff"]
    with tifffile.TiffFile(out / "sample_007.ome.tiff") as tf:
        assert len(tf.series) == 1 and tf.series[0].shape == (12, 20, 24) and len(tf.pages) == 12
        stack = tf.asarray()
    assert np.array_equal(stack, s.frames.compute())
    with h5py.File(out / "emitters.h5") as f:
        for name, dt in ORIGINAL_DATASETS.items():
            assert f[name].dtype == dt, name
        assert f["emitters/xyz"].shape == (40, 3)
        assert f["zernike_coeffs/phase"].shape == (40, 21)
        assert f["records/frame_ix"].shape == f["records/phot"].shape
        np.testing.assert_array_equal(f["records/frame_ix"][()], s.records.frame_ix)
        assert f.attrs["seed"] == 7
        cfg = json.loads(f.attrs["config"])
        assert cfg["tiff"]["roi_width"] == 24
        assert "Noll" in json.loads(f.attrs["conventions"])["zernike"]
        assert "z2t_version" in f.attrs
    # the saved config reproduces the same bytes
    again = z2t.simulate(cfg, seed=7).frames.compute()
    assert np.array_equal(again, stack)


def test_save_refuses_existing_and_failure_leaves_nothing(tmp_path):
    s = z2t.simulate(small_config(), seed=1)
    s.save(tmp_path / "a")
    with pytest.raises(FileExistsError):
        s.save(tmp_path / "a")
    # a block that fails mid-write: no folder, no temp left behind
    bad = z2t.simulate(small_config(), seed=1, chunk_frames=4)

    def boom(block):
        raise RuntimeError("worker died")

    bad.frames = bad.frames.map_blocks(
        lambda b, block_info=None: b if block_info[0]["chunk-location"][0] < 2 else boom(b), dtype=bad.frames.dtype
    )
    with pytest.raises(RuntimeError, match="worker died"):
        bad.save(tmp_path / "b")
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_render_original_emitters_h5(original):
    cfg = z2t.load_config(original("batch_config_100samples_40.json"))
    # its legacy coefficients are read through the legacy21 convention (invalid modes are ~0 there)
    s = z2t.load_sample_h5(original("emitters_40.h5"), cfg, seed=0)
    assert s.zmap_info["source_convention"] == "legacy21"
    assert s.frames.shape == (200, 40, 40) and s.frames.dtype == np.float32
    with h5py.File(original("emitters_40.h5")) as f:
        n_rec = f["records/id"].shape[0]
        counts = np.bincount(f["records/frame_ix"][()], minlength=200)
    assert len(s.records) == n_rec
    frames = s.frames[:20].compute()
    # the original float model: background 100 photons, read noise 58.8 -> mean ~ 100 + signal, clipped at 0
    assert frames.min() >= 0
    signal = frames.mean(axis=(1, 2)) - 100
    assert np.corrcoef(signal, counts[:20])[0, 1] > 0.5  # brighter frames where more records are on
    lazy = z2t.render_emitters(original("emitters_40.h5"), cfg)
    assert lazy.shape == (200, 40, 40)


def test_zmap_crop_offset_uses_the_right_window(original, tmp_path):
    # the same emitters rendered at two crop offsets of the original Zmap see different aberrations
    base = small_config(camera={"model": "none"})
    a = z2t.simulate(
        {
            **base,
            "zmap_path": str(original("result_phase_retrieval.h5")),
            "tiff": {"roi_width": 24, "roi_height": 20, "crop_offset": [0, 0]},
        },
        seed=3,
    )
    b = z2t.simulate(
        {
            **base,
            "zmap_path": str(original("result_phase_retrieval.h5")),
            "tiff": {"roi_width": 24, "roi_height": 20, "crop_offset": [200, 120]},
        },
        seed=3,
    )
    assert np.array_equal(a.emitters.xyz, b.emitters.xyz)
    assert not np.allclose(a.zernike_phase, b.zernike_phase)
    zm = z2t.read_zmap(original("result_phase_retrieval.h5"))
    x, y = a.emitters.xyz[:3, 0] + 200, a.emitters.xyz[:3, 1] + 120
    expect, _ = zm.coefficients(x, y)
    assert np.allclose(b.zernike_phase[:3], expect)


def test_missing_zmap_is_a_clear_error(original):
    cfg = z2t.load_config(original("batch_config_100samples_40.json"))
    with pytest.raises(z2t.ZmapError, match="not found.*result.h5"):
        z2t.simulate(cfg, seed=1)


def test_cli_simulate_default_and_bad_config(tmp_path, capsys):
    rc = main(["simulate", "--output-dir", str(tmp_path / "out"), "--seed", "3", "--frames", "20"])
    assert rc == 0
    folder = tmp_path / "out" / "sample_003"
    with tifffile.TiffFile(folder / "sample_003.ome.tiff") as tf:
        assert tf.series[0].shape == (20, 64, 64) and tf.series[0].axes == "TYX"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"emitters": {"num_emiters": 3}}))
    rc = main(["simulate", "--config", str(bad), "--output-dir", str(tmp_path / "out2")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "emitters.num_emiters" in err and "num_emitters" in err
    assert not (tmp_path / "out2").exists()


def test_cli_render_streaming_equals_in_memory(tmp_path, original):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"tiff": {"roi_size": 40}, "emitters": {"frames": 200}, "camera": {"model": "emccd"}}))
    a, b = tmp_path / "a.ome.tiff", tmp_path / "b.ome.tiff"
    assert (
        main(
            [
                "render",
                "--h5",
                str(original("emitters_40.h5")),
                "--output",
                str(a),
                "--config",
                str(cfgp),
                "--chunk-size",
                "7",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "render",
                "--h5",
                str(original("emitters_40.h5")),
                "--output",
                str(b),
                "--config",
                str(cfgp),
                "--no-streaming",
            ]
        )
        == 0
    )
    ta, tb = tifffile.imread(a), tifffile.imread(b)
    assert ta.shape == (200, 40, 40) and np.array_equal(ta, tb)
    assert main(["render", "--h5", str(tmp_path / "none.h5"), "--output", str(tmp_path / "x.ome.tiff")]) == 2


def test_console_script_runs(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "z2t")
    r = subprocess.run(
        [exe, "simulate", "--output-dir", str(tmp_path), "--frames", "5"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sample_000" / "emitters.h5").exists()


def test_original_emitters_render_consistent_with_the_original_tiff(original):
    # the same records through our physics (noise-free) vs the original's noisy float TIFF:
    # per-frame collected photons must agree (background 100 photons/px in the original); the original's
    # PSF is a scalar pupil model, so ours is the scalar one here (the vectorial PSF spreads ~5 % more
    # light beyond the patches of these edge-heavy 40x40 frames)
    cfg = z2t.load_config(
        original("batch_config_100samples_40.json"),
        overrides={"camera": {"model": "none"}, "background": {"photons": 0.0}, "psf": {"vectorial": False}},
    )
    ours = z2t.render_emitters(original("emitters_40.h5"), cfg).compute().sum(axis=(1, 2))
    theirs = tifffile.imread(original("simulation_40.ome.tiff")).astype(np.float64).sum(axis=(1, 2)) - 100 * 40 * 40
    assert np.corrcoef(ours, theirs)[0, 1] > 0.98
    assert theirs.mean() / ours.mean() == pytest.approx(1.0, abs=0.03)


def test_cli_formats_simulate_and_render(tmp_path, capsys, original):
    import h5py
    import zarr

    rc = main(
        [
            "simulate",
            "--output-dir",
            str(tmp_path),
            "--seed",
            "2",
            "--frames",
            "6",
            "--format",
            "ome-zarr",
            "--tile-size",
            "32",
        ]
    )
    assert rc == 0
    folder = tmp_path / "sample_002"
    assert sorted(p.name for p in folder.iterdir()) == ["emitters.h5", "sample_002.ome.zarr"]
    arr = zarr.open_array(store=str(folder / "sample_002.ome.zarr" / "0"), mode="r")
    assert arr.shape == (6, 64, 64) and arr.chunks[1:] == (32, 32)
    assert "sample_002.ome.zarr" in capsys.readouterr().out
    # a compression the format lacks is a bad input naming the option
    rc = main(
        [
            "simulate",
            "--output-dir",
            str(tmp_path),
            "--seed",
            "3",
            "--frames",
            "4",
            "--format",
            "hdf5",
            "--compression",
            "zstd",
        ]
    )
    assert rc == 2 and "--compression" in capsys.readouterr().err and not (tmp_path / "sample_003").exists()
    # the config key names the format of batch and simulate outputs
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"tiff": {"roi_size": 40}, "emitters": {"frames": 200}, "output": {"format": "hdf5"}}))
    assert main(["simulate", "--config", str(cfgp), "--output-dir", str(tmp_path), "--name", "h", "--frames", "5"]) == 0
    with h5py.File(tmp_path / "h" / "h.h5") as f:
        assert f["frames"].shape == (5, 40, 40)
    # render: the format follows the output suffix unless --format is given
    for name, fmt in (("r.h5", None), ("r.ome.zarr", None), ("r2.h5", "ome-tiff")):
        args = [
            "render",
            "--h5",
            str(original("emitters_40.h5")),
            "--output",
            str(tmp_path / name),
            "--config",
            str(cfgp),
        ] + (["--format", fmt] if fmt else [])
        assert main(args) == 0, name
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["frames"].shape == (200, 40, 40)
    assert zarr.open_array(store=str(tmp_path / "r.ome.zarr" / "0"), mode="r").shape == (200, 40, 40)
    assert tifffile.imread(tmp_path / "r2.h5").shape == (200, 40, 40)


def test_output_format_keys_are_validated():
    with pytest.raises(z2t.ConfigError, match=r"output.format: expected one of"):
        z2t.load_config({"output": {"format": "png"}})
    with pytest.raises(z2t.ConfigError, match=r"output.zarr_format"):
        z2t.load_config({"output": {"zarr_format": 4}})
    with pytest.raises(z2t.ConfigError, match=r"output.hdf5_compression"):
        z2t.load_config({"output": {"hdf5_compression": "zstd"}})
    with pytest.raises(ValueError, match="format: unknown format 'png'"):
        z2t.simulate(small_config(), seed=0).save("never", format="png")
