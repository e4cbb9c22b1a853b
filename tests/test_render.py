"""The lazy frame stack: determinism across chunkings and schedulers, every frame, photon bookkeeping."""

from __future__ import annotations

import hashlib

import dask
import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.engine.render import PURPOSE_NOISE, stream


def one_emitter_sample(c, x, y, z=0.0, phot=1000.0):
    """A sample with a single emitter on in every frame at (x, y, z)."""
    from z2t_dask.physics.emitters import EmitterTable, make_records
    from z2t_dask.testing import sample_from_arrays

    T = c.emitters.frames
    table = EmitterTable(
        xyz=np.array([[x, y, z]]),
        intensity=np.array([phot]),
        t0=np.array([0.0]),
        on_time=np.array([float(T)]),
        id=np.array([0]),
    )
    rec = make_records(table, (np.array([0]), np.array([0.0]), np.array([float(T)])), T, c.image_shape)
    phase = np.zeros((1, c.psf.n_modes))
    return sample_from_arrays(c, table, rec, phase, seed=0)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def cfg():
    return z2t.load_config(small_config())


def test_frames_are_lazy_dask_array_chunked_along_frames(cfg):
    s = z2t.simulate(cfg, seed=5, chunk_frames=5)
    assert isinstance(s.frames, dask.array.Array)
    assert s.frames.shape == (12, 20, 24) and s.frames.dtype == np.uint16
    assert s.frames.chunks[0] == (5, 5, 2) and s.frames.chunks[1:] == ((20,), (24,))


def test_same_bytes_for_any_chunking_and_scheduler(cfg):
    ref = z2t.simulate(cfg, seed=11, chunk_frames=12).frames.compute(scheduler="sync")
    for chunk in (1, 7, 12):
        for scheduler in ("sync", "threads"):
            got = z2t.simulate(cfg, seed=11, chunk_frames=chunk).frames.compute(scheduler=scheduler)
            assert digest(got) == digest(ref), (chunk, scheduler)
    # a single frame computed alone equals that frame in the stack
    s = z2t.simulate(cfg, seed=11, chunk_frames=7)
    assert np.array_equal(s.frames[8].compute(), ref[8])
    # a different seed gives different data
    other = z2t.simulate(cfg, seed=12, chunk_frames=7).frames.compute()
    assert not np.array_equal(other, ref)


def test_same_bytes_on_processes_scheduler(cfg):
    ref = z2t.simulate(cfg, seed=2, chunk_frames=12).frames.compute(scheduler="sync")
    got = z2t.simulate(cfg, seed=2, chunk_frames=3).frames.compute(scheduler="processes", num_workers=2)
    assert digest(got) == digest(ref)


def test_every_frame_present_when_most_are_empty():
    c = z2t.load_config(
        small_config(
            emitters={"num_emitters": 2, "frames": 50, "lifetime_avg": 0.5},
            camera={"model": "none"},
            background={"photons": 0.0},
        )
    )
    s = z2t.simulate(c, seed=3, chunk_frames=8)
    frames = s.frames.compute()
    assert frames.shape[0] == 50
    on = set(s.records.frame_ix.tolist())
    assert len(on) < 10
    for t in range(50):
        lit = frames[t].sum() > 0
        assert lit == (t in on and s.records.phot[s.records.frame_ix == t].sum() > 0 and frames[t].sum() > 0), t
    assert all(frames[t].sum() == 0 for t in range(50) if t not in on)


def test_noise_free_frame_equals_sum_of_psfs_and_conserves_photons():
    # one in-focus emitter in the middle of a big image: collected photons ~ phot (PSF integrates to 1)
    c = z2t.load_config(
        {
            "emitters": {
                "num_emitters": 1,
                "frames": 3,
                "z_range_um": 0.0,
                "intensity_sigma": 0.0,
                "intensity_mu": 1000.0,
                "lifetime_avg": 50.0,
                "area_px": [1.0, 1.0],
            },
            "tiff": {"roi_size": 65, "crop_offset": [0, 0]},
            "psf": {"patch_size": 61},
            "camera": {"model": "none"},
            "background": {"photons": 0.0},
            "zernike": {"synthetic_rms_rad": 0.0},
        }
    )
    s = one_emitter_sample(c, 32.3, 31.8)
    frames = s.frames.compute()
    for t, phot in zip(s.records.frame_ix, s.records.phot):
        # PSF integrates to 1 over the plane: a 61-px patch holds all but the Airy tails (~1.3 %)
        assert 0.975 * phot < frames[t].sum() <= phot
        yy, xx = np.mgrid[:65, :65]
        cx = (frames[t] * xx).sum() / frames[t].sum()
        cy = (frames[t] * yy).sum() / frames[t].sum()
        assert cx == pytest.approx(32.3, abs=0.02) and cy == pytest.approx(31.8, abs=0.02)


def test_edge_emitter_lights_the_image_edge():
    c = z2t.load_config(
        {
            "emitters": {
                "num_emitters": 1,
                "frames": 2,
                "z_range_um": 0.0,
                "intensity_sigma": 0.0,
                "intensity_mu": 5000.0,
                "lifetime_avg": 50.0,
            },
            "tiff": {"roi_size": 16},
            "psf": {"patch_size": 21},
            "camera": {"model": "none"},
            "background": {"photons": 0.0},
        }
    )
    s = one_emitter_sample(c, -1.5, 8.0, phot=5000.0)  # 1.5 px left of pixel 0's centre
    f = s.frames.compute()
    t = int(s.records.frame_ix[0])
    assert f[t][:, 0].sum() > 0.02 * s.records.phot[0]  # edge column is lit
    assert f[t][:, 0].sum() > f[t][:, 3].sum()


