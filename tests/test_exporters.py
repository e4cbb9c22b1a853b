"""Ground-truth exports (issue 14): each file loads in its tool's own code, positions survive the documented
conversion, and a rendered sample's exported positions land on the PSF peaks (catches swapped axes and
half-pixel shifts).

Loaders: Picasso's own ``picasso.io.load_locs`` and ``import_ts`` (``picassosr``, in the ``test`` extra;
skipped when absent) and, for every format, a transcription of the tool's loader checks: ThunderSTORM's
``DLMImportExport.importFromFile``, DECODE's ``emitter_io.load_h5`` / ``load_csv`` (torch replaced by
NumPy), Picasso's ``lib.ensure_sanity`` and SMAP's ``Loader_sml`` / ``load_smlV3`` (MATLAB: the file is
read with ``scipy.io.loadmat``).
"""

from __future__ import annotations

import csv
import json
import linecache
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

import z2t_dask as z2t
from z2t_dask.config.schema import EXPORT_FORMATS
from z2t_dask.errors import ConfigError, FormatError
from z2t_dask.io.exporters import ExportMeta, export_records, get_exporter, registered_exporters
from z2t_dask.physics.crlb import crlb_xy_nm, excess_noise_factor
from z2t_dask.tools.cli import main

PX, PY = 101.11, 98.83  # anisotropic on purpose (the defaults)
ALL = ["thunderstorm", "decode", "picasso", "smap"]


