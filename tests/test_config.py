"""Configuration: validation with key-path errors, translation of the original tool's files."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.config import ConfigError, LegacyKeyWarning, SimulationConfig, config_to_dict, load_config
from z2t_dask.engine.render import choose_chunks
from z2t_dask.errors import Z2TError


def problems(exc: ConfigError) -> dict[str, str]:
    return dict(exc.problems)


def test_builtin_default_loads_and_round_trips():
    cfg = load_config(None)
    assert isinstance(cfg, SimulationConfig)
    assert cfg.image_shape == (64, 64)
    assert cfg.zmap_path is None
    again = load_config(config_to_dict(cfg))
    assert config_to_dict(again) == config_to_dict(cfg)


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ConfigError) as ei:
        load_config({"emitters": {"num_emiters": 10}})
    p = problems(ei.value)
    assert "emitters.num_emiters" in p
    assert "did you mean 'num_emitters'" in p["emitters.num_emiters"]


def test_wrong_type_and_range_collected_together():
    with pytest.raises(ConfigError) as ei:
        load_config(
            {"emitters": {"frames": 0, "intensity_mu": "bright"}, "optical": {"NA": -1.0, "use_default_config": False}}
        )
    p = problems(ei.value)
    assert "must be >= 1" in p["emitters.frames"]
    assert "expected a number" in p["emitters.intensity_mu"]
    assert "must be > 0" in p["optical.NA"]


def test_semantic_checks():
    with pytest.raises(ConfigError) as ei:
        load_config({"psf": {"patch_size": 20}})
    assert "odd" in problems(ei.value)["psf.patch_size"]
    with pytest.raises(ConfigError) as ei:
        load_config({"optical": {"NA": 1.6, "use_default_config": False}})
    assert "n_immersion" in problems(ei.value)["optical.NA"]
    with pytest.raises(ConfigError) as ei:
        load_config({"optical": {"NA": 1.3}})  # explicit optics with use_default_config true
    assert "optical.use_default_config" in problems(ei.value)
    with pytest.raises(ConfigError) as ei:
        load_config({"tiff": {"use_direct_rendering": False}})
    assert "D8" in problems(ei.value)["tiff.use_direct_rendering"]
    with pytest.raises(ConfigError) as ei:
        load_config({"tiff": {"roi_size": 40}, "zernike": {"crop_size": 32}})
    assert "zernike.crop_size" in problems(ei.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        load_config(bad)


def test_yaml_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("emitters:\n  frames: 7\ntiff:\n  roi_size: 16\n")
    cfg = load_config(p)
    assert cfg.emitters.frames == 7 and cfg.image_shape == (16, 16)


def test_non_square_roi_and_offsets():
    cfg = load_config({"tiff": {"roi_width": 30, "roi_height": 20, "crop_offset": [5, 7]}})
    assert cfg.image_shape == (20, 30)
    assert cfg.crop_offset_xy == (5, 7)
    assert cfg.area_xy == (30.0, 20.0)


@pytest.mark.parametrize(
    "name,roi,noise", [("batch_config_100samples_40.json", 40, 58.8), ("batch_config_100samples_256.json", 256, 10.0)]
)
def test_original_batch_configs_load(original, name, roi, noise):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(original(name))
    raw = json.loads(original(name).read_text())["base_config"]
    assert cfg.image_shape == (roi, roi)
    assert cfg.camera.model == "original"  # the original float noise model
    assert cfg.tiff.noise_params.readout_noise == noise
    assert cfg.background.photons == raw["tiff"]["noise_params"]["background"]
    assert cfg.emitters.num_emitters == raw["emitters"]["num_emitters"]
    assert cfg.emitters.lifetime_avg == raw["emitters"]["lifetime_avg"]
    assert cfg.emitters.area_px == raw["emitters"]["area_px"]
    assert cfg.zmap_path == raw["zmap_path"]  # absolute path of the author's disk (checked when used)


def test_original_sample_config_is_rejected_not_silently_defaulted(original):
    # the original ran this file with defaults, ignoring its emitter keys (defect D23)
    with pytest.raises(ConfigError) as ei:
        load_config(original("sample_config.json"))
    p = problems(ei.value)
    assert "emitters.density_mu_sig" in p and "emitters.lifetime" in p


def test_original_camera_parameters(original):
    raw = json.loads(original("camera_parameters.json").read_text())
    cfg = load_config(original("camera_parameters.json"))
    c = cfg.camera
    assert c.model == "emccd"
    assert c.baseline == pytest.approx(raw["offset"])
    assert c.e_per_adu == pytest.approx(raw["A2D"])
    assert c.em_gain == raw["EMGain"]
    # read noise: variance in ADU^2 -> electrons
    assert c.read_noise_e == pytest.approx(raw["var"] ** 0.5 * raw["A2D"])
    assert (c.chip_height, c.chip_width) == (1200, 1200)
    assert cfg.optical.pixel_size_nm_x == raw["cam_pxszx"] and cfg.optical.pixel_size_nm_y == raw["cam_pxszy"]
    assert cfg.provenance["camera.cam_pth"] == raw["cam_pth"]


def test_camera_parameters_applied_over_a_pipeline_config(original):
    cfg = load_config(original("batch_config_100samples_40.json"), camera=original("camera_parameters.json"))
    assert cfg.image_shape == (40, 40)
    assert cfg.camera.model == "emccd" and cfg.camera.baseline == pytest.approx(99.7809, abs=1e-3)
    with pytest.raises(ConfigError) as ei:
        load_config({"tiff": {"roi_size": 100, "crop_offset": [1150, 0]}}, camera=original("camera_parameters.json"))
    assert "tiff.crop_offset" in problems(ei.value)


def test_original_default_config(original):
    with pytest.warns(LegacyKeyWarning, match="experiment"):
        cfg = load_config(original("default_config.json"))
    assert cfg.optical.wavelength_nm == 660 and cfg.optical.NA == 1.4 and cfg.optical.n_medium == 1.518
    assert cfg.camera.read_noise_e == 74.4 and cfg.camera.spurious_charge == 0.002
    assert cfg.camera.e_per_adu == pytest.approx(1.020784562122306)
    assert cfg.background.photons == 50  # autofluorescence_background
    assert (cfg.emitters.t_on, cfg.emitters.t_dark, cfg.emitters.t_bleach) == (3.0, 2.5, 1.5)
    assert cfg.psf.fixed_zernike == {4: 0.1, 5: 0.05, 6: 0.03}
    assert cfg.optical.ignore_fixed_psf_coeffs  # not applied unless asked, as the original
    assert "default_config.experiment.name" in cfg.provenance


def test_memory_optimization_section_maps_to_render():
    cfg = load_config({"memory_optimization": {"chunk_size": 10, "enable_gc": True, "gc_frequency": 5}})
    assert cfg.render.chunk_frames == 10 and cfg.render.gc_frequency == 5
    with pytest.raises(ConfigError) as ei:
        load_config({"memory_optimization": {"chunk_sise": 10}})
    assert "did you mean 'chunk_size'" in problems(ei.value)["memory_optimization.chunk_sise"]


def test_plot_requests_are_rejected_not_ignored():
    with pytest.raises(ConfigError) as ei:
        load_config({"emitters": {"no_plot": False}, "output": {"generate_plots": True}})
    p = problems(ei.value)
    assert "emitters.no_plot" in p and "output.generate_plots" in p


def test_add_noise_false_means_no_camera():
    cfg = load_config({"tiff": {"add_noise": False}})
    assert cfg.camera.model == "none"


def test_yaml_syntax_error_gives_line_and_column_not_unicode_string(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("tiff:\n  roi_size: 16\n  crop_offset: [0, 0\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert str(p) in msg and "YAML syntax error at line 4" in msg and "<unicode string>" not in msg


def test_roi_must_lie_on_the_synthetic_zmap():
    # the synthetic Zmap is the chip when no Zmap file is given: [x, y] offset + ROI inside synthetic_shape
    ok = load_config(
        {
            "tiff": {"roi_width": 30, "roi_height": 20, "crop_offset": [270, 280]},
            "zernike": {"synthetic_shape": [300, 300]},
        }
    )
    assert ok.crop_offset_xy == (270, 280)
    for offset, key in (([271, 0], "tiff.crop_offset"), ([0, 281], "tiff.crop_offset")):
        with pytest.raises(ConfigError) as ei:
            load_config(
                {
                    "tiff": {"roi_width": 30, "roi_height": 20, "crop_offset": offset},
                    "zernike": {"synthetic_shape": [300, 300]},
                }
            )
        assert key in problems(ei.value) and "300x300" in problems(ei.value)[key]
    # a Zmap file replaces the synthetic one: its own shape is checked when it is opened
    assert load_config(
        {"zmap_path": "elsewhere.h5", "tiff": {"roi_size": 64, "crop_offset": [5000, 0]}}
    ).crop_offset_xy == (5000, 0)


# ---------------------------------------------------------------------------------------------
# gaps the property tests found (issue 15): every bad leaf a ConfigError naming its key
# ---------------------------------------------------------------------------------------------


def test_num_plot_is_accepted_and_has_no_effect(original):
    # the original plotted zernike.num_plot emitters only when zernike.no_plot was false; no_plot must be true
    # here (as in the original batch files: num_plot 5, no_plot true), so any count >= 0 loads and changes nothing
    base = load_config({"tiff": {"roi_size": 16}})
    cfg = load_config({"tiff": {"roi_size": 16}, "zernike": {"num_plot": 3}})
    assert cfg.zernike.num_plot == 3 and cfg == dataclasses.replace(base, zernike=replace(base.zernike, num_plot=3))
    assert load_config(original("batch_config_100samples_40.json")).zernike.num_plot == 5
    with pytest.raises(ConfigError) as ei:
        load_config({"zernike": {"num_plot": -1}})
    assert list(problems(ei.value)) == ["zernike.num_plot"]
    with pytest.raises(ConfigError) as ei:
        load_config({"zernike": {"num_plot": 3, "no_plot": False}})
    assert list(problems(ei.value)) == ["zernike.no_plot"]


def test_integer_choices_take_integers_like_integer_keys():
    # output.zarr_format is 2 or 3: an integral float is that integer (as for every int key), stored as an int
    for value in (2, 2.0):
        cfg = load_config({"output": {"zarr_format": value}})
        assert cfg.output.zarr_format == 2 and type(cfg.output.zarr_format) is int
        assert type(config_to_dict(cfg)["output"]["zarr_format"]) is int
    assert load_config({"emitters": {"frames": 7.0}}).emitters.frames == 7
    for bad in (2.5, True, "2", 4):
        with pytest.raises(ConfigError) as ei:
            load_config({"output": {"zarr_format": bad}})
        assert list(problems(ei.value)) == ["output.zarr_format"]


def test_noise_params_keys_are_named_inside_the_section():
    with pytest.raises(ConfigError) as ei:
        load_config({"tiff": {"noise_params": {"background": -1.0, "readout_nosie": 5.0, "shot_noise": 1}}})
    p = problems(ei.value)
    assert set(p) == {"tiff.noise_params.background", "tiff.noise_params.readout_nosie", "tiff.noise_params.shot_noise"}
    assert "did you mean 'readout_noise'" in p["tiff.noise_params.readout_nosie"]
    assert "must be >= 0" in p["tiff.noise_params.background"]
    with pytest.raises(ConfigError) as ei:  # not a mapping: the section itself
        load_config({"tiff": {"noise_params": 5}})
    assert list(problems(ei.value)) == ["tiff.noise_params"]
    for value in (float("nan"), float("inf"), 10**400):
        with pytest.raises(ConfigError) as ei:
            load_config({"camera": {"model": "original"}, "tiff": {"noise_params": {"readout_noise": value}}})
        assert list(problems(ei.value)) == ["tiff.noise_params.readout_noise"]


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"emitters": {"intensity_mu": 10**400}}, "emitters.intensity_mu"),
        ({"emitters": {"intensity_mu": -(10**400)}}, "emitters.intensity_mu"),
        ({"optical": {"wavelength_nm": 10**400, "use_default_config": False}}, "optical.wavelength_nm"),
        ({"psf": {"fixed_zernike": {"5": 10**400}}}, "psf.fixed_zernike.5"),
        ({"psf": {"fixed_zernike": {"5": float("nan")}}}, "psf.fixed_zernike.5"),
        ({"psf": {"fixed_zernike": {5: float("-inf")}}}, "psf.fixed_zernike.5"),
        ({"psf": {"fixed_zernike": {True: 0.1}}}, "psf.fixed_zernike.True"),
        ({"psf": {"fixed_zernike": {5.0: 0.1}}}, "psf.fixed_zernike.5.0"),
        ({"emitters": {"area_px": float("inf")}}, "emitters.area_px"),
        ({"emitters": {"area_px": 10**400}}, "emitters.area_px"),
        ({"emitters": {"area_px": [64, float("nan")]}}, "emitters.area_px"),
        ({"emitters": {"area_px": [True, 64]}}, "emitters.area_px"),
        ({"camera": {"model": "scmos", "scmos_gain": -1.0}}, "camera.scmos_gain"),
        ({"camera": {"model": "scmos", "scmos_gain": 0}}, "camera.scmos_gain"),
        ({"camera": {"model": "scmos", "scmos_variance": -2.0}}, "camera.scmos_variance"),
        ({"camera": {"model": "scmos", "scmos_offset": float("nan")}}, "camera.scmos_offset"),
        ({"camera": {"model": "scmos", "scmos_offset": float("inf")}}, "camera.scmos_offset"),
        ({"camera": {"model": "scmos", "scmos_gain": 10**400}}, "camera.scmos_gain"),
        ({"camera": {"model": "emccd", "scmos_variance": float("nan")}}, "camera.scmos_variance"),
        ({"zernike": {"synthetic_shape": [True, 64]}}, "zernike.synthetic_shape"),
        ({"zernike": {"synthetic_shape": [64, 64.0]}}, "zernike.synthetic_shape"),
        ({"tiff": {"crop_offset": [0, False]}}, "tiff.crop_offset"),
        ({"emitters": {"seed": 2**64}}, "emitters.seed"),  # stored as a 64-bit integer
        ({"emitters": {"frames": 10**400}}, "emitters.frames"),
        ({"zernike": {"synthetic_shape": [64, 2**64]}}, "zernike.synthetic_shape"),
        ({"tiff": {"crop_offset": [2**64, 0]}}, "tiff.crop_offset"),
    ],
)
def test_bad_numbers_anywhere_name_their_key(doc, key):
    for kwargs in ({"source": doc}, {"source": None, "overrides": doc}):
        with pytest.raises(ConfigError) as ei:
            load_config(**kwargs)
        assert list(problems(ei.value)) == [key], kwargs
        assert f"\n  {key}: " in str(ei.value)


def test_64_bit_integers_load():
    for seed in (2**63 - 1, 2**63, 2**64 - 1, float(2**63)):  # signed or unsigned 64-bit
        assert load_config({"emitters": {"seed": seed}}).emitters.seed == seed


def test_scmos_numbers_in_range_and_map_paths_load():
    cfg = load_config({"camera": {"model": "scmos", "scmos_offset": -5, "scmos_variance": 0, "scmos_gain": 2}})
    assert (cfg.camera.scmos_offset, cfg.camera.scmos_variance, cfg.camera.scmos_gain) == (-5, 0, 2)
    cfg = load_config({"camera": {"model": "scmos", "scmos_gain": "gain.npy"}})  # the map is read when used
    assert cfg.camera.scmos_gain == "gain.npy"


def test_messages_about_huge_integers_do_not_fail():
    # Python refuses to write integers of more than 4300 digits as text: the message must still be made
    with pytest.raises(ConfigError) as ei:
        load_config({"emitters": {"frames": "x", "intensity_mu": 10**5000}, "tiff": {"roi_size": -(10**5000)}})
    p = problems(ei.value)
    assert set(p) == {"emitters.frames", "emitters.intensity_mu", "tiff.roi_size"}
    assert "digits" in p["emitters.intensity_mu"] and "digits" in p["tiff.roi_size"]
    with pytest.raises(ConfigError) as ei:
        load_config({"tiff": {"noise_params": [10**5000]}})
    assert list(problems(ei.value)) == ["tiff.noise_params"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_document_with_a_huge_integer_names_the_file(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    number = "1" * 5000
    path.write_text(
        f'{{"emitters": {{"frames": {number}}}}}' if suffix == ".json" else f"emitters:\n  frames: {number}\n"
    )
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert str(path) in msg and "4300 digits" in msg and len(msg.splitlines()) == 2
    assert "syntax error" not in msg  # the file is well formed


def test_add_noise_false_is_the_same_in_documents_and_overrides(original):
    # refused over a camera model other than 'none', with the same message wherever the keys come from
    msgs = []
    for kwargs in (
        {"source": {"tiff": {"add_noise": False}, "camera": {"model": "emccd"}}},
        {"source": None, "overrides": {"tiff": {"add_noise": False}}},  # the built-in default is EMCCD
        {"source": {"tiff": {"add_noise": False}}, "overrides": {"camera": {"model": "emccd"}}},
        {"source": {"camera": {"model": "emccd"}}, "overrides": {"tiff": {"add_noise": False}}},
    ):
        with pytest.raises(ConfigError) as ei:
            load_config(**kwargs)
        assert list(problems(ei.value)) == ["tiff.add_noise"], kwargs
        msgs.append(problems(ei.value)["tiff.add_noise"])
    assert len(set(msgs)) == 1 and "'emccd'" in msgs[0]
    # honoured where no camera model contradicts it: no camera ('none')
    for kwargs in (
        {"source": {"tiff": {"add_noise": False}}},
        {"source": {}, "overrides": {"tiff": {"add_noise": False}}},
        {"source": None, "overrides": {"tiff": {"add_noise": False}, "camera": {"model": "none"}}},
        {
            "source": {"tiff": {"add_noise": False}, "camera": {"model": "emccd"}},
            "overrides": {"camera": {"model": "none"}},
        },
        {"source": {"tiff": {"add_noise": False}, "camera": {"qe": 0.5}}},
    ):
        assert load_config(**kwargs).camera.model == "none", kwargs
    # a camera calibration file given beside it keeps 'none' (its values are kept, unused)
    assert load_config({"tiff": {"add_noise": False}}, camera=original("camera_parameters.json")).camera.model == "none"
    # a camera section that is not a mapping: named as such, no TypeError
    for kwargs in (
        {"source": {"tiff": {"add_noise": False}, "camera": "emccd"}},
        {"source": None, "overrides": {"tiff": {"add_noise": False}, "camera": "emccd"}},
    ):
        with pytest.raises(ConfigError) as ei:
            load_config(**kwargs)
        assert list(problems(ei.value)) == ["camera"]


def test_optics_in_overrides_count_as_in_the_document():
    with pytest.raises(ConfigError) as ei:
        load_config(None, overrides={"optical": {"NA": 1.3}})
    assert list(problems(ei.value)) == ["optical.use_default_config"] and "NA" in str(ei.value)
    assert load_config(None, overrides={"optical": {"NA": 1.3, "use_default_config": False}}).optical.NA == 1.3
    # an override setting use_default_config back to true over a document's own optics
    doc = {"optical": {"NA": 1.3, "use_default_config": False}}
    with pytest.raises(ConfigError) as ei:
        load_config(doc, overrides={"optical": {"use_default_config": True}})
    assert list(problems(ei.value)) == ["optical.use_default_config"]
    with pytest.raises(ConfigError):
        load_config({"optical": {"NA": 1.3, "use_default_config": True}})
    # an override that sets use_default_config false accepts the document's optics
    assert load_config({"optical": {"NA": 1.3}}, overrides={"optical": {"use_default_config": False}}).optical.NA == 1.3


@pytest.mark.parametrize(
    ("tiff", "keys"),
    [
        ({"roi_width": 100, "roi_height": 10}, ["tiff.roi_width"]),
        ({"roi_width": 10, "roi_height": 100}, ["tiff.roi_height"]),
        ({"roi_width": 100, "roi_height": 100}, ["tiff.roi_width", "tiff.roi_height"]),
        ({"roi_size": 100}, ["tiff.roi_size"]),
        ({"roi_size": 100, "roi_width": 100}, ["tiff.roi_width", "tiff.roi_size"]),
        ({"roi_width": 40, "roi_height": 40, "crop_offset": [20, 0]}, ["tiff.crop_offset"]),
    ],
)
def test_roi_beyond_the_synthetic_zmap_names_the_keys_given(tiff, keys):
    doc = {"tiff": {"roi_size": None, "crop_offset": [0, 0], **tiff}, "zernike": {"synthetic_shape": [50, 50]}}
    with pytest.raises(ConfigError) as ei:
        load_config(doc)
    assert list(problems(ei.value)) == keys
    assert all("50x50" in m for m in problems(ei.value).values())


@pytest.mark.parametrize("name", ["chunk_frames", "tile_size"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8"])
def test_simulate_refuses_bad_chunking_arguments(name, value):
    # 0 is refused, never taken as "not given" (that is None): a ConfigError naming the argument
    with pytest.raises(ConfigError) as ei:
        z2t.simulate({"tiff": {"roi_size": 16}, "emitters": {"frames": 3}}, **{name: value})
    assert list(problems(ei.value)) == [name]
    assert isinstance(ei.value, Z2TError) and isinstance(ei.value, ValueError)
    assert f"render.{name}" in str(ei.value)


def test_chunking_arguments_given_and_from_the_config():
    cfg = load_config({"tiff": {"roi_size": 16}, "emitters": {"frames": 5}, "render": {"chunk_frames": 2}})
    assert z2t.simulate(cfg).frames.chunksize == (2, 16, 16)
    assert z2t.simulate(cfg, chunk_frames=np.int64(3), tile_size=np.int32(8)).frames.chunksize == (3, 8, 8)
    with pytest.raises(ConfigError) as ei:  # the renderer's own check of a config value
        choose_chunks((16, 16), 5, 2, chunk_frames=0)
    assert list(problems(ei.value)) == ["render.chunk_frames"]


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"QE": 0.9, "A2D": 1.0, "max_adu": 10**400}, "camera_parameters.max_adu"),
        ({"QE": 0.9, "A2D": 1.0, "max_adu": True}, "camera_parameters.max_adu"),
        ({"QE": 0.9, "A2D": 1.0, "var": 10**400}, "camera_parameters.var"),
        ({"QE": 0.9, "A2D": 1.0, "var": float("nan")}, "camera_parameters.var"),
        ({"QE": 0.9, "A2D": "x", "var": 4}, "camera.e_per_adu"),
        ({"emitters": {"z_range": [-(10**400), 10**400]}}, "emitters.z_range"),
        ({"emitters": {"z_range": [False, False]}}, "emitters.z_range"),
        ({"emitters": {"xy_unit": 10**5000}}, "emitters.xy_unit"),
        ({"camera": {"model": "original"}, "background": {"photons": 10**400}}, "background.photons"),
    ],
)
def test_original_files_with_bad_numbers_name_their_key(doc, key):
    # the translation of the original tool's keys never fails on a value (huge, NaN, bool, text)
    with pytest.raises(ConfigError) as ei:
        load_config(doc)
    assert list(problems(ei.value)) == [key]


def test_original_files_with_good_numbers_translate():
    cfg = load_config({"QE": 0.9, "A2D": 2.0, "var": 4, "max_adu": 65535.0})
    assert cfg.camera.bit_depth == 16 and cfg.camera.read_noise_e == 4.0
    assert load_config({"emitters": {"z_range": [-750, 750.0]}}).emitters.z_range_um == 0.75
