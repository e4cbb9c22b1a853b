"""Detection channels and dye species: config parsing, registration maps, truth columns, ratio statistics."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.errors import ConfigError
from z2t_dask.physics.channels import SPECIES_BLOCK, SpeciesTable, affine_matrix, apply_affine, dirichlet_concentration

TWO = [
    {"name": "green", "wavelength_nm": 520.0},
    {"name": "red", "wavelength_nm": 680.0, "efficiency": 0.8, "transform": {"shift_px": [2.5, -1.0]}},
]
SPECIES = [
    {"name": "A", "fraction": 0.6, "ratio": [0.3, 0.7], "ratio_spread": 0.1},
    {"name": "B", "fraction": 0.4, "ratio": [0.6, 0.4], "ratio_spread": 0.05},
]


def two_colour(**over) -> dict:
    cfg = small_config(**over)
    cfg["channels"] = copy.deepcopy(TWO)
    cfg["emitters"]["species"] = copy.deepcopy(SPECIES)
    return cfg


def problems(doc: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        z2t.load_config(doc)
    return dict(err.value.problems)


# ---- config ---------------------------------------------------------------------------------------


def test_config_without_channels_is_single_channel_and_round_trips():
    cfg = z2t.load_config(small_config())
    assert cfg.channels == [] and cfg.emitters.species == [] and cfg.channels_layout == "stack"
    two = z2t.load_config(two_colour())
    assert [c.name for c in two.channels] == ["green", "red"]
    assert two.channels[1].efficiency == 0.8 and two.channels[1].transform.shift_px == [2.5, -1.0]
    # defaults resolved: wavelength, background, synthetic seed (+ index), chip offset beside the previous channel
    assert two.channels[0].synthetic_seed == 0 and two.channels[1].synthetic_seed == 1
    assert two.channels[0].crop_offset == [100, 50] and two.channels[1].crop_offset == [124, 50]
    assert two.channels[0].background == two.background.photons
    assert z2t.load_config(two) == two  # the resolved config validates to itself (files, batch jobs)
    assert z2t.load_config(two.to_dict()) == two


def test_default_species_splits_equally():
    doc = two_colour()
    del doc["emitters"]["species"]
    cfg = z2t.load_config(doc)
    assert len(cfg.emitters.species) == 1 and cfg.emitters.species[0].ratio == [0.5, 0.5]


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d["channels"][1]["transform"].update(rotation_deg="x"), "channels[1].transform.rotation_deg"),
        (lambda d: d["channels"][1]["transform"].update(shift_px=[1]), "channels[1].transform.shift_px"),
        (lambda d: d["channels"][0].update(efficiency=1.5), "channels[0].efficiency"),
        (lambda d: d["channels"][1].update(name="green"), "channels[1].name"),
        (lambda d: d["channels"][1].update(colour="red"), "channels[1].colour"),
        (lambda d: d["channels"][1]["transform"].update(affine=[[1, 0, 0], [2, 0, 0]]), "channels[1].transform.affine"),
        (lambda d: d["channels"][0].update(fixed_zernike={"99": 0.1}), "channels[0].fixed_zernike.99"),
        (lambda d: d["channels"][0].update(camera={"qe": 2}), "channels[0].camera.qe"),
        (lambda d: d["emitters"]["species"][0].update(ratio=[0.5, 0.6]), "emitters.species[0].ratio"),
        (lambda d: d["emitters"]["species"][0].update(ratio=[1.0]), "emitters.species[0].ratio"),
        (lambda d: d["emitters"]["species"][0].update(ratio_spread=0.5), "emitters.species[0].ratio_spread"),
        (lambda d: d["emitters"]["species"][1].update(fraction=0.9), "emitters.species"),
        (lambda d: d["emitters"]["species"][0].update(brightness=0), "emitters.species[0].brightness"),
        (lambda d: d["channels"][1].update(z_offset_um=-2.0), "channels[1].z_offset_um"),
        (lambda d: d.update(channels=[TWO[0]]), "channels"),
        (lambda d: d.update(channels_layout="side"), "channels_layout"),
        (lambda d: d["channels"][1].update(crop_offset=[110, 50]), "channels[1].crop_offset"),
    ],
)
def test_bad_channel_keys_are_named(edit, key):
    doc = two_colour()
    doc["channels_layout"] = "split-view"
    edit(doc)
    found = problems(doc)
    assert key in found, found


def test_species_or_split_view_without_channels_refused():
    doc = small_config()
    doc["emitters"]["species"] = SPECIES
    assert "emitters.species" in problems(doc)
    assert "channels_layout" in problems({**small_config(), "channels_layout": "split-view"})


def test_channel_beyond_the_synthetic_zmap_is_named_at_simulate():
    doc = two_colour()
    doc["channels"][1]["crop_offset"] = [290, 50]  # the synthetic Zmap is 300 x 300 px
    with pytest.raises(ConfigError) as err:
        z2t.simulate(doc, seed=1)
    assert "channels[1].crop_offset" in dict(err.value.problems)


# ---- registration ---------------------------------------------------------------------------------


def test_affine_from_shift_rotation_scale():
    a = affine_matrix(shift_px=[1.0, -2.0], rotation_deg=90.0, scale=2.0, image_shape=(11, 21))
    c = np.array([10.0, 5.0])  # the image centre ((W-1)/2, (H-1)/2) is a fixed point of R and scale
    assert np.allclose(apply_affine(a, c), c + [1.0, -2.0])
    # +x turns into +y (x towards y), doubled
    assert np.allclose(apply_affine(a, c + [1.0, 0.0]) - apply_affine(a, c), [0.0, 2.0])
    full = [[1.0, 0.1, 3.0], [0.0, 1.0, -4.0]]
    assert np.allclose(apply_affine(affine_matrix(affine=full), np.array([2.0, 5.0])), [2.0 + 0.5 + 3.0, 1.0])


# ---- truth ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return z2t.simulate(two_colour(emitters={"num_emitters": 300}), seed=4)


def test_truth_columns_and_photon_conservation(sample):
    e, r = sample.emitters, sample.records
    n, m = len(e), len(r)
    assert e["species"].shape == (n,) and set(np.unique(e["species"])) <= {0, 1}
    assert e["ratio"].shape == (n, 2) and r["phot_ch"].shape == (m, 2)
    assert r["xy_ch"].shape == (m, 2, 2) and r["inside_ch"].shape == (m, 2)
    assert np.all(e["ratio"] >= 0) and np.allclose(e["ratio"].sum(1), 1.0, atol=1e-6)
    # per record: photons per channel / efficiency sum to the record's photons (float32 rounding)
    eff = np.array([1.0, 0.8])
    back = (r["phot_ch"].astype(np.float64) / eff).sum(1)
    assert np.allclose(back, r.phot, rtol=2e-7, atol=0)
    assert np.array_equal(r["phot_ch"][:, 0], (r.phot.astype(np.float64) * e["ratio"][r.id, 0]).astype(np.float32))
    # positions: channel 0 identity, channel 1 shifted by (2.5, -1.0) px; inside per channel
    assert np.array_equal(r["xy_ch"][:, 0], r.xyz[:, :2])
    assert np.allclose(r["xy_ch"][:, 1], r.xyz[:, :2] + [2.5, -1.0], atol=1e-5)
    h, w = sample.config.image_shape
    x1, y1 = r["xy_ch"][:, 1, 0], r["xy_ch"][:, 1, 1]
    assert np.array_equal(r["inside_ch"][:, 1], (x1 >= -0.5) & (x1 < w - 0.5) & (y1 >= -0.5) & (y1 < h - 0.5))
    assert r["inside_ch"][:, 0].sum() != r["inside_ch"][:, 1].sum()  # the shift moves some records out
    # the reference truth is the single-channel one: same emitters, records and aberrations
    single = z2t.simulate(small_config(emitters={"num_emitters": 300}), seed=4)
    assert np.array_equal(single.emitters.xyz, e.xyz) and np.array_equal(single.records.phot, r.phot)
    assert np.array_equal(single.zernike_phase, sample.zernike_phase)


def test_species_depend_on_id_only_not_on_segments():
    sp = [{"fraction": s["fraction"], "ratio": s["ratio"], "spread": s["ratio_spread"]} for s in SPECIES]
    table = SpeciesTable(9, [s["fraction"] for s in sp], [s["ratio"] for s in sp], [s["spread"] for s in sp])
    ids = np.array([5, SPECIES_BLOCK + 3, 17, 3 * SPECIES_BLOCK])
    s_all, r_all = table.lookup(ids)
    again = SpeciesTable(9, [0.6, 0.4], [[0.3, 0.7], [0.6, 0.4]], [0.1, 0.05])  # a fresh cache
    for i, id_ in enumerate(ids):
        s1, r1 = again.lookup(np.array([id_]))
        assert s1[0] == s_all[i] and np.array_equal(r1[0], r_all[i])
    other = SpeciesTable(10, [0.6, 0.4], [[0.3, 0.7], [0.6, 0.4]], [0.1, 0.05])
    assert not np.array_equal(other.lookup(ids)[1], r_all)


def test_ratio_distribution_matches_mean_and_spread():
    """Per species over 10 blocks (40,960 ids): fractions within 5 standard errors, mean share within
    5 standard errors (s/sqrt(n)), s.d. within 4 %, and the first share Beta(κ m0, κ m1)-distributed
    (Kolmogorov-Smirnov p > 0.001; fixed seed, so deterministic)."""
    from scipy import stats

    fractions, means, spreads = [0.6, 0.4], [[0.3, 0.7], [0.6, 0.4]], [0.1, 0.05]
    table = SpeciesTable(123, fractions, means, spreads)
    species, ratio = table.lookup(np.arange(10 * SPECIES_BLOCK))
    n_total = species.size
    for s, (f, m, spread) in enumerate(zip(fractions, means, spreads)):
        sel = species == s
        n = int(sel.sum())
        assert abs(n / n_total - f) < 5 * math.sqrt(f * (1 - f) / n_total)
        r0 = ratio[sel, 0].astype(np.float64)
        assert abs(r0.mean() - m[0]) < 5 * spread / math.sqrt(n)
        assert abs(r0.std() / spread - 1) < 0.04
        kappa = dirichlet_concentration(m, spread)
        assert stats.kstest(r0, stats.beta(kappa * m[0], kappa * m[1]).cdf).pvalue > 1e-3


def test_three_channel_dirichlet_rms_spread_and_zero_share():
    table = SpeciesTable(5, [1.0], [[0.2, 0.3, 0.5]], [0.08])
    _, r = table.lookup(np.arange(8 * SPECIES_BLOCK))
    r = r.astype(np.float64)
    assert np.allclose(r.mean(0), [0.2, 0.3, 0.5], atol=5 * 0.08 / math.sqrt(r.shape[0]) * 2)
    assert abs(math.sqrt(np.mean(r.var(0))) / 0.08 - 1) < 0.04  # RMS over channels of the s.d.
    zero = SpeciesTable(5, [1.0], [[0.0, 0.4, 0.6]], [0.1])
    _, rz = zero.lookup(np.arange(SPECIES_BLOCK))
    assert np.all(rz[:, 0] == 0) and np.allclose(rz.sum(1), 1, atol=1e-6)
    fixed = SpeciesTable(5, [1.0], [[0.25, 0.75]], [0.0])
    assert np.all(fixed.lookup(np.arange(100))[1] == np.float32([0.25, 0.75]))


def test_channel_config_keeps_the_focal_plane_and_shifts_it_by_the_offset():
    from z2t_dask.engine.channels import channel_config

    doc = two_colour(psf={"mode": "fast"})
    doc["channels"][1]["z_offset_um"] = 0.15
    cfg = z2t.load_config(doc)
    ref = cfg.focus_depth_um  # automatic: emitters.z_range_um
    a, b = channel_config(cfg, 0), channel_config(cfg, 1)
    assert a.focus_depth_um == ref and abs(b.focus_depth_um - (ref + 0.15)) < 1e-12
    # the fast library of channel b spans its z (z - 0.15) and its shifted positions
    assert b.emitters.z_range_um >= cfg.emitters.z_range_um + 0.15 and b.emitters.margin_px >= 2.0 + 2.5
    assert b.optical.wavelength_nm == 680.0 and b.channels == [] and b.emitters.species == []