def _config(**over: dict) -> z2t.SimulationConfig:
    base = {
        "emitters": {"frames": 12, "num_emitters": 60, "z_range_um": 0.1, "margin_px": 3.0},
        "tiff": {"roi_size": None, "roi_width": 28, "roi_height": 22},
        "zernike": {"synthetic_rms_rad": 0.0},
        "output": {"exports": ALL},
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    return z2t.load_config(None, overrides=base)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[z2t.Sample, Path]:
    """A sample saved with every export (records inside and outside the image, anisotropic pixels)."""
    sample = z2t.simulate(_config(), seed=5)
    folder = sample.save(tmp_path_factory.mktemp("exp") / "sample_005")
    return sample, folder


def _inside(sample: z2t.Sample) -> dict[str, np.ndarray]:
    r = sample.records
    keep = r.inside
    order = np.lexsort((r.id[keep], r.frame_ix[keep]))
    return {
        "x": r.xyz[keep, 0][order].astype(np.float64),
        "y": r.xyz[keep, 1][order].astype(np.float64),
        "z": r.xyz[keep, 2][order].astype(np.float64),
        "frame": r.frame_ix[keep][order],
        "id": r.id[keep][order],
        "phot": r.phot[keep][order],
    }


# ---------------------------------------------------------------- the tools' loaders, transcribed


def thunderstorm_import(path: Path) -> tuple[dict[str, tuple[str, np.ndarray]], list[str]]:
    """ThunderSTORM ``DLMImportExport.importFromFile``: split on ',', strip quotes, labels ``name [unit]``."""
    lines = path.read_text().splitlines()
    labels = [c.strip().strip('"') for c in lines[0].split(",")]
    parsed = []
    for label in labels:  # MoleculeDescriptor.parseColumnLabel
        start, end = label.rfind("["), label.rfind("]")
        bare = start < 0 or end < 0 or start > end
        parsed.append((label, "") if bare else (label[:start].strip(), label[start + 1 : end]))
    rows = [line.split(",") for line in lines[1:] if line]
    assert all(len(r) == len(labels) for r in rows), "a row has a different number of items than the header"
    values = np.array([[float(v) for v in r] for r in rows]).reshape(-1, len(labels))  # Double.parseDouble
    return {name: (unit, values[:, i]) for i, (name, unit) in enumerate(parsed)}, labels


DECODE_EMITTERSET_ARGS = {  # decode.generic.emitter.EmitterSet.__init__
    "xyz", "phot", "frame_ix", "id", "prob", "bg", "xyz_cr", "phot_cr", "bg_cr", "xyz_sig", "phot_sig", "bg_sig",
    "sanity_check", "xy_unit", "px_size",
}  # fmt: skip
DECODE_DEFAULT_MAPPING = ("x", "y", "z", "phot", "frame_ix", "x_cr", "y_cr", "z_cr", "phot_cr", "bg_cr")
DECODE_DEFAULT_MAPPING += ("x_sig", "y_sig", "z_sig", "phot_sig", "bg_sig")


def decode_load_h5(path: Path) -> tuple[dict, dict, dict]:
    """DECODE ``emitter_io.load_h5`` (NumPy for torch)."""
    with h5py.File(path, "r") as h5:
        data = {k: v[:] for k, v in h5["data"].items() if v.shape is not None}
        data.update({k: None for k, v in h5["data"].items() if v.shape is None})
        meta_data = dict(h5["meta"].attrs)
        meta_decode = dict(h5["decode"].attrs)
    return data, meta_data, meta_decode


def decode_load_csv(path: Path) -> tuple[dict, dict, dict]:
    """DECODE ``emitter_io.load_csv`` with its default mapping (skiprows=3, meta JSON on lines 2 and 3)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[3:]
    header, body = rows[0], rows[1:]
    cols = {h: np.array([float(r[i]) if r[i] else np.nan for r in body]) for i, h in enumerate(header)}
    for k in DECODE_DEFAULT_MAPPING:
        assert k in cols, f"load_csv's default mapping needs column {k}"
    data = {"xyz": np.stack([cols["x"], cols["y"], cols["z"]], 1), "phot": cols["phot"], "frame_ix": cols["frame_ix"]}
    decode_meta = json.loads(linecache.getline(str(path), 2).strip("# "))
    em_meta = json.loads(linecache.getline(str(path), 3).strip("# "))
    return data, em_meta, decode_meta


def picasso_load(path: Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Picasso ``io.load_locs``: the ``locs`` dataset, the ``.yaml`` beside it, ``lib.ensure_sanity``."""
    with h5py.File(path, "r") as f:
        locs = f["locs"][...]
    with open(path.with_suffix(".yaml")) as fh:
        info = list(yaml.load_all(fh, Loader=yaml.UnsafeLoader))

    def get(key: str) -> object:  # lib.get_from_metadata: last document first
        return next((d[key] for d in info[::-1] if d.get(key)), None)

    for key in ("Width", "Height", "Frames"):
        assert get(key) is not None, f"Metadata is missing required key: '{key}'"
    ok = np.ones(locs.size, bool)
    for name in locs.dtype.names:
        ok &= np.isfinite(locs[name].astype(np.float64))
    ok &= (locs["x"] < get("Width")) & (locs["y"] < get("Height"))
    for name in ("x", "y", "lpx", "lpy", "photons", "sx", "sy"):
        ok &= locs[name] >= 0
    return {n: locs[n][ok] for n in locs.dtype.names}, info


def smap_load(path: Path) -> dict[str, np.ndarray]:
    """SMAP ``Loader_sml`` + ``load_smlV3``: ``load(file)``, ``saveloc.loc``, file info, the locprecnm filter."""
    filedat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    assert filedat["fileformat"].name == "sml"
    saveloc = filedat["saveloc"]
    loc = {k: np.atleast_1d(getattr(saveloc.loc, k)) for k in saveloc.loc._fieldnames}
    assert "xnm" in loc and "locprecnm" in loc
    info = saveloc.file.info
    for key in ("Width", "Height", "roi", "cam_pixelsize_um"):
        assert key in info._fieldnames
    keep = ~((loc["locprecnm"] > 250) | np.isnan(loc["locprecnm"]))
    out = {k: v[keep] for k, v in loc.items()}
    out["cam_pixelsize_nm"] = np.asarray(info.cam_pixelsize_um, np.float64) * 1000
    return out


def loaded_positions(folder: Path, to: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame 0-based, row, col)`` of an export, read back with the tool's loader and convention."""
    name = folder.name
    if to == "thunderstorm":
        cols, _ = thunderstorm_import(folder / f"{name}_thunderstorm.csv")
        return cols["frame"][1] - 1, cols["y"][1] / PY - 0.5, cols["x"][1] / PX - 0.5
    if to == "decode":
        data, _, _ = decode_load_h5(folder / f"{name}_decode.h5")
        return data["frame_ix"], data["xyz"][:, 0], data["xyz"][:, 1]  # DECODE x = row
    if to == "picasso":
        locs, _ = picasso_load(folder / f"{name}_locs.hdf5")
        return locs["frame"], locs["y"], locs["x"]
    loc = smap_load(folder / f"{name}_sml.mat")
    px, py = loc["cam_pixelsize_nm"]
    return loc["frame"] - 1, loc["ynm"] / py, loc["xnm"] / px


# ---------------------------------------------------------------- registry and config


def test_registry_holds_the_four_tools() -> None:
    assert set(EXPORT_FORMATS) <= set(registered_exporters())
    assert [get_exporter(n).name for n in ("ThunderSTORM", "decode", "Picasso", "smap")] == ALL
    with pytest.raises(FormatError, match="--to: unknown export format 'imagej'"):
        get_exporter("imagej", "--to")
    p = get_exporter("picasso")
    assert p.files("a/s_locs.hdf5") == (Path("a/s_locs.hdf5"), Path("a/s_locs.yaml"))
    assert p.filename("s") == "s_locs.hdf5" and get_exporter("smap").filename("s") == "s_sml.mat"


def test_unknown_export_in_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"output\.exports\[1\]: unknown export 'picaso'"):
        z2t.load_config(None, overrides={"output": {"exports": ["smap", "picaso"]}})
    assert z2t.load_config(None).output.exports == []


