"""Emitter sampling, photophysics and frame binning."""

from __future__ import annotations

import numpy as np
import pytest

from z2t_dask.config import load_config
from z2t_dask.physics.emitters import bin_intervals, inside_image, make_records, sample_emitters


def draw(cfg_dict, seed=0):
    cfg = load_config(cfg_dict)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    table, iv = sample_emitters(cfg.emitters, rng, area_xy=cfg.area_xy)
    rec = make_records(table, iv, cfg.emitters.frames, cfg.image_shape)
    return cfg, table, iv, rec


def test_overlap_binning_exact():
    # one interval [1.25, 3.5): frames 1 (0.75), 2 (1.0), 3 (0.5); another [4.9, 5.0): 0.1 in frame 4
    em, k, frac = bin_intervals(np.array([0, 1]), np.array([1.25, 4.9]), np.array([3.5, 5.0]), 10)
    assert em.tolist() == [0, 0, 0, 1] and k.tolist() == [1, 2, 3, 4]
    assert np.allclose(frac, [0.75, 1.0, 0.5, 0.1])
    # several intervals of one emitter inside one frame are summed; outside the movie dropped
    em, k, frac = bin_intervals(np.array([0, 0, 0]), np.array([2.1, 2.6, -5.0]), np.array([2.3, 2.7, -1.0]), 4)
    assert em.tolist() == [0] and k.tolist() == [2] and np.allclose(frac, [0.3])


def test_original_40x40_density_and_record_layout():
    # the original 40x40 config: 5000 emitters, tau 1, 200 frames -> ~48.5 records per frame (measured)
    cfg, table, iv, rec = draw(
        {
            "emitters": {
                "num_emitters": 5000,
                "frames": 200,
                "area_px": 40.0,
                "intensity_mu": 7000.0,
                "intensity_sigma": 3000.0,
                "lifetime_avg": 1,
                "z_range_um": 0.8,
            },
            "tiff": {"roi_size": 40},
        }
    )
    per_frame = len(rec) / 200
    assert 45 < per_frame < 52
    # records ordered by emitter id then frame, frames in range
    key = rec.id * 1000 + rec.frame_ix
    assert np.all(np.diff(key) > 0)
    assert rec.frame_ix.min() >= 0 and rec.frame_ix.max() <= 199
    # photons = intensity x overlap, per emitter sum = intensity x on-time inside the movie
    clipped = np.clip(iv[2], 0, 200) - np.clip(iv[1], 0, 200)
    per_emitter = np.bincount(rec.id, weights=rec.phot, minlength=5000)
    assert np.allclose(per_emitter, table.intensity * clipped, rtol=1e-6)
    # all positions inside [0, 40): no margin in the original model
    assert table.xyz[:, :2].min() >= 0 and table.xyz[:, :2].max() < 40
    assert np.all(np.abs(table.xyz[:, 2]) <= 0.8)
    # no invisible labelled emitters (the original clamped ~1 % to 1e-8 photons)
    assert table.intensity.min() >= 1.0


def test_margin_emitters_flagged_outside():
    cfg, table, iv, rec = draw(
        {"emitters": {"num_emitters": 3000, "frames": 5, "margin_px": 4.0}, "tiff": {"roi_width": 30, "roi_height": 10}}
    )
    x, y = table.xyz[:, 0], table.xyz[:, 1]
    assert x.min() < -0.5 and x.max() > 29.5 and y.min() < -0.5 and y.max() > 9.5
    assert x.min() >= -4 and x.max() < 34 and y.min() >= -4 and y.max() < 14
    expect = (rec.xyz[:, 0] >= -0.5) & (rec.xyz[:, 0] < 29.5) & (rec.xyz[:, 1] >= -0.5) & (rec.xyz[:, 1] < 9.5)
    assert np.array_equal(rec.inside, expect)
    assert rec.inside.any() and not rec.inside.all()


def test_blinking_statistics():
    t_on, t_dark, t_bleach = 2.0, 5.0, 8.0
    cfg, table, iv, rec = draw(
        {
            "emitters": {
                "num_emitters": 4000,
                "frames": 400,
                "model": "blinking",
                "t_on": t_on,
                "t_dark": t_dark,
                "t_bleach": t_bleach,
            }
        }
    )
    idx, start, end = iv
    on = end - start
    # on periods: exponential with rate 1/t_on + 1/t_bleach
    assert on.mean() == pytest.approx(1 / (1 / t_on + 1 / t_bleach), rel=0.05)
    # blinks per emitter: geometric with bleach probability per on-period p = (1/t_bleach) / (1/t_on + 1/t_bleach)
    p = (1 / t_bleach) / (1 / t_on + 1 / t_bleach)
    counts = np.bincount(idx, minlength=4000)
    # emitters activated early enough to finish all their blinks inside the movie
    early = (table.t0 > 0) & (table.t0 < 200)
    assert counts[early].mean() == pytest.approx(1 / p, rel=0.08)
    # sub-frame integration: per-emitter photons equal intensity x total on time inside the movie
    inside_on = np.bincount(idx, weights=np.clip(end, 0, 400) - np.clip(start, 0, 400), minlength=4000)
    per_emitter = np.bincount(rec.id, weights=rec.phot, minlength=4000)
    assert np.allclose(per_emitter, table.intensity * inside_on, rtol=1e-6)
    assert np.all(rec.phot <= table.intensity[rec.id] * (1 + 1e-9))
    # steady-state start: the first frames are not under-populated
    counts_per_frame = rec.per_frame_counts(400)
    assert counts_per_frame[:20].mean() == pytest.approx(counts_per_frame[150:250].mean(), rel=0.25)


def test_same_seed_same_emitters_different_seed_different():
    a = draw({"emitters": {"num_emitters": 100, "frames": 20}}, seed=3)
    b = draw({"emitters": {"num_emitters": 100, "frames": 20}}, seed=3)
    c = draw({"emitters": {"num_emitters": 100, "frames": 20}}, seed=4)
    assert np.array_equal(a[1].xyz, b[1].xyz) and np.array_equal(a[3].phot, b[3].phot)
    assert not np.array_equal(a[1].xyz, c[1].xyz)


def test_inside_image_convention():
    pts = np.array([[-0.5, 0.0], [-0.51, 0.0], [9.49, 4.49], [9.5, 0.0]])
    assert inside_image(pts, (5, 10)).tolist() == [True, False, True, False]
