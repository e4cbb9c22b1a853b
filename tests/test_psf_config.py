"""Issue 12 plumbing: PSF config keys, focus depth, fixed dipoles in the truth and the frames, outputs, tools.

The physics of the vectorial / mismatch model itself is validated in ``tests/test_psf_vectorial.py``; here the
config reaches the model, the new quantities (depth above the coverslip, dipole orientations) reach the ground
truth and its files, fixed dipoles reach the frames, and inspect / preview name the model.
"""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.config import load_config
from z2t_dask.engine.assembly import exact_psf_model
from z2t_dask.errors import ConfigError, FormatError
from z2t_dask.io.emitters_h5 import write_emitters_h5
from z2t_dask.physics.emitters import DIPOLE_BLOCK, dipole_angles, dipole_vectors


def _problems(overrides: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(small_config(), overrides=overrides)
    return str(info.value)


# ------------------------------------------------------------------------------------------ config


def test_defaults_are_vectorial_isotropic_with_the_focal_plane_a_z_range_above_the_coverslip() -> None:
    cfg = load_config(small_config())
    assert cfg.psf.vectorial is True and cfg.psf.otf_sigma_nm == 0.0 and cfg.emitters.dipole == "isotropic"
    o = cfg.optical
    assert (o.coverslip_um, o.working_distance_um) == (170.0, 150.0)
    assert o.n_coverslip is None and o.n_immersion_design is None and o.focus_depth_um is None
    assert cfg.focus_depth_um == 0.5  # auto = emitters.z_range_um of small_config
    explicit = load_config(small_config(), overrides={"optical": {"focus_depth_um": 3.0}})
    assert explicit.focus_depth_um == 3.0


def test_the_config_reaches_the_exact_model() -> None:
    over = {
        "optical": {
            "use_default_config": False,
            "n_medium": 1.33,  # below NA: supercritical light is allowed
            "n_immersion_design": 1.515,
            "n_coverslip": 1.52,
            "n_coverslip_design": 1.525,
            "coverslip_um": 165.0,
            "coverslip_design_um": 175.0,
            "working_distance_um": 120.0,
            "focus_depth_um": 2.5,
        },
        "psf": {"vectorial": False, "otf_sigma_nm": 40.0},
    }
    model = exact_psf_model(load_config(small_config(), overrides=over))
    got = {k: getattr(model, k) for k in ("vectorial", "n_medium", "n_immersion_design", "n_coverslip")}
    assert got == {"vectorial": False, "n_medium": 1.33, "n_immersion_design": 1.515, "n_coverslip": 1.52}
    assert (model.n_coverslip_design, model.coverslip_um, model.coverslip_design_um) == (1.525, 165.0, 175.0)
    assert (model.working_distance_um, model.focus_depth_um, model.otf_sigma_nm) == (120.0, 2.5, 40.0)
    auto = exact_psf_model(load_config(small_config()))
    assert auto.vectorial is True and auto.focus_depth_um == 0.5  # resolved: emitters.z_range_um


@pytest.mark.parametrize(
    "over",
    [
        {"psf": {"vectorial": False}},
        {"psf": {"otf_sigma_nm": 30.0}},
        {"optical": {"focus_depth_um": 1.0}},
        {"optical": {"coverslip_um": 160.0}},
        {"optical": {"working_distance_um": 100.0}},
        {"optical": {"n_coverslip": 1.52}},
        {"optical": {"n_coverslip_design": 1.52}},
        {"optical": {"n_immersion_design": 1.52}},
        {"optical": {"coverslip_design_um": 160.0}},
    ],
)
def test_every_new_model_parameter_changes_the_fast_library_key(over: dict) -> None:
    # make_psf_model keys the fast library by the exact model's full state (json of __getstate__)
    base = exact_psf_model(load_config(small_config())).__getstate__()
    other = exact_psf_model(load_config(small_config(), overrides=over)).__getstate__()
    assert json.dumps(base, default=str) != json.dumps(other, default=str)


def test_bad_psf_optics_name_their_keys() -> None:
    assert "psf.vectorial true" in _problems({"emitters": {"dipole": "fixed"}, "psf": {"vectorial": False}})
    msg = _problems({"optical": {"focus_depth_um": 0.2}})
    assert "optical.focus_depth_um" in msg and "focus_depth_um + z must be >= 0" in msg
    assert "emitters.dipole_polar_deg" in _problems({"emitters": {"dipole_polar_deg": 10.0}})  # isotropic
    assert "must be <= 90 deg" in _problems({"emitters": {"dipole": "fixed", "dipole_polar_deg": 100.0}})
    assert "optical.n_coverslip: must exceed optical.NA" in _problems({"optical": {"n_coverslip": 1.3}})
    assert "optical.n_immersion_design" in _problems({"optical": {"n_immersion_design": 1.2}})
    assert "psf.otf_sigma_nm: must be >= 0" in _problems({"psf": {"otf_sigma_nm": -1.0}})
    assert "optical.coverslip_um" in _problems({"optical": {"coverslip_um": -5.0}})
    assert "emitters.dipole: expected one of" in _problems({"emitters": {"dipole": "wobbling"}})
    assert "optical.NA: must be < n_immersion" in _problems({"optical": {"use_default_config": False, "NA": 1.6}})


def test_the_original_tools_configs_load_with_the_new_defaults(original) -> None:
    for name in ("batch_config_100samples_40.json", "default_config.json", "camera_parameters.json"):
        cfg = load_config(original(name))
        assert cfg.psf.vectorial is True and cfg.emitters.dipole == "isotropic"
        assert cfg.focus_depth_um == cfg.emitters.z_range_um


# ------------------------------------------------------------------------------------------ truth


def test_fixed_dipoles_are_uniform_on_the_sphere_and_stored_per_emitter_and_record() -> None:
    over = {"emitters": {"num_emitters": 20000, "dipole": "fixed", "frames": 4}}
    s = z2t.simulate(load_config(small_config(), overrides=over), seed=3)
    e, r = s.emitters, s.records
    polar, azimuth = e["dipole_polar_rad"], e["dipole_azimuth_rad"]
    assert polar.shape == (20000,) and np.all((polar >= 0) & (polar <= np.pi / 2 + 1e-6))
    assert np.all((azimuth >= 0) & (azimuth < 2 * np.pi + 1e-6))
    # uniform on the sphere, folded: |cos theta| ~ U(0, 1) (mean 1/2, s.d. 0.289: standard error 0.002 for
    # 20000 draws; tolerance 0.01 = 5 standard errors), azimuth ~ U(0, 2 pi); each quartile within 5 % of N/4
    # (s.d. of a quartile count: 61 = 0.3 % of N/4 ... 5 % is over 15 s.d.)
    cos_t = np.cos(polar)
    assert abs(cos_t.mean() - 0.5) < 0.01 and abs(azimuth.mean() - np.pi) < 0.02 * np.pi
    for values, edges in ((cos_t, np.linspace(0, 1, 5)), (azimuth, np.linspace(0, 2 * np.pi, 5))):
        counts = np.histogram(values, edges)[0]
        assert np.all(np.abs(counts - 5000) < 250), counts
    # records carry their emitter's angles and depth; the depth is focus_depth_um + z (float32 values)
    row = r.id.astype(np.int64)
    np.testing.assert_array_equal(r["dipole_polar_rad"], polar[row].astype(np.float32))
    np.testing.assert_array_equal(r.dipole_azimuth_rad, azimuth[row].astype(np.float32))  # also by attribute
    np.testing.assert_array_equal(e["depth_um"], (0.5 + e.xyz[:, 2]).astype(np.float32))
    np.testing.assert_array_equal(r["depth_um"], (0.5 + r.xyz[:, 2].astype(np.float64)).astype(np.float32))
    assert e["depth_um"].min() >= 0
    # the window the renderer reads carries the same angles
    win = s.truth.window(0, 4)
    np.testing.assert_array_equal(win.em_dipole[win.em, 0], polar[win.ids])


def test_dipole_angles_depend_on_the_seed_and_id_only_and_given_angles_win() -> None:
    cfg = load_config(small_config(), overrides={"emitters": {"dipole": "fixed"}}).emitters
    ids = np.arange(3 * DIPOLE_BLOCK + 17)
    polar, azimuth = dipole_angles(5, ids, cfg)
    sub = ids[[5, DIPOLE_BLOCK + 3, 3 * DIPOLE_BLOCK + 16]]  # any subset, any segmenting: the same values
    np.testing.assert_array_equal(dipole_angles(5, sub, cfg)[0], polar[sub])
    np.testing.assert_array_equal(dipole_angles(5, sub[::-1], cfg)[1], azimuth[sub[::-1]])
    assert not np.array_equal(dipole_angles(6, ids, cfg)[0], polar)
    given = dataclasses.replace(cfg, dipole_polar_deg=90.0, dipole_azimuth_deg=360.0)
    p, a = dipole_angles(5, ids[:10], given)
    assert np.all(p == np.float32(np.pi / 2)) and np.all(a == 0.0)
    np.testing.assert_allclose(dipole_vectors(p, a), np.tile([1.0, 0.0, 0.0], (10, 1)), atol=1e-7)
    v = dipole_vectors(polar, azimuth)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    assert np.all(v[:, 2] >= -1e-7)  # folded to the +z hemisphere


def test_isotropic_samples_store_depth_but_no_orientation() -> None:
    s = z2t.simulate(load_config(small_config()), seed=1)
    assert "depth_um" in s.emitters and "depth_um" in s.records
    assert "dipole_polar_rad" not in s.emitters and s.truth.window(0, 12).em_dipole is None


# ------------------------------------------------------------------------------------------ frames


def _single_emitter(tmp_path, **emitters) -> z2t.Sample:
    """One emitter at pixel (7, 7), z = 0, on in frames 0..1; no aberrations, no background, no noise."""
    h5 = tmp_path / "one.h5"
    write_emitters_h5(
        h5,
        emitters={"xyz": [[7.0, 7.0, 0.0]], "intensity": [1e4], "t0": [0.0], "on_time": [2.0], "id": [0]},
        records={"xyz": [[7.0, 7.0, 0.0]] * 2, "phot": [1e4, 1e4], "frame_ix": [0, 1], "id": [0, 0]},
        zernike_coeffs=None,
    )
    cfg = {
        "emitters": {"frames": 2, "z_range_um": 0.0, **emitters},
        "tiff": {"roi_size": 15},
        "zernike": {"synthetic_rms_rad": 0.0},
        "camera": {"model": "none"},
        "background": {"photons": 0.0},
    }
    return z2t.load_sample_h5(h5, cfg)


def test_a_z_dipole_in_focus_is_a_doughnut_and_an_isotropic_emitter_is_not(tmp_path) -> None:
    zdip = _single_emitter(tmp_path, dipole="fixed", dipole_polar_deg=0.0, dipole_azimuth_deg=0.0)
    assert zdip.emitters["dipole_polar_rad"].tolist() == [0.0]
    frame = zdip.compute(scheduler="sync")[0]
    ring = frame[5:10, 5:10].copy()
    ring[2, 2] = 0
    assert frame[7, 7] < 0.8 * ring.max(), (frame[7, 7], ring.max())  # dark centre, bright ring
    iso = _single_emitter(tmp_path).compute(scheduler="sync")[0]
    assert iso[7, 7] == iso.max()
    np.testing.assert_allclose(frame.sum(), iso.sum(), rtol=0.25)  # both are ~the emitter's photons


def test_fixed_dipole_frames_are_the_same_bytes_for_any_chunking_and_default_frames_are_vectorial() -> None:
    over = {"emitters": {"dipole": "fixed"}, "camera": {"model": "emccd"}}
    cfg = load_config(small_config(), overrides=over)
    ref = z2t.simulate(cfg, seed=9).compute(scheduler="sync")
    for kw in ({"chunk_frames": 5}, {"chunk_frames": 1, "tile_size": 8}):
        np.testing.assert_array_equal(z2t.simulate(cfg, seed=9, **kw).compute(scheduler="threads"), ref)
    iso = z2t.simulate(load_config(small_config()), seed=9)
    assert iso.psf_info["vectorial"] is True
    assert not np.array_equal(iso.compute(scheduler="sync"), ref)  # the orientations change the frames
    scalar = z2t.simulate(load_config(small_config(), overrides={"psf": {"vectorial": False}}), seed=9)
    assert scalar.psf_info["vectorial"] is False
    assert not np.array_equal(scalar.compute(scheduler="sync"), iso.compute(scheduler="sync"))


def test_the_fast_library_renders_fixed_dipoles_with_the_exact_model() -> None:
    from z2t_dask.physics.optics.psf_library import PSFLibrary

    cfg = load_config(small_config(), overrides={"emitters": {"dipole": "fixed"}})
    exact = exact_psf_model(cfg)
    k = exact.n_modes
    lib = PSFLibrary.from_field(
        exact, lambda x, y: (np.zeros((len(x), k)), None), (0, 4, 0, 4), (-0.05, 0.05), error_samples=0
    )
    dip = dipole_vectors(np.array([0.0, 1.0, 1.5]), np.array([0.0, 2.0, 4.0]))
    phase, z, d = np.zeros((3, k)), np.array([0.0, 0.02, -0.03]), np.array([0.1, -0.2, 0.3])
    got = lib.compute(phase, z, d, d, dipole=dip)
    np.testing.assert_array_equal(got, exact.compute(phase, z, d, d, dipole=dip))
    assert lib.__dict__["_counts"]["exact"] == 3
    assert not np.array_equal(got, lib.compute(phase, z, d, d))  # isotropic: the library's own PSFs


# ------------------------------------------------------------------------------------------ files


def test_depth_and_orientation_round_trip_through_emitters_h5_and_csv(tmp_path) -> None:
    over = {"emitters": {"dipole": "fixed"}, "output": {"write_csv": True}}
    s = z2t.simulate(load_config(small_config(), overrides=over), seed=4)
    folder = s.save(tmp_path / "sample_001")
    back = z2t.open_sample(folder)
    for table, ref in ((back.emitters, s.emitters), (back.records, s.records)):
        for key in ("depth_um", "dipole_polar_rad", "dipole_azimuth_rad"):
            assert table[key].dtype == np.float32
            np.testing.assert_array_equal(table[key], ref[key])
    with h5py.File(folder / "emitters.h5") as f:
        assert f["records/depth_um"].attrs["units"].startswith("um")
        assert f["emitters/dipole_polar_rad"].attrs["units"].startswith("rad")
    lines = (folder / "ground_truth.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[-3:] == ["depth_um", "dipole_polar_rad", "dipole_azimuth_rad"]
    first = dict(zip(header, lines[1].split(",")))
    assert np.float32(first["depth_um"]) == s.records["depth_um"][0]
    assert np.float32(first["dipole_polar_rad"]) == s.records["dipole_polar_rad"][0]
    # rendering the file again gives the same frames (the stored orientations are used)
    again = z2t.load_sample_h5(folder / "emitters.h5", seed=4)
    np.testing.assert_array_equal(again.compute(scheduler="sync"), s.compute(scheduler="sync"))


def test_isotropic_csv_has_depth_but_no_orientation(tmp_path) -> None:
    s = z2t.simulate(load_config(small_config(), overrides={"output": {"write_csv": True}}), seed=4)
    header = (s.save(tmp_path / "s") / "ground_truth.csv").read_text().splitlines()[0].split(",")
    assert header == ["frame", "id", "x_px", "y_px", "z_um", "photons", "inside", "depth_um"]


def test_emitters_below_the_coverslip_in_a_file_are_refused_naming_it(tmp_path, caplog) -> None:
    h5 = tmp_path / "deep.h5"
    write_emitters_h5(
        h5,
        emitters={
            "xyz": [[3.0, 3.0, -0.9], [5.0, 5.0, 0.2]],
            "intensity": [1e3, 1e3],
            "t0": [0.0, 0.0],
            "on_time": [1.0, 1.0],
            "id": [0, 1],
        },
        records={"xyz": [[3.0, 3.0, -0.9]], "phot": [1e3], "frame_ix": [0], "id": [0]},
        zernike_coeffs=None,
    )
    explicit = small_config(optical={"focus_depth_um": 0.5})
    with pytest.raises(FormatError, match=r"deep\.h5: dataset 'emitters/xyz' has 1 of 2 rows below the coverslip"):
        z2t.load_sample_h5(h5, explicit)
    # an automatic focus depth keeps the deepest emitter on the coverslip, and says so
    s = z2t.load_sample_h5(h5, small_config())
    assert s.config.optical.focus_depth_um == pytest.approx(0.9) and s.plan.psf.focus_depth_um == pytest.approx(0.9)
    assert s.emitters["depth_um"].min() == 0.0
    assert any("automatic optical.focus_depth_um" in r.message for r in caplog.records)


# ------------------------------------------------------------------------------------------ tools


def test_inspect_names_the_model_indices_and_focus_depth(tmp_path) -> None:
    from z2t_dask.tools.summary import format_summary, summarize
    from z2t_dask.tools.summary_text import optics_summary

    over = {"emitters": {"dipole": "fixed"}, "optical": {"use_default_config": False, "n_medium": 1.33}}
    folder = z2t.simulate(load_config(small_config(), overrides=over), seed=2).save(tmp_path / "v")
    info = summarize(folder)
    optics = info["optics"]
    assert optics == optics_summary(info["config"], None)  # the resolved focus depth is in the config's too
    assert optics["model"] == "vectorial" and optics["dipole"] == "fixed"
    assert optics["n_medium"] == 1.33 and optics["n_coverslip_design"] == 1.518
    assert optics["focus_depth_um"] == 0.5 and optics["focus_auto"] is True
    text = format_summary(info)
    assert "PSF: vectorial model, fixed dipoles" in text and "medium 1.33, coverslip 1.518" in text
    assert "focal plane 0.5 um above the coverslip (auto" in text
    scalar = z2t.simulate(load_config(small_config(), overrides={"psf": {"vectorial": False}}), seed=2)
    text = format_summary(summarize(scalar.save(tmp_path / "s") / "emitters.h5"))
    assert "PSF: scalar model, isotropic (freely rotating) emitters" in text


def test_the_psf_gallery_shows_scalar_and_vectorial_side_by_side() -> None:
    pytest.importorskip("matplotlib")
    from z2t_dask.engine.assembly import make_zmap
    from z2t_dask.tools.preview_zmap import focus_series, zmap_figure

    cfg = load_config(small_config())
    zmap = make_zmap(cfg)
    zs = [-0.3, 0.0, 0.3]
    series = focus_series(zmap, cfg, zs, compare_scalar=True)
    assert list(series) == ["vectorial", "scalar"] and all(v.shape == (3, 21, 21) for v in series.values())
    # the same emitters: similar photons, different shapes (the vectorial in-focus peak is lower at NA 1.4)
    np.testing.assert_allclose(series["vectorial"].sum((1, 2)), series["scalar"].sum((1, 2)), rtol=0.1)
    assert series["vectorial"][1].max() < series["scalar"][1].max()
    assert list(focus_series(zmap, cfg, zs)) == ["vectorial"]
    fig = zmap_figure(zmap, cfg, z_um=zs, compare_scalar=True, grid=8)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("vectorial, centre") for t in titles) == 3
    assert sum(t.startswith("scalar, centre") for t in titles) == 3
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.slow  # two full Zmap previews (~15 s), as test_preview.py's CLI Zmap preview
def test_cli_preview_compare_scalar_draws_a_taller_gallery(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from z2t_dask.tools.cli import main

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(small_config(zernike={"synthetic_shape": [300, 300]})))
    assert main(["preview", str(cfg), "-o", str(tmp_path / "one.png")]) == 0
    assert main(["preview", str(cfg), "-o", str(tmp_path / "two.png"), "--compare-scalar"]) == 0
    one, two = imread(str(tmp_path / "one.png")), imread(str(tmp_path / "two.png"))
    assert two.shape[1] == one.shape[1] and two.shape[0] > one.shape[0]  # one more row of PSFs
    folder = z2t.simulate(small_config(), seed=1).save(tmp_path / "s")
    assert main(["preview", str(folder), "-o", str(tmp_path / "f.png"), "--compare-scalar"]) == 2
    assert "applies to Zmap and config previews" in capsys.readouterr().err


def test_the_fast_library_stays_above_the_coverslip_in_a_mismatched_sample() -> None:
    # water at NA 1.4: the model depends on depth, so no library plane may lie below the coverslip
    over = {"optical": {"use_default_config": False, "n_medium": 1.33}, "camera": {"model": "none"}}
    fast = z2t.simulate(small_config(psf={"mode": "fast"}, **over), seed=1)
    assert fast.plan.psf.z_planes[0] == -0.5 == -fast.config.focus_depth_um
    exact = z2t.simulate(small_config(**over), seed=1).compute(scheduler="sync")
    got = fast.compute(scheduler="sync")
    assert fast.psf_info["error"]["max"] < 0.01 and np.abs(got - exact).sum() < 0.01 * exact.sum()