def test_save_writes_the_configured_exports_beside_emitters_h5(saved: tuple) -> None:
    _, folder = saved
    names = {p.name for p in folder.iterdir()}
    expected = {"sample_005_thunderstorm.csv", "sample_005_decode.h5", "sample_005_decode.csv"}
    expected |= {"sample_005_locs.hdf5", "sample_005_locs.yaml", "sample_005_sml.mat", "emitters.h5"}
    assert expected <= names


# ---------------------------------------------------------------- round trips through the loaders


def test_thunderstorm_round_trip(saved: tuple) -> None:
    sample, folder = saved
    cols, labels = thunderstorm_import(folder / "sample_005_thunderstorm.csv")
    assert labels[:5] == ["id", "frame", "x [nm]", "y [nm]", "z [nm]"]
    assert cols["x"][0] == "nm" and cols["intensity"][0] == "photon" and cols["uncertainty"][0] == "nm"
    ref = _inside(sample)
    np.testing.assert_array_equal(cols["frame"][1], ref["frame"] + 1)  # 1-based
    np.testing.assert_allclose(cols["x"][1] / PX - 0.5, ref["x"], atol=1e-4)  # corner origin
    np.testing.assert_allclose(cols["y"][1] / PY - 0.5, ref["y"], atol=1e-4)
    np.testing.assert_allclose(cols["z"][1], ref["z"] * 1000, atol=1e-3)
    np.testing.assert_array_equal(cols["emitter"][1], ref["id"])
    assert np.all(cols["uncertainty"][1] > 0) and np.all(np.isfinite(cols["uncertainty"][1]))


def test_thunderstorm_loads_in_picassos_import_ts(saved: tuple) -> None:
    io = pytest.importorskip("picasso.io")
    sample, folder = saved
    locs, _ = io.import_ts(str(folder / "sample_005_thunderstorm.csv"), PX)
    ref = _inside(sample)
    assert len(locs) == ref["x"].size
    np.testing.assert_allclose(locs["x"].to_numpy() - 0.5, ref["x"], atol=1e-4)  # import_ts: x nm / pixelsize


