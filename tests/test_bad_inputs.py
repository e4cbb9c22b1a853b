"""Bad inputs are refused with exit 2 and a message naming the key or file; nothing is written (issue 15).

Zmaps (all-NaN, too small, ROI off the chip), emitters.h5 files (not HDF5, truncated, missing or
bad datasets), the config an emitters.h5 stores, sCMOS maps of the wrong shape, bad option values,
YAML syntax errors, and sizes that cannot fit (refused up front with the figure).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.engine.budget import check_resources, estimate_resources
from z2t_dask.errors import ConfigError, FormatError, ZmapError
from z2t_dask.tools.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GiB = 2**30


def _listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temporaries included), relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _write_zmap(path: Path, maps: np.ndarray, coords=None, mag=None) -> Path:
    with h5py.File(path, "w") as f:
        f["z_maps/phase"] = maps.astype(np.float32)
        if coords is not None:
            f["coords"] = np.asarray(coords, np.int32)
            f["zernike/coeff_mag"] = np.asarray(mag, np.float32)
            f["zernike/coeff_phase"] = np.asarray(mag, np.float32)
    return path


@pytest.fixture
def tight(monkeypatch):
    """A machine with 8 GiB available (the size checks are then the same everywhere)."""
    monkeypatch.setattr("z2t_dask.engine.budget._available", lambda: 8 * GiB)


# ------------------------------------------------------------------------------------ Zmaps


def test_all_nan_zmap_is_refused_naming_the_file(tmp_path, capsys) -> None:
    zmap = _write_zmap(tmp_path / "nan.h5", np.full((21, 100, 100), np.nan))
    with pytest.raises(ZmapError, match=r"nan\.h5.*NaN at every pixel for every mode"):
        z2t.read_zmap(zmap)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(small_config(tiff={"crop_offset": [0, 0]})))
    out = tmp_path / "out"
    rc, err = _cli(capsys, ["simulate", "--config", cfg, "--zmap", zmap, "--output-dir", out])
    assert rc == 2 and "nan.h5" in err and "NaN" in err
    assert not out.exists()


def test_a_used_mode_nan_everywhere_is_refused_but_nan_pixels_are_allowed(tmp_path) -> None:
    maps = np.zeros((15, 60, 60))
    maps[10] = np.nan  # Noll 11 (spherical) never measured
    with pytest.raises(ZmapError, match=r"mode\(s\) \[10\]"):
        z2t.read_zmap(_write_zmap(tmp_path / "z.h5", maps))
    maps[10] = 0.1
    maps[10, :5, :5] = np.nan  # a few NaN pixels: filled from their neighbourhood
    maps[:, 50:, 50:] = np.nan
    z = z2t.read_zmap(_write_zmap(tmp_path / "ok.h5", maps))
    ph, _ = z.coefficients(np.array([20.0]), np.array([20.0]))
    assert np.all(np.isfinite(ph)) and ph[0, 10] == pytest.approx(0.1, rel=1e-5)
    # an emitter where the map is NaN in a whole window: an error, never a silent zero coefficient
    maps = np.full((15, 200, 200), np.nan)
    maps[:, :40, :40] = 0.1
    z = z2t.read_zmap(_write_zmap(tmp_path / "corner.h5", maps))
    with pytest.raises(ZmapError, match=r"corner\.h5.*NaN everywhere in chip rows"):
        z.coefficients(np.array([180.0]), np.array([180.0]))


def test_every_bead_nan_is_refused_but_some_nan_beads_are_ignored(tmp_path) -> None:
    maps = np.zeros((21, 100, 100))
    coords = [[10, 20], [80, 20], [50, 50], [90, 80]]
    mag = np.full((4, 21), np.nan)
    with pytest.raises(ZmapError, match=r"beads\.h5.*every one of its 4 beads"):
        z2t.read_zmap(_write_zmap(tmp_path / "beads.h5", maps, coords, mag))
    mag[:3] = 0.0
    mag[:3, 0] = 1.0
    assert len(z2t.read_zmap(_write_zmap(tmp_path / "ok.h5", maps, coords, mag)).beads()["x"]) == 3


def test_zmap_smaller_than_roi_plus_offset_is_refused(tmp_path, capsys, original) -> None:
    zmap = original("result_phase_retrieval.h5")  # 300 x 300 px
    cfg = small_config(tiff={"roi_width": 24, "roi_height": 20, "crop_offset": [290, 0]})
    with pytest.raises(ConfigError, match=r"tiff\.crop_offset.*300x300") as info:
        z2t.simulate({**cfg, "zmap_path": str(zmap)}, seed=1)
    assert "result_phase_retrieval.h5" in str(info.value)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**cfg, "zmap_path": str(zmap)}))
    out = tmp_path / "out"
    rc, err = _cli(capsys, ["simulate", "--config", path, "--output-dir", out])
    assert rc == 2 and "tiff.crop_offset" in err and "300x300" in err
    assert not out.exists()
    # an ROI larger than the whole Zmap names the ROI size
    with pytest.raises(ConfigError, match=r"tiff\.roi_size"):
        z2t.simulate({**small_config(tiff={"roi_width": 400, "roi_height": 20, "crop_offset": [0, 0]})}, zmap=zmap)


def test_crop_offset_outside_the_chip_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"tiff": {"roi_size": 64, "crop_offset": [5000, 0]}}))
    out = tmp_path / "out"
    rc, err = _cli(capsys, ["simulate", "--config", cfg, "--output-dir", out, "--frames", "2"])
    assert rc == 2 and "tiff.crop_offset" in err and "1200x1200" in err and "5000" in err
    assert not out.exists()
    # a declared chip: the ROI must lie on it
    with pytest.raises(ConfigError, match=r"tiff\.crop_offset.*chip width 1200"):
        z2t.load_config({"tiff": {"roi_size": 64, "crop_offset": [1150, 0]}, "camera": {"chip_width": 1200}})
    # the chip is the synthetic Zmap's shape when no chip is declared
    assert z2t.load_config({"tiff": {"roi_size": 64, "crop_offset": [1136, 1136]}}).crop_offset_xy == (1136, 1136)
    with pytest.raises(ConfigError, match=r"tiff\.roi_size.*zernike\.synthetic_shape"):
        z2t.load_config({"tiff": {"roi_size": 200000}})


# ------------------------------------------------------------------------------- emitters.h5


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    """A small z2t sample folder (24 x 20 px, 12 frames) with its emitters.h5 and stack."""
    folder = tmp_path_factory.mktemp("sample") / "s"
    z2t.simulate(small_config(), seed=4).save(folder)
    return folder


def _copy_h5(sample_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(sample_dir / "emitters.h5", tmp_path / "emitters.h5"))


def _render_refused(capsys, tmp_path: Path, h5: Path, *needles: str) -> str:
    out = tmp_path / "r" / "out.ome.tiff"
    before = _listing(tmp_path)
    rc, err = _cli(capsys, ["render", "--h5", h5, "--output", out])
    assert rc == 2, err
    for needle in (h5.name, *needles):
        assert needle in err, (needle, err)
    assert len(err.strip().splitlines()) <= 2
    assert _listing(tmp_path) == before  # nothing under the output name, no temporaries
    return err


@pytest.mark.parametrize(
    ("dataset", "change", "needles"),
    [
        ("records/phot", lambda a: np.where(np.arange(a.size) % 3 == 0, -50.0, a), ("records/phot", "negative")),
        ("records/phot", lambda a: np.where(np.arange(a.size) == 2, np.inf, a), ("records/phot", "1 of")),
        ("records/xyz", lambda a: np.where(np.arange(a.shape[0])[:, None] < 2, np.nan, a), ("records/xyz", "2 of")),
        ("emitters/xyz", lambda a: np.where(np.arange(a.shape[0])[:, None] == 0, np.nan, a), ("emitters/xyz",)),
        ("records/frame_ix", lambda a: np.where(np.arange(a.size) == 1, 10**9, a), ("records/frame_ix", "1 of")),
        ("records/frame_ix", lambda a: np.where(np.arange(a.size) < 4, -1, a), ("records/frame_ix", "4 of")),
        ("records/id", lambda a: np.where(np.arange(a.size) == 0, 10**6, a), ("records/id", "outside")),
        ("records/id", lambda a: np.where(np.arange(a.size) == 0, -3, a), ("records/id", "outside")),
    ],
)
def test_bad_values_in_emitters_h5_are_refused(sample_dir, tmp_path, capsys, dataset, change, needles) -> None:
    h5 = _copy_h5(sample_dir, tmp_path)
    with h5py.File(h5, "r+") as f:
        f[dataset][...] = change(f[dataset][()]).astype(f[dataset].dtype)
    _render_refused(capsys, tmp_path, h5, *needles)
    with pytest.raises(FormatError, match=dataset):
        z2t.load_sample_h5(h5)


def test_a_record_beyond_the_movie_is_an_error_not_a_longer_movie(sample_dir, tmp_path) -> None:
    h5 = _copy_h5(sample_dir, tmp_path)
    with h5py.File(h5, "r+") as f:
        f["records/frame_ix"][0] = 10**9
    with pytest.raises(FormatError, match=r"records/frame_ix.*frames >= 12.*emitters\.frames"):
        z2t.load_sample_h5(h5)


@pytest.mark.parametrize("dataset", ["records/phot", "records/frame_ix", "emitters/xyz"])
def test_missing_dataset_is_refused_naming_it(sample_dir, tmp_path, capsys, dataset) -> None:
    h5 = _copy_h5(sample_dir, tmp_path)
    with h5py.File(h5, "r+") as f:
        del f[dataset]
    _render_refused(capsys, tmp_path, h5, dataset)


def test_dataset_of_the_wrong_length_is_refused(sample_dir, tmp_path, capsys) -> None:
    h5 = _copy_h5(sample_dir, tmp_path)
    with h5py.File(h5, "r+") as f:
        phot = f["records/phot"][()]
        del f["records/phot"]
        f["records/phot"] = phot[:-3]
    _render_refused(capsys, tmp_path, h5, "records/phot", "shape")


def test_not_hdf5_and_truncated_files_are_refused(sample_dir, tmp_path, capsys) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not an HDF5 file\n" * 40)
    _render_refused(capsys, tmp_path, junk)
    data = (sample_dir / "emitters.h5").read_bytes()
    for cut in (len(data) // 2, len(data) - 200):
        cut_file = tmp_path / f"cut_{cut}.h5"
        cut_file.write_bytes(data[:cut])
        _render_refused(capsys, tmp_path, cut_file)


def test_negative_seed_is_refused_by_the_api(sample_dir) -> None:
    with pytest.raises(ConfigError, match="seed"):
        z2t.load_sample_h5(sample_dir / "emitters.h5", seed=-1)


# ------------------------------------------------------------- the config an emitters.h5 stores


def test_render_without_config_uses_the_stored_config_and_reproduces_the_stack(sample_dir, tmp_path, capsys) -> None:
    out = tmp_path / "r.ome.tiff"
    rc, err = _cli(capsys, ["render", "--h5", sample_dir / "emitters.h5", "--output", out, "--seed", "4"])
    assert rc == 0 and "warning" not in err
    again, original = tifffile.imread(out), tifffile.imread(sample_dir / "s.ome.tiff")
    assert again.shape == original.shape == (12, 20, 24)  # not the built-in 64 x 64 x 100
    assert np.array_equal(again, original)  # the same truth, config and seed: the same pixels
    s = z2t.load_sample_h5(sample_dir / "emitters.h5")
    assert s.frames.shape == (12, 20, 24) and s.config.crop_offset_xy == (100, 50)


def test_a_given_config_overrides_the_stored_one_and_differences_are_reported(
    sample_dir, tmp_path, capsys, caplog
) -> None:
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps({"tiff": {"roi_size": 32, "crop_offset": [0, 0]}, "emitters": {"frames": 20}}))
    out = tmp_path / "r.ome.tiff"
    rc, err = _cli(capsys, ["render", "--h5", sample_dir / "emitters.h5", "--output", out, "--config", cfgp])
    assert rc == 0
    assert "warning" in err and "tiff.roi_width 32 (given) vs 24 (stored)" in err and "tiff.crop_offset" in err
    assert "emitters.frames 20 (given) vs 12 (stored)" in err
    assert tifffile.imread(out).shape == (20, 32, 32)
    # the Python API logs the same as a WARNING
    with caplog.at_level(logging.WARNING, logger="z2t_dask"):
        s = z2t.load_sample_h5(sample_dir / "emitters.h5", cfgp)
    assert s.frames.shape == (20, 32, 32)
    assert any(
        r.levelno == logging.WARNING and "tiff.roi_height 32 (given) vs 20 (stored)" in r.message
        for r in caplog.records
    )
    # the same geometry: nothing to report
    caplog.clear()
    z2t.load_sample_h5(sample_dir / "emitters.h5", z2t.load_config(small_config()))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_original_file_without_config_is_as_long_as_its_records(original, tmp_path, caplog) -> None:
    # emitters_40.h5 (the original tool's, no stored config) reaches frame 199: more than the default's 100
    with caplog.at_level(logging.WARNING):
        s = z2t.load_sample_h5(original("emitters_40.h5"))
    assert s.frames.shape[0] == 200
    assert any("200 frames, as far as records/frame_ix reaches" in r.message for r in caplog.records)
    # ... but an absurd record is not a 10**9-frame movie: the budget refuses it, naming the key
    h5 = tmp_path / "emitters.h5"
    shutil.copy(original("emitters_40.h5"), h5)
    with h5py.File(h5, "r+") as f:
        f["records/frame_ix"][0] = 10**9
    with pytest.raises(ConfigError, match=r"emitters\.frames"):
        z2t.load_sample_h5(h5)


# --------------------------------------------------------------------------------- sCMOS maps


def _scmos_cfg(tmp_path: Path, shape: tuple[int, int], **camera) -> Path:
    np.save(tmp_path / "offset.npy", np.full(shape, 100.0, np.float32))
    cfg = small_config(camera={"model": "scmos", "scmos_offset": str(tmp_path / "offset.npy"), **camera})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    return path


def test_scmos_map_of_the_wrong_shape_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    # chip declared: the map must be the chip
    cfg = _scmos_cfg(tmp_path, (300, 299), chip_height=300, chip_width=300)
    rc, err = _cli(capsys, ["simulate", "--config", cfg, "--output-dir", out, "--frames", "2"])
    assert rc == 2 and "camera.scmos_offset" in err and "300x299" in err and "300x300" in err
    # no chip: the map must cover tiff.crop_offset [100, 50] + the 24 x 20 ROI
    cfg = _scmos_cfg(tmp_path, (60, 120))
    rc, err = _cli(capsys, ["simulate", "--config", cfg, "--output-dir", out, "--frames", "2"])
    assert rc == 2 and "camera.scmos_offset" in err and "60x120" in err and "70x124" in err
    assert not out.exists()
    # a map file that does not exist
    cfg = small_config(camera={"model": "scmos", "scmos_offset": str(tmp_path / "gone.npy")})
    (tmp_path / "c2.json").write_text(json.dumps(cfg))
    rc, err = _cli(capsys, ["simulate", "--config", tmp_path / "c2.json", "--output-dir", out, "--frames", "2"])
    assert rc == 2 and "camera.scmos_offset" in err and "gone.npy" in err
    assert not out.exists()
    # a chip-sized map works
    cfg = _scmos_cfg(tmp_path, (300, 300), chip_height=300, chip_width=300)
    assert z2t.simulate(cfg, seed=1).frames.shape == (12, 20, 24)


def test_scmos_map_that_is_not_npy_or_has_bad_values_is_refused(tmp_path) -> None:
    (tmp_path / "junk.npy").write_text("not numpy")
    cfg = small_config(camera={"model": "scmos", "scmos_gain": str(tmp_path / "junk.npy")})
    with pytest.raises(ConfigError, match=r"camera\.scmos_gain.*junk\.npy"):
        z2t.simulate(cfg)
    np.save(tmp_path / "neg.npy", np.full((300, 300), -1.0))
    cfg = small_config(camera={"model": "scmos", "scmos_gain": str(tmp_path / "neg.npy")})
    with pytest.raises(ConfigError, match=r"camera\.scmos_offset, camera\.scmos_variance, camera\.scmos_gain.*> 0"):
        z2t.simulate(cfg)
    with pytest.raises(FileNotFoundError, match=r"camera\.scmos_variance.*not found.*none\.npy"):
        z2t.simulate(small_config(camera={"model": "scmos", "scmos_variance": str(tmp_path / "none.npy")}))


# ------------------------------------------------------------------------- options and files


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--seed", "-1"],
        ["simulate", "--chunk-size", "-5"],
        ["simulate", "--tile-size", "0"],
        ["simulate", "--frames", "0"],
        ["simulate", "--frames", "many"],
        ["render", "--h5", "e.h5", "--output", "o.ome.tiff", "--chunk-size", "-5"],
        ["render", "--h5", "e.h5", "--output", "o.ome.tiff", "--seed", "-1"],
        ["render", "--h5", "e.h5", "--output", "o.ome.tiff", "--tile-size", "-2"],
    ],
)
def test_bad_option_values_exit_2_naming_the_option(tmp_path, capsys, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*argv, *(["--output-dir", "out"] if argv[0] == "simulate" else [])])
    assert info.value.code == 2
    err = capsys.readouterr().err
    option = next(a for a in argv if a.startswith("--") and a not in ("--h5", "--output"))
    assert f"argument {option}: expected an integer >=" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("emitters:\n  frames: 3\n   num_emitters: [1, 2\n")
    rc, err = _cli(capsys, ["simulate", "--config", bad, "--output-dir", tmp_path / "out"])
    assert rc == 2 and str(bad) in err and "line 3" in err and "<unicode string>" not in err
    assert len(err.strip().splitlines()) <= 2
    bad.write_bytes(b"\xff\xfe emitters: 1\n")
    rc, err = _cli(capsys, ["simulate", "--config", bad, "--output-dir", tmp_path / "out"])
    assert rc == 2 and "UTF-8" in err
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"emitters": {"frames": 3,}}')
    rc, err = _cli(capsys, ["simulate", "--config", bad_json, "--output-dir", tmp_path / "out"])
    assert rc == 2 and str(bad_json) in err and "line 1" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ sizes


def test_a_billion_emitters_is_refused_up_front_with_the_figure(tight) -> None:
    with pytest.raises(ConfigError, match=r"emitters\.num_emitters: the ground truth would need ~\d+ GiB") as info:
        z2t.simulate(z2t.load_config(None, overrides={"emitters": {"num_emitters": 10**9}}))
    assert "1,000,000,000 emitters" in str(info.value) and "8.0 GiB is available" in str(info.value)


def test_a_hundred_million_frames_is_refused_up_front(tight, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc, err = _cli(capsys, ["simulate", "--frames", "100000000", "--output-dir", out])
    assert rc == 2 and "emitters.frames" in err and "100,000,000 frames would need" in err
    assert not out.exists()


def test_a_huge_roi_is_refused_up_front(tight, tmp_path, capsys, monkeypatch) -> None:
    big = {"tiff": {"roi_size": 200000, "crop_offset": [0, 0]}, "zernike": {"synthetic_shape": [200000, 200000]}}
    cfgp = tmp_path / "c.json"
    cfgp.write_text(json.dumps(big))
    out = tmp_path / "out"
    # OME-TIFF holds whole frames (~75 GiB each) in memory
    rc, err = _cli(capsys, ["simulate", "--config", cfgp, "--output-dir", out, "--frames", "3"])
    assert rc == 2 and "tiff.roi_size" in err and "200000x200000" in err
    # tiled OME-Zarr needs no whole frame, but the disk: ~224 GiB uncompressed
    monkeypatch.setattr("z2t_dask.io.space.free_bytes", lambda folder: 10 * 10**9)
    rc, err = _cli(capsys, ["simulate", "--config", cfgp, "--output-dir", out, "--frames", "3", "--format", "ome-zarr"])
    assert rc == 2 and "disk full" in err and "uncompressed" in err
    assert not out.exists()


def test_the_full_chip_example_is_accepted(tight) -> None:
    # 1200 x 1200 px x 10,000 frames, with its emitters or with as many per frame as its 20 frames have
    for emitters in (25000, 25000 * 10000 // 20):
        over = {"emitters": {"frames": 10000, "num_emitters": emitters}}
        cfg = z2t.load_config(EXAMPLES / "full_chip_1200.json", overrides=over)
        est = check_resources(cfg)
        assert est["memory_bytes"] < 4 * GiB and est["stack_bytes"] == 10000 * 1200 * 1200 * 2
    s = z2t.simulate(EXAMPLES / "full_chip_1200.json", seed=1)
    assert s.frames.shape == (20, 1200, 1200)


def test_estimates_are_close_to_what_is_drawn() -> None:
    cfg = z2t.load_config(None, overrides={"emitters": {"frames": 3000, "num_emitters": 6000}})
    est = estimate_resources(cfg)
    s = z2t.simulate(cfg, seed=2)
    assert est["n_segments"] == s.truth.n_segments == 3
    assert 0.5 < est["n_records"] / s.truth.n_records < 2.0
    assert est["stack_bytes"] == s.frames.nbytes and est["chunks"] == s.frames.chunksize
    largest = max(seg.n_emitters for seg in s.truth.segments)
    assert largest <= est["segment_emitters"] < 2 * largest
    # an in-memory truth (an emitters.h5) is counted as given, not drawn
    held = estimate_resources(cfg, n_emitters=10, n_records=40)
    assert held["truth_bytes"] < est["truth_bytes"] and held["n_records"] == 40


def test_no_temporaries_are_left_by_a_refused_render(sample_dir, tmp_path, capsys) -> None:
    h5 = _copy_h5(sample_dir, tmp_path)
    with h5py.File(h5, "r+") as f:
        f["records/phot"][0] = -1.0
    _render_refused(capsys, tmp_path, h5, "records/phot")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