def test_noise_streams_are_per_frame_and_independent():
    a = stream(1, PURPOSE_NOISE, 5).random(4)
    b = stream(1, PURPOSE_NOISE, 5).random(4)
    c = stream(1, PURPOSE_NOISE, 6).random(4)
    d = stream(2, PURPOSE_NOISE, 4).random(4)  # no (seed + t) collisions
    e = stream(1, PURPOSE_NOISE, 5 + 1 - 1).random(4)
    assert np.array_equal(a, b) and np.array_equal(a, e)
    assert not np.array_equal(a, c) and not np.array_equal(c, d)


def test_camera_change_does_not_move_the_ground_truth(cfg):
    a = z2t.simulate(cfg, seed=4)
    b = z2t.simulate(z2t.load_config(small_config(camera={"model": "ideal"})), seed=4)
    assert np.array_equal(a.records.xyz, b.records.xyz) and np.array_equal(a.records.phot, b.records.phot)


def test_scmos_maps_from_npy_are_cropped_to_the_roi(tmp_path):
    # chip-sized maps; the ROI at crop_offset [x=5, y=3] must see the matching window
    H, W = 40, 50
    offset = np.full((H, W), 100.0, np.float32)
    offset[3 : 3 + 8, 5 : 5 + 10] = 300.0  # exactly the ROI window
    np.save(tmp_path / "offset.npy", offset)
    np.save(tmp_path / "variance.npy", np.full((H, W), 1e-6, np.float32))
    np.save(tmp_path / "gain.npy", np.full((H, W), 2.0, np.float32))
    c = z2t.load_config(
        {
            "emitters": {"num_emitters": 0, "frames": 2},
            "tiff": {"roi_width": 10, "roi_height": 8, "crop_offset": [5, 3]},
            "camera": {
                "model": "scmos",
                "qe": 1.0,
                "scmos_offset": str(tmp_path / "offset.npy"),
                "scmos_variance": str(tmp_path / "variance.npy"),
                "scmos_gain": str(tmp_path / "gain.npy"),
            },
            "background": {"photons": 0.0},
        }
    )
    f = z2t.simulate(c, seed=0).frames.compute()
    assert f.shape == (2, 8, 10) and np.all(f == 300)
    c2 = z2t.load_config(
        {
            **z2t.config.config_to_dict(c),
            "camera": {**z2t.config.config_to_dict(c)["camera"], "scmos_offset": str(tmp_path / "missing.npy")},
        }
    )
    with pytest.raises(FileNotFoundError, match="scmos_offset"):
        z2t.simulate(c2, seed=0)


def test_a_frame_that_fails_midway_leaves_no_stale_scratch():
    """The per-thread float64 scratch of large regions is dropped when a frame fails half-summed.

    Run on the NumPy definition of the patch sums (the one that can fail midway: compiled loops
    refuse ill-typed input before they start).
    """
    import threading

    from z2t_dask.compiled import numpy_only
    from z2t_dask.engine import patch_sums
    from z2t_dask.engine import render as R

    rng = np.random.default_rng(3)
    n, ps = 4, 9
    region = (0, 300, 0, 300)  # > SMALL_REGION_PX: summed patch by patch into the scratch
    assert 300 * 300 > patch_sums.SMALL_REGION_PX

    def prep(phot):
        return R._SignalPrep(
            region=region,
            psfs=rng.random((n, ps, ps)).astype(np.float32),
            inv=np.arange(n),
            cx=np.array([20, 24, 150, 290]),
            cy=np.array([30, 33, 150, 10]),
            phot=phot,
            bounds=np.array([0, n]),
        )

    bad = prep(np.array([100.0, 200.0, "not photons", 50.0], dtype=object))
    with numpy_only(), pytest.raises(ValueError):
        R._frame_signal(bad, 0, np.empty((300, 300), np.float32))
    good = prep(np.array([100.0, 200.0, 300.0, 50.0], np.float32))
    here = R._frame_signal(good, 0, np.empty((300, 300), np.float32), np.float32(7.0))
    fresh = {}
    t = threading.Thread(
        target=lambda: fresh.setdefault(
            "v", R._frame_signal(good, 0, np.empty((300, 300), np.float32), np.float32(7.0))
        )
    )
    t.start()
    t.join()
    assert np.array_equal(here, fresh["v"])  # a new thread starts from a new scratch
    expected = np.full((300, 300), 0.0)
    for r in range(n):
        cy, cx = good.cy[r], good.cx[r]
        y0, x0 = cy - ps // 2, cx - ps // 2
        ys, xs = slice(max(y0, 0), min(y0 + ps, 300)), slice(max(x0, 0), min(x0 + ps, 300))
        expected[ys, xs] += good.psfs[r, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] * np.float64(
            good.phot[r]
        )
    assert np.array_equal(here, (expected.astype(np.float32) + np.float32(7.0)))