def test_decode_round_trip(saved: tuple) -> None:
    sample, folder = saved
    ref = _inside(sample)
    data, meta, dec = decode_load_h5(folder / "sample_005_decode.h5")
    assert set(data) | set(meta) <= DECODE_EMITTERSET_ARGS  # EmitterSet(**data, **meta) accepts them
    assert meta["xy_unit"] == "px" and np.allclose(meta["px_size"], [PY, PX])  # DECODE's (x, y) = our (row, col)
    assert data["xyz_sig"] is None and data["frame_ix"].dtype == np.int64 and "version" in dec
    np.testing.assert_allclose(data["xyz"][:, 0], ref["y"], atol=1e-4)
    np.testing.assert_allclose(data["xyz"][:, 1], ref["x"], atol=1e-4)
    np.testing.assert_allclose(data["xyz"][:, 2], ref["z"] * 1000, atol=1e-2)  # z nm
    np.testing.assert_array_equal(data["frame_ix"], ref["frame"])  # 0-based
    np.testing.assert_array_equal(data["id"], ref["id"])
    assert np.all(data["xyz_cr"][:, :2] > 0) and np.all(np.isnan(data["xyz_cr"][:, 2]))
    csv_data, em_meta, dec_meta = decode_load_csv(folder / "sample_005_decode.csv")
    assert em_meta == {"xy_unit": "px", "px_size": [PY, PX]} and "version" in dec_meta
    np.testing.assert_allclose(csv_data["xyz"], data["xyz"], atol=1e-4)
    np.testing.assert_array_equal(csv_data["frame_ix"], ref["frame"])


def test_picasso_round_trip(saved: tuple) -> None:
    sample, folder = saved
    ref = _inside(sample)
    locs, info = picasso_load(folder / "sample_005_locs.hdf5")
    # Picasso drops x < 0 or y < 0: the outer half of the first column / row (pixel centres at integers)
    kept = (ref["x"] >= 0) & (ref["y"] >= 0)
    assert info[1]["Dropped by Picasso"] == int(np.count_nonzero(~kept))
    assert info[1]["Pixelsize"] == PX and info[0]["Width"] == 28 and info[0]["Height"] == 22
    np.testing.assert_allclose(locs["x"], ref["x"][kept], atol=1e-4)
    np.testing.assert_allclose(locs["y"], ref["y"][kept], atol=1e-4)
    np.testing.assert_array_equal(locs["frame"], ref["frame"][kept])
    assert np.all(locs["lpx"] > 0) and np.all(locs["lpy"] > 0)


def test_picasso_loads_in_picassos_own_load_locs(saved: tuple) -> None:
    io = pytest.importorskip("picasso.io")
    sample, folder = saved
    locs, info = io.load_locs(str(folder / "sample_005_locs.hdf5"))
    ours, _ = picasso_load(folder / "sample_005_locs.hdf5")
    assert len(locs) == ours["x"].size > 0
    np.testing.assert_allclose(locs["x"].to_numpy(), ours["x"], atol=1e-6)
    np.testing.assert_allclose(locs["lpy"].to_numpy(), ours["lpy"], atol=1e-6)
    assert io.lib.get_from_metadata(info, "Pixelsize") == PX


def test_smap_round_trip(saved: tuple) -> None:
    sample, folder = saved
    ref = _inside(sample)
    loc = smap_load(folder / "sample_005_sml.mat")
    np.testing.assert_allclose(loc["cam_pixelsize_nm"], [PX, PY])
    assert loc["xnm"].size == ref["x"].size  # in focus, bright: none beyond SMAP's 250 nm limit
    np.testing.assert_allclose(loc["xnm"] / PX, ref["x"], atol=1e-4)
    np.testing.assert_allclose(loc["ynm"] / PY, ref["y"], atol=1e-4)
    np.testing.assert_array_equal(loc["frame"], ref["frame"] + 1)  # 1-based
    head = (folder / "sample_005_sml.mat").read_bytes()[:116]
    assert head.startswith(b"MATLAB 5.0 MAT-file") and b"Created on" not in head


# ---------------------------------------------------------------- positions on the rendered peaks


