"""Configs cannot change after loading: validation and simulation return new configs, never edit the caller's."""

from __future__ import annotations

import copy
import dataclasses
import typing

import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.config import ConfigError, NoiseParams, SimulationConfig, config_to_dict, load_config

_HINTS = typing.get_type_hints(SimulationConfig)
SECTIONS = [f.name for f in dataclasses.fields(SimulationConfig) if dataclasses.is_dataclass(_HINTS[f.name])]


def snapshot(cfg: SimulationConfig) -> tuple[dict, dict[str, int], SimulationConfig]:
    """What must not change: the plain data, the identity of each section, and a deep copy."""
    return config_to_dict(cfg), {name: id(getattr(cfg, name)) for name in SECTIONS}, copy.deepcopy(cfg)


def assert_unchanged(cfg: SimulationConfig, before: tuple[dict, dict[str, int], SimulationConfig]) -> None:
    data, ids, deep = before
    assert config_to_dict(cfg) == data
    assert {name: id(getattr(cfg, name)) for name in SECTIONS} == ids
    assert cfg == deep


def test_every_section_is_named():
    assert sorted(SECTIONS) == sorted(
        ["emitters", "zernike", "tiff", "optical", "psf", "camera", "background", "render", "output"]
    )


def test_assigning_to_a_loaded_config_raises():
    cfg = load_config(small_config())
    before = snapshot(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.zmap_path = "elsewhere.h5"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.emitters.frames = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.tiff.noise_params = None  # type: ignore[misc]
    for name in SECTIONS:  # every section is frozen, not only the two above
        section = getattr(cfg, name)
        field = dataclasses.fields(section)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, field, getattr(section, field))
    assert_unchanged(cfg, before)


def test_load_config_of_a_config_is_an_equal_new_object():
    cfg = load_config(small_config())
    before = snapshot(cfg)
    again = load_config(cfg)
    assert again == cfg and again is not cfg
    assert config_to_dict(again) == config_to_dict(cfg)
    assert all(getattr(again, name) is not getattr(cfg, name) for name in SECTIONS)
    assert_unchanged(cfg, before)
    # overrides give a changed copy and leave the source alone
    more = load_config(cfg, overrides={"emitters": {"frames": 30}})
    assert more.emitters.frames == 30 and cfg.emitters.frames == 12
    assert_unchanged(cfg, before)


def test_load_config_does_not_change_the_mapping_it_is_given():
    data = small_config(
        tiff={"roi_size": None, "roi_width": 24, "roi_height": 24},
        zernike={"crop_offset": [100, 50]},
        psf={"fixed_zernike": {"4": 0.1}},
    )
    frozen = copy.deepcopy(data)
    cfg = load_config(data)
    assert data == frozen
    assert cfg.tiff.roi_size == 24 and cfg.psf.fixed_zernike == {4: 0.1}


def test_simulate_with_a_zmap_path_leaves_the_callers_config_unchanged(original):
    zmap = original("result_phase_retrieval.h5")
    cfg = load_config(small_config(emitters={"frames": 3, "num_emitters": 5}))
    assert cfg.zmap_path is None
    before = snapshot(cfg)
    s = z2t.simulate(cfg, seed=1, zmap=str(zmap))
    assert_unchanged(cfg, before)
    assert cfg.zmap_path is None
    assert s.config.zmap_path == str(zmap)  # the sample's own config carries the override
    assert config_to_dict(s.config) == {**before[0], "zmap_path": str(zmap)}


def test_load_sample_h5_with_more_frames_leaves_the_callers_config_unchanged(tmp_path):
    z2t.simulate(small_config(), seed=3).save(tmp_path / "s")  # 12 frames
    cfg = load_config(small_config(emitters={"frames": 4}))
    before = snapshot(cfg)
    s = z2t.load_sample_h5(tmp_path / "s" / "emitters.h5", cfg)
    assert s.frames.shape[0] > cfg.emitters.frames == 4  # the file's frames win ...
    assert s.config.emitters.frames == s.frames.shape[0]  # ... in the sample's own config
    assert_unchanged(cfg, before)


def test_original_noise_model_takes_its_background_from_noise_params(original):
    cfg = load_config(original("batch_config_100samples_40.json"))
    assert cfg.camera.model == "original"
    assert cfg.background.photons == cfg.tiff.noise_params.background == 100.0
    # given explicitly (the model named, noise_params present): the noise model's background wins
    cfg = load_config(
        {"camera": {"model": "original"}, "tiff": {"noise_params": {"background": 12}}, "background": {"photons": 7}}
    )
    assert cfg.background.photons == 12.0 and cfg.tiff.noise_params.background == 12.0
    # the model named without noise_params: their defaults
    cfg = load_config({"camera": {"model": "original"}})
    assert cfg.tiff.noise_params == NoiseParams()
    assert cfg.background.photons == NoiseParams().background
    # named by an override, after the translation of the file
    cfg = load_config(
        {"tiff": {"noise_params": {"background": 33}}, "camera": {"model": "emccd"}},
        overrides={"camera": {"model": "original"}},
    )
    assert cfg.background.photons == 33.0
    # another camera model keeps background.photons
    cfg = load_config(
        {"tiff": {"noise_params": {"background": 33}}, "camera": {"model": "emccd"}, "background": {"photons": 4}}
    )
    assert cfg.background.photons == 4.0


def test_original_noise_model_bad_values_are_reported_once_under_their_own_key():
    with pytest.raises(ConfigError) as ei:
        load_config({"camera": {"model": "original"}, "tiff": {"noise_params": {"background": -12}}})
    assert [k for k, _ in ei.value.problems] == ["tiff.noise_params.background"]  # not also background.photons
    with pytest.raises(ConfigError) as ei:
        load_config({"camera": {"model": "original"}, "background": {"photons": "dim"}})
    assert [k for k, _ in ei.value.problems] == ["background.photons"]
