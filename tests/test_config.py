"""Configuration: validation with key-path errors, translation of the original tool's files."""

from __future__ import annotations

import json
import warnings

import pytest

from z2t_dask.config import ConfigError, LegacyKeyWarning, SimulationConfig, config_to_dict, load_config


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