def _on_peak(frames: np.ndarray, t: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Whether the pixel at (round(row), round(col)) of frame t is the brightest of its 3x3 neighbourhood."""
    _, h, w = frames.shape
    r, c = np.rint(row).astype(int), np.rint(col).astype(int)
    ok = (r >= 1) & (r < h - 1) & (c >= 1) & (c < w - 1)
    out = np.zeros(t.size, bool)
    for i in np.flatnonzero(ok):
        patch = frames[int(t[i]), r[i] - 1 : r[i] + 2, c[i] - 1 : c[i] + 2]
        out[i] = patch[1, 1] >= patch.max()
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path, np.ndarray]:
    """A noise-free, sparse, bright sample with every export, and the bright isolated records' mask."""
    cfg = _config(
        emitters={"num_emitters": 120, "intensity_mu": 5000.0, "intensity_sigma": 100.0, "z_range_um": 0.05},
        tiff={"roi_width": 48, "roi_height": 40},
        camera={"model": "none"},
    )
    sample = z2t.simulate(cfg, seed=11)
    folder = sample.save(tmp_path_factory.mktemp("peaks") / "sample_011")
    frames = sample.compute(scheduler="sync").astype(np.float64)
    r = sample.records
    ref = _inside(sample)
    isolated = np.ones(ref["x"].size, bool)
    for i in range(ref["x"].size):  # no other emitter (inside or outside) within 4 px in that frame
        same = r.frame_ix == ref["frame"][i]
        d = np.hypot(r.xyz[same, 0] - ref["x"][i], r.xyz[same, 1] - ref["y"][i])
        isolated[i] = np.count_nonzero(d < 4.0) == 1
    bright = ref["phot"] > 1000
    return frames, folder, isolated & bright


@pytest.mark.parametrize("to", ALL)
def test_exported_positions_are_on_the_rendered_peaks(rendered: tuple, to: str) -> None:
    frames, folder, select = rendered
    t, row, col = loaded_positions(folder, to)
    _, ref_row, ref_col = loaded_positions(folder, "decode")  # every inside record, in the exports' order
    keep = select if to != "picasso" else select[(ref_col >= 0) & (ref_row >= 0)]  # Picasso drops x < 0, y < 0
    assert t.size == keep.size and np.count_nonzero(keep) >= 10
    hits = _on_peak(frames, t[keep], row[keep], col[keep])
    assert hits.mean() >= 0.95, f"{to}: {hits.mean():.0%} of bright records on their peak"
    # the check discriminates: swapped axes or a half-pixel shift put most records off their peak
    assert _on_peak(frames, t[keep], col[keep], row[keep]).mean() < 0.6
    assert _on_peak(frames, t[keep], row[keep] + 0.5, col[keep] + 0.5).mean() < 0.8


# ---------------------------------------------------------------- precision columns, options, bytes


def test_precision_columns_are_the_crlb_of_each_record(saved: tuple) -> None:
    sample, folder = saved
    cfg = sample.config
    locs, info = picasso_load(folder / "sample_005_locs.hdf5")
    meta = json.loads(info[1]["z2t"])
    assert meta["excess_noise_F2"] == pytest.approx(excess_noise_factor("emccd", cfg.camera.em_gain))
    sx = locs["sx"] * PX
    bx, by = crlb_xy_nm(
        cfg.camera.qe * locs["photons"],
        cfg.camera.qe * cfg.background.photons,
        (sx, locs["sy"] * PY),
        (PX, PY),
        excess_noise=2.0 - 1.0 / cfg.camera.em_gain,
        readout_variance=(cfg.camera.read_noise_e / cfg.camera.em_gain) ** 2,
    )
    np.testing.assert_allclose(locs["lpx"] * PX, bx, rtol=1e-5)
    np.testing.assert_allclose(locs["lpy"] * PY, by, rtol=1e-5)
    assert np.all((sx > 80) & (sx < 130))  # in focus: about 0.21 lambda / NA
    # brighter records are localised better
    order = np.argsort(locs["photons"])
    assert locs["lpx"][order[-1]] < locs["lpx"][order[0]]


def test_outside_records_left_out_unless_asked(saved: tuple, tmp_path: Path) -> None:
    sample, _ = saved
    r = sample.records
    assert 0 < np.count_nonzero(~r.inside) < len(r)
    default = sample.export("decode", tmp_path)
    everything = sample.export("decode", tmp_path / "all.h5", include_outside=True)
    assert default[0].name == "sample_005_decode.h5" and everything[1].name == "all.csv"
    assert decode_load_h5(default[0])[0]["id"].size == np.count_nonzero(r.inside)
    assert decode_load_h5(everything[0])[0]["id"].size == len(r)


def test_exports_are_byte_identical_for_the_same_sample(saved: tuple, tmp_path: Path) -> None:
    sample, folder = saved
    for to in ALL:
        for path in sample.export(to, tmp_path):
            assert path.read_bytes() == (folder / path.name).read_bytes(), path.name


def test_export_records_api_without_a_sample(tmp_path: Path) -> None:
    records = {
        "xyz": np.array([[1.25, 2.5, 0.0], [30.0, 1.0, 0.1]], np.float32),
        "phot": np.array([1000.0, 500.0], np.float32),
        "frame_ix": np.array([3, 0]),
        "id": np.array([7, 8]),
    }
    meta = ExportMeta(image_shape=(10, 20), frames=5, pixel_size_nm=(100.0, 100.0), background_photons=10.0)
    (path,) = export_records("thunderstorm", tmp_path / "t.csv", records, meta)
    cols, _ = thunderstorm_import(path)  # x = 30 is outside the 20 px wide image: left out
    np.testing.assert_allclose(cols["x"][1], [175.0]) and np.testing.assert_allclose(cols["frame"][1], [4])
    with pytest.raises(FormatError, match="companion|extension"):
        export_records("picasso", tmp_path / "p.yaml", records, meta)


# ---------------------------------------------------------------- batch marker and the command line


def test_batch_job_lists_its_exports_with_checksums(tmp_path: Path) -> None:
    from z2t_dask.batch.jobs import JOB_MARKER, run_job
    from z2t_dask.batch.spec import Job

    cfg = _config(output={"exports": ["picasso", "smap"]}).to_dict()
    info = run_job(Job(index=0, name="sample_000", params={}, config=cfg, seed=3, key="k"), tmp_path)
    for name in ("sample_000_locs.hdf5", "sample_000_locs.yaml", "sample_000_sml.mat"):
        assert len(info["outputs"][name]["sha256"]) == 64
    assert json.loads((tmp_path / "sample_000" / JOB_MARKER).read_text())["outputs"] == info["outputs"]


def test_cli_export_sample_and_batch_folders(saved: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, folder = saved
    sample_dir = tmp_path / "sample_005"
    shutil.copytree(folder, sample_dir)
    for p in sample_dir.glob("sample_005_*"):
        p.unlink()
    assert main(["export", str(sample_dir), "--to", "picasso"]) == 0
    assert (sample_dir / "sample_005_locs.hdf5").read_bytes() == (folder / "sample_005_locs.hdf5").read_bytes()
    assert main(["export", str(sample_dir), "--to", "smap", "-o", str(tmp_path / "x" / "gt_sml.mat")]) == 0
    assert (tmp_path / "x" / "gt_sml.mat").is_file()
    # a batch folder: one export per finished job, unfinished ones reported
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copytree(sample_dir, batch / "sample_005")
    jobs = {"sample_005": {"state": "done", "index": 0}, "sample_006": {"state": "failed", "index": 1}}
    (batch / "manifest.json").write_text(json.dumps({"schema": 1, "jobs": jobs}))
    capsys.readouterr()
    assert main(["export", str(batch), "--to", "thunderstorm", "-o", str(tmp_path / "ts")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "ts" / "sample_005_thunderstorm.csv").is_file() and "sample_006" in out


def test_cli_export_bad_input_exits_2(saved: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, folder = saved
    with pytest.raises(SystemExit) as exc:
        main(["export", str(folder), "--to", "imagej"])
    assert exc.value.code == 2 and "--to" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--to", "smap"]) == 2
    assert "not a sample folder" in capsys.readouterr().err
