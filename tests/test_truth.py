"""Ground truth drawn in time segments: the same distribution as one draw, the same frames as an
in-memory truth, streamed to emitters.h5 / CSV, and a bounded cache."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from scipy import stats

import z2t_dask as z2t
from z2t_dask.engine.assembly import aberration_field, make_zmap
from z2t_dask.io.emitters_h5 import write_emitters_h5_parts
from z2t_dask.physics.emitters import activation_window
from z2t_dask.physics.truth import SEGMENT_CACHE, TRUTH_SEGMENT_FRAMES, SegmentedTruth
from z2t_dask.testing import sample_from_arrays

#: Long enough for three segments (T = 2,100 > 2 x TRUTH_SEGMENT_FRAMES), tiny frames.
T_LONG = 2 * TRUTH_SEGMENT_FRAMES + 100


def long_config(model: str = "single", frames: int = T_LONG, num_emitters: int = 900, **emitters) -> dict:
    return {
        "tiff": {"roi_size": 24},
        "psf": {"patch_size": 9},
        "background": {"photons": 5.0},
        "emitters": {
            "frames": frames,
            "num_emitters": num_emitters,
            "model": model,
            "lifetime_avg": 2.0,
            "t_on": 1.5,
            "t_dark": 4.0,
            "t_bleach": 6.0,
            "z_range_um": 0.4,
            **emitters,
        },
    }


@pytest.mark.parametrize("model", ["single", "blinking"])
def test_segmented_truth_is_one_ordered_table(model):
    s = z2t.simulate(long_config(model), seed=5)
    truth = s.truth
    assert truth.n_segments == 3
    assert [seg.id0 for seg in truth.segments] == list(np.cumsum([0] + [g.n_emitters for g in truth.segments[:-1]]))
    e, r = s.emitters, s.records
    assert truth.n_emitters == len(e) == 900 and truth.n_records == len(r)
    np.testing.assert_array_equal(e.id, np.arange(900))
    key = r.id.astype(np.int64) * T_LONG + r.frame_ix
    assert np.all(np.diff(key) > 0)  # by emitter id, then frame; no duplicates
    assert r.frame_ix.min() >= 0 and r.frame_ix.max() < T_LONG
    np.testing.assert_array_equal(r.xyz, e.xyz[r.id].astype(np.float32))
    assert np.all(r.phot > 0) and np.all(r.phot <= e.intensity[r.id].astype(np.float32))
    # each segment's records lie within its announced frame span
    for seg in truth.segments:
        mine = (r.id >= seg.id0) & (r.id < seg.id0 + seg.n_emitters)
        assert mine.sum() == seg.n_records
        assert r.frame_ix[mine].min() == seg.first_frame and r.frame_ix[mine].max() == seg.last_frame
    # the per-emitter coefficients are those of the Zmap at each position, whatever the segment
    phase, _ = aberration_field(s.config)(e.xyz[:, :2])
    np.testing.assert_array_equal(s.zernike_phase, phase.astype(np.float32))


def test_segmented_activation_times_are_uniform_over_the_movie():
    """A multinomial split over the segments + uniform draws in each = uniform over the whole window."""
    cfg = z2t.load_config(long_config(frames=3 * TRUTH_SEGMENT_FRAMES + 500, num_emitters=20000))
    truth = SegmentedTruth(cfg, 11, aberration_field(cfg))
    assert truth.n_segments == 4
    lo, hi = activation_window(cfg.emitters)
    t0 = truth.materialize().emitters.t0
    assert stats.kstest(t0, stats.uniform(loc=lo, scale=hi - lo).cdf).pvalue > 1e-3
    counts = np.array([seg.n_emitters for seg in truth.segments])
    expected = 20000 * np.array([b - a for a, b in (seg.window for seg in truth.segments)]) / (hi - lo)
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # segment windows tile the activation window
    assert truth.segments[0].window[0] == lo and truth.segments[-1].window[1] == hi
    assert all(a.window[1] == b.window[0] for a, b in zip(truth.segments, truth.segments[1:]))


def test_segmented_truth_is_deterministic_and_seed_dependent():
    cfg = z2t.load_config(long_config())
    field = aberration_field(cfg, make_zmap(cfg))
    a, b, c = SegmentedTruth(cfg, 3, field), SegmentedTruth(cfg, 3, field), SegmentedTruth(cfg, 4, field)
    np.testing.assert_array_equal(a.materialize().emitters.xyz, b.materialize().emitters.xyz)
    np.testing.assert_array_equal(a.materialize().records.phot, b.materialize().records.phot)
    assert a.token() == b.token() != c.token()
    assert not np.array_equal(a.materialize().emitters.xyz[:50], c.materialize().emitters.xyz[:50])


@pytest.mark.slow
def test_segmented_frames_equal_frames_of_the_same_truth_in_memory():
    """Blocks drawing their records from segments (joined across segment borders) render exactly
    what an in-memory truth renders, for any frame chunking."""
    cfg = long_config(num_emitters=3000)
    s = z2t.simulate(cfg, seed=2, chunk_frames=32)
    part = s.truth.materialize()
    ref = sample_from_arrays(s.config, part.emitters, part.records, part.phase, part.mag, seed=2, chunk_frames=7)
    lazy = z2t.simulate(cfg, seed=2, chunk_frames=7)  # fresh truth: nothing materialised
    assert not lazy.truth.is_materialized
    a, b, c = s.compute(), ref.compute(), lazy.compute()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, b)
    assert a.shape == (T_LONG, 24, 24) and a.max() > a.min()
    # frames at a segment border hold emitters of both segments
    border = TRUTH_SEGMENT_FRAMES
    w = lazy.truth.window(border - 10, border + 10)
    seg_of = np.searchsorted([g.id0 for g in lazy.truth.segments], w.ids, side="right") - 1
    assert len(set(seg_of.tolist())) >= 2
    assert np.all(np.diff(w.frame_ix) >= 0)
    f = w.frame_ix
    assert all(np.all(np.diff(w.ids[f == k]) > 0) for k in np.unique(f))  # by frame, then id


def test_segment_cache_is_bounded_and_not_pickled():
    s = z2t.simulate(long_config(), seed=1)
    truth = s.truth
    s.frames.compute(scheduler="threads")
    assert 1 <= truth.cached_segments <= SEGMENT_CACHE
    largest = max(truth.segment(k).nbytes for k in range(truth.n_segments))
    assert truth.cached_bytes() <= SEGMENT_CACHE * largest
    clone = pickle.loads(pickle.dumps(truth))
    assert clone.cached_segments == 0 and not clone.is_materialized
    w0, w1 = truth.window(990, 1010), clone.window(990, 1010)
    for name in ("frame_ix", "ids", "phot", "em_xyz", "em_phase"):
        np.testing.assert_array_equal(getattr(w0, name), getattr(w1, name))


def test_long_sample_streams_its_truth_into_emitters_h5_and_csv(tmp_path):
    s = z2t.simulate({**long_config(), "output": {"write_csv": True}}, seed=9)
    out = s.save(tmp_path / "long", format="hdf5")
    assert not s.truth.is_materialized  # written segment by segment
    part = s.truth.materialize()
    with h5py.File(out / "emitters.h5", "r") as f:
        np.testing.assert_array_equal(f["emitters/xyz"][()], part.emitters.xyz.astype(np.float32))
        np.testing.assert_array_equal(f["emitters/id"][()], np.arange(s.truth.n_emitters))
        np.testing.assert_array_equal(f["records/id"][()], part.records.id)
        np.testing.assert_array_equal(f["records/frame_ix"][()], part.records.frame_ix)
        np.testing.assert_array_equal(f["records/phot"][()], part.records.phot)
        np.testing.assert_array_equal(f["records/inside"][()], part.records.inside)
        np.testing.assert_array_equal(f["zernike_coeffs/phase"][()], part.phase)
        assert f["zernike_coeffs/mag"].shape == part.phase.shape
    lines = (out / "ground_truth.csv").read_text().splitlines()
    assert len(lines) == s.truth.n_records + 1
    first_of_seg1 = s.truth.segments[1].id0
    assert any(line.split(",")[1] == str(first_of_seg1) for line in lines[1:])


def _part(n: int, m: int, id0: int = 0, k: int = 4):
    em = {
        "xyz": np.zeros((n, 3)),
        "intensity": np.ones(n),
        "t0": np.zeros(n),
        "on_time": np.ones(n),
        "id": np.arange(id0, id0 + n),
    }
    rec = {"xyz": np.zeros((m, 3)), "phot": np.ones(m), "frame_ix": np.arange(m), "id": np.full(m, id0)}
    return em, rec, {"phase": np.zeros((n, k)), "mag": np.zeros((n, k))}


def test_write_parts_checks_totals_and_columns_and_leaves_nothing(tmp_path):
    path = tmp_path / "e.h5"
    write_emitters_h5_parts(path, [_part(3, 2), _part(2, 4, id0=3)], n_emitters=5, n_records=6)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["emitters/id"][()], np.arange(5))
        np.testing.assert_array_equal(f["records/id"][()], [0, 0, 3, 3, 3, 3])
    bad = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="hold 5 emitters and 6 records, expected n_emitters=6"):
        write_emitters_h5_parts(bad, [_part(3, 2), _part(2, 4, id0=3)], n_emitters=6, n_records=6)
    with pytest.raises(ValueError, match="more than n_emitters=4"):
        write_emitters_h5_parts(bad, [_part(3, 2), _part(2, 4, id0=3)], n_emitters=4, n_records=6)
    em, rec, zc = _part(2, 1, id0=3)
    rec["inside"] = np.ones(1, bool)
    with pytest.raises(ValueError, match="part 1: records columns"):
        write_emitters_h5_parts(bad, [_part(3, 2), (em, rec, zc)], n_emitters=5, n_records=3)
    with pytest.raises(ValueError, match=r"records/id must be in \[0, 5\)"):
        write_emitters_h5_parts(bad, [_part(3, 2), _part(2, 4, id0=5)], n_emitters=5, n_records=6)
    assert not bad.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["e.h5"]


def test_segmented_sample_renders_the_same_in_other_processes():
    """Workers get the truth without its cache and draw the segments again: the same bytes."""
    s = z2t.simulate(long_config(frames=TRUTH_SEGMENT_FRAMES + 300, num_emitters=600), seed=8, chunk_frames=100)
    assert s.truth.n_segments == 2
    threads = s.frames.compute(scheduler="threads")
    procs = s.frames.compute(scheduler="processes", num_workers=2)
    np.testing.assert_array_equal(procs, threads)


def test_frames_no_segment_reaches_are_background_only():
    s = z2t.simulate({**long_config(num_emitters=3), "camera": {"model": "none"}}, seed=4, chunk_frames=50)
    truth = s.truth
    reached = np.zeros(T_LONG, bool)
    for seg in truth.segments:
        reached[max(seg.first_frame, 0) : seg.last_frame + 1] = True
    empty = np.flatnonzero(~reached)
    assert empty.size > 1000  # 3 emitters: most frames are reached by none
    w = truth.window(int(empty[0]), int(empty[0]) + 1)
    assert w.frame_ix.size == 0 and w.em_phase.shape == (0, truth.n_modes)
    frames = s.compute()
    np.testing.assert_array_equal(frames[empty], np.float32(5.0))  # background photons, no noise
    lit = np.unique(s.records.frame_ix)
    assert np.all(frames[lit].max(axis=(1, 2)) > 5.0)


@pytest.mark.cluster
def test_segmented_sample_written_by_cluster_workers_equals_local_render(tmp_path):
    """With a Client the workers draw the segments they render; the stored frames and the truth
    written by the client equal the local ones."""
    distributed = pytest.importorskip("distributed")
    from z2t_dask.io.zarr import read_ome_zarr

    s = z2t.simulate(long_config(frames=TRUTH_SEGMENT_FRAMES + 300, num_emitters=600), seed=6, chunk_frames=100)
    assert s.truth.n_segments == 2
    ref = s.frames.compute(scheduler="threads")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        ) as cluster,
        distributed.Client(cluster),
    ):
        out = s.save(tmp_path / "d", format="ome-zarr")
    np.testing.assert_array_equal(read_ome_zarr(out / "d.ome.zarr").compute(), ref)
    with h5py.File(out / "emitters.h5", "r") as f:
        np.testing.assert_array_equal(f["records/phot"][()], s.records.phot)
