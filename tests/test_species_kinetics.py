"""Per-species photophysics overrides (``emitters.species[i].t_on / t_dark / t_bleach / lifetime_avg``):
config errors, per-species rates, unchanged bytes without overrides, chunk- and segment-independent bytes."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.errors import ConfigError
from z2t_dask.physics.emitters import activation_window, on_intervals
from z2t_dask.physics.species import species_kinetics
from z2t_dask.physics.truth import TRUTH_SEGMENT_FRAMES

TWO = [{"name": "green"}, {"name": "red", "transform": {"shift_px": [1.5, -0.5]}}]


def two_colour(species: list[dict], **over) -> dict:
    doc = small_config(**over)
    doc["channels"] = copy.deepcopy(TWO)
    doc["emitters"]["species"] = copy.deepcopy(species)
    return doc


def blinking_species(a: dict | None = None, b: dict | None = None) -> list[dict]:
    return [
        {"name": "A", "fraction": 0.5, "ratio": [0.3, 0.7], **(a or {})},
        {"name": "B", "fraction": 0.5, "ratio": [0.7, 0.3], **(b or {})},
    ]


def digest(s) -> str:
    h = hashlib.sha256(np.ascontiguousarray(s.frames.compute(scheduler="sync")).tobytes())
    for col in (s.records.phot, s.records.frame_ix, s.emitters.on_time, s.emitters.t0):
        h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


# ---- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, edit, key, words",
    [
        ("blinking", {"t_on": 0}, "emitters.species[1].t_on", "must be > 0"),
        ("blinking", {"t_bleach": -2.0}, "emitters.species[1].t_bleach", "must be > 0"),
        ("blinking", {"t_dark": "x"}, "emitters.species[1].t_dark", ""),
        ("blinking", {"t_dark": float("inf")}, "emitters.species[1].t_dark", "expected float"),
        ("blinking", {"lifetime_avg": 2.0}, "emitters.species[1].lifetime_avg", "single"),
        ("single", {"t_on": 2.0}, "emitters.species[1].t_on", "blinking"),
    ],
)
def test_bad_kinetics_overrides_are_named(model, edit, key, words):
    doc = two_colour(blinking_species(b=edit), emitters={"model": model})
    with pytest.raises(ConfigError) as err:
        z2t.load_config(doc)
    found = dict(err.value.problems)
    assert key in found and words in found[key], found


def test_overrides_resolve_per_species_and_widen_the_activation_window():
    cfg = z2t.load_config(
        two_colour(blinking_species(b={"t_on": 1.0, "t_bleach": 40.0}), emitters={"model": "blinking"})
    )
    assert cfg.emitters.species[0].t_on is None and cfg.emitters.species[1].t_bleach == 40.0
    subs = species_kinetics(cfg.emitters)
    assert subs is not None
    assert (subs[0].t_on, subs[0].t_bleach) == (cfg.emitters.t_on, cfg.emitters.t_bleach)
    assert (subs[1].t_on, subs[1].t_dark, subs[1].t_bleach) == (1.0, cfg.emitters.t_dark, 40.0)
    # pad = 3 activation-to-bleach lifetimes of the longest-lived species: (mean_on + t_dark) / p_bleach - t_dark
    mean_on, p_bleach = 1.0 / (1.0 + 1.0 / 40.0), (1.0 / 40.0) / (1.0 + 1.0 / 40.0)
    pad = 3.0 * ((mean_on + cfg.emitters.t_dark) / p_bleach - cfg.emitters.t_dark)
    lo, hi = activation_window(cfg.emitters)
    assert lo == pytest.approx(-pad) and hi == pytest.approx(cfg.emitters.frames - 1 + pad)
    # overrides equal to the section's values change nothing: the scalar path
    same = two_colour(blinking_species(a={"t_on": 3.0}), emitters={"model": "blinking"})
    assert species_kinetics(z2t.load_config(same).emitters) is None


# ---- rates ----------------------------------------------------------------------------------------


def test_blinking_rates_per_species_match_the_overrides():
    """n = 20,000 emitters per species, activated in [0, 1) of a 10^7-frame movie (no truncation).

    Per species: mean on-interval = 1 / (1/t_on + 1/t_bleach) (Exp, s.e. = mean / sqrt(m)), mean number of
    on-intervals (blinks) per emitter = 1 / p_bleach with p_bleach = t_on / (t_on + t_bleach) (geometric,
    s.d. sqrt(1 - p) / p), mean dark gap = t_dark (Exp), total on-time per emitter = t_bleach (Exp); each
    within 5 standard errors (fixed seed, so deterministic).
    """
    doc = two_colour(
        blinking_species(a={"t_on": 1.0, "t_bleach": 4.0}, b={"t_on": 5.0, "t_dark": 8.0, "t_bleach": 20.0}),
        emitters={"model": "blinking", "frames": 10**7, "t_on": 3.0, "t_dark": 2.0, "t_bleach": 15.0},
    )
    cfg = z2t.load_config(doc).emitters
    n = 20_000
    species = np.repeat(np.array([0, 1], np.int16), n)
    idx, start, end = on_intervals(cfg, np.random.default_rng(7), 2 * n, window=(0.0, 1.0), species=species)
    for s, (t_on, t_dark, t_bleach) in enumerate([(1.0, 2.0, 4.0), (5.0, 8.0, 20.0)]):
        mine = species[idx] == s
        dur = (end - start)[mine]
        mean_on = 1.0 / (1.0 / t_on + 1.0 / t_bleach)
        assert abs(dur.mean() - mean_on) < 5 * mean_on / np.sqrt(dur.size)
        p = t_on / (t_on + t_bleach)  # bleach rate / (dark + bleach rate)
        blinks = np.bincount(idx[mine] - s * n, minlength=n)
        assert abs(blinks.mean() - 1 / p) < 5 * np.sqrt(1 - p) / p / np.sqrt(n)
        total = np.bincount(idx[mine] - s * n, weights=dur, minlength=n)
        assert abs(total.mean() - t_bleach) < 5 * t_bleach / np.sqrt(n)
        same = np.diff(idx[mine]) == 0  # consecutive intervals of one emitter: the dark gap between them
        gaps = (start[mine][1:] - end[mine][:-1])[same]
        assert abs(gaps.mean() - t_dark) < 5 * t_dark / np.sqrt(gaps.size)
    # the species really differ: both blink 1 / p = 5 times on average, but B's on-intervals are 5x longer
    assert (end - start)[species[idx] == 1].mean() > 3 * (end - start)[species[idx] == 0].mean()


def test_single_model_lifetime_per_species_in_the_simulated_truth():
    """The simulated truth draws each emitter's on-time with the lifetime of its own species (the
    ``emitters/species`` column): per species the mean on-time is within 5 s.e. of lifetime_avg."""
    sp = blinking_species(a={"lifetime_avg": 1.0}, b={"lifetime_avg": 8.0})
    s = z2t.simulate(two_colour(sp, emitters={"num_emitters": 6000}), seed=3)
    e = s.emitters
    for k, tau in enumerate([1.0, 8.0]):
        on = e.on_time[e["species"] == k]
        assert on.size > 2500 and abs(on.mean() - tau) < 5 * tau / np.sqrt(on.size)


# ---- bytes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["single", "blinking"])
def test_no_override_gives_the_bytes_of_no_species_kinetics(model):
    """Species without kinetics overrides (or with overrides equal to the section's values) give the
    same frames and truth as before overrides existed; a real override changes only the photophysics."""
    over = {"emitters": {"model": model, "num_emitters": 80}}
    plain = z2t.simulate(two_colour(blinking_species(), **over), seed=9)
    key = "lifetime_avg" if model == "single" else "t_on"
    value = 2.0 if model == "single" else 3.0  # the section's values (small_config; EmittersConfig default)
    assert getattr(plain.config.emitters, key) == value
    equal = z2t.simulate(two_colour(blinking_species(b={key: value}), **over), seed=9)
    assert digest(equal) == digest(plain)
    changed = z2t.simulate(two_colour(blinking_species(b={key: 4 * value}), **over), seed=9)
    np.testing.assert_array_equal(changed.emitters.xyz, plain.emitters.xyz)
    np.testing.assert_array_equal(changed.emitters.intensity, plain.emitters.intensity)
    assert not np.array_equal(changed.emitters.on_time, plain.emitters.on_time)
    np.testing.assert_array_equal(changed.emitters["species"], plain.emitters["species"])


def test_long_sample_bytes_independent_of_chunking_and_segments():
    """A 1600-frame blinking sample (two truth segments) with per-species kinetics: whole-movie chunks
    and 333-frame chunks (crossing the segment border) give the same bytes; every segment draws its
    emitters with their own species' rates (species looked up by id, not by the row in the segment)."""
    sp = blinking_species(a={"t_on": 1.0, "t_bleach": 3.0}, b={"t_on": 6.0, "t_bleach": 30.0})
    d = two_colour(
        sp,
        emitters={"frames": TRUTH_SEGMENT_FRAMES + 600, "num_emitters": 40, "model": "blinking"},
        tiff={"roi_width": 10, "roi_height": 8},
    )
    s = z2t.simulate(d, seed=6, chunk_frames=TRUTH_SEGMENT_FRAMES + 600)
    assert len(s.truth.base.segments) == 2
    ref = s.frames.compute(scheduler="sync")
    got = z2t.simulate(d, seed=6, chunk_frames=333).frames.compute(scheduler="threads")
    np.testing.assert_array_equal(got, ref)
    assert ref.max() > ref.min()
    # truth only (no frames): many emitters, per species and per segment the mean total on-time ~ t_bleach
    big = z2t.simulate({**d, "emitters": {**d["emitters"], "num_emitters": 12000}}, seed=6)
    e, segs = big.emitters, big.truth.base.segments
    assert len(segs) == 2
    for seg in segs:
        ids = np.arange(seg.id0, seg.id0 + seg.n_emitters)
        ids = ids[e.t0[ids] < d["emitters"]["frames"] - 300]  # emitters that bleach before the movie ends
        for k, t_bleach in enumerate([3.0, 30.0]):
            on = e.on_time[ids[e["species"][ids] == k]]
            assert on.size > 300 and abs(on.mean() - t_bleach) < 5 * t_bleach / np.sqrt(on.size)
