"""The lazy frame graph against an eager oracle (as dask-image tests against scipy).

The oracle is :mod:`z2t_dask.testing`'s naive renderer: the same exact physics written the
straightforward way (one float64 PSF per record, rebuilt from scratch, added in a Python loop).
With a noise-free camera the frames are the expected photons, so every chunking and tiling of
the graph must give the oracle's frames.

Tolerance: the graph computes PSFs in single precision (complex64 FFTs over a 128² window, float32
patches; photons summed in float64, stored float32), the oracle in double precision. A float32 FFT
of n points is accurate to about eps32·log2(n) ≈ 1.2e-7 · 14 ≈ 2e-6 of its peak, so pixels may
differ by ``2e-6 × the brightest pixel`` (measured: ≤ 3e-7) and no more; a misplaced patch,
a lost tile edge or a record rendered twice or not at all is off by percents of a PSF.
"""

from __future__ import annotations

import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.testing import (
    NaiveOptics,
    emitter_table,
    naive_expected_photons,
    naive_frames,
    sample_from_arrays,
    tiny_config,
)

T, SIDE, TILE, BACKGROUND = 7, 40, 16, 20.0
#: Relative to the brightest pixel: float32 PSFs (see the module docstring).
REL_TOL = 2e-6


def oracle_config(camera: dict):
    # the naive oracle implements the scalar pupil model (the vectorial one: tests/test_psf_vectorial.py)
    return tiny_config(
        tiff={"roi_width": SIDE, "roi_height": SIDE},
        emitters={"frames": T},
        camera=camera,
        background={"photons": BACKGROUND},
        psf={"vectorial": False},
    )


def border_emitters() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Emitters on and near the 16 px tile borders (pixel edges and centres), on tile corners, just
    outside the image (they light its edge) and elsewhere; on-intervals that start and end inside
    frames and cross the frame chunks. Returns xyz (px, px, µm), intensity (photons / frame), t0 and
    on_time (frames)."""
    b = TILE - 0.5  # the border between pixel 15 and 16
    xyz = np.array(
        [
            [b, 8.0, 0.0],
            [TILE, 20.3, 0.3],
            [20.2, b, -0.2],
            [2 * TILE - 0.5, 2 * TILE - 0.5, 0.1],
            [b, b, 0.0],
            [2 * TILE + 0.4, 5.6, -0.4],
            [31.7, 26.0, 0.45],
            [8.0, 2 * TILE, 0.2],
            [-1.5, 20.0, 0.0],
            [SIDE + 1.0, 39.6, -0.1],
            [24.0, -2.0, 0.25],
            [3.3, 35.9, -0.3],
        ]
    )
    rng = np.random.default_rng(11)
    n = len(xyz)
    intensity = rng.uniform(1000.0, 5000.0, n)
    t0 = rng.uniform(-1.0, T - 1.0, n)
    on_time = rng.uniform(0.4, 3.5, n)
    t0[:3], on_time[:3] = 0.0, float(T)  # three on throughout
    return xyz, intensity, t0, on_time


@pytest.fixture(scope="module")
def truth():
    """Arrays of the ground truth and the oracle's expected photons of it."""
    cfg = oracle_config({"model": "none"})
    xyz, intensity, t0, on_time = border_emitters()
    table = emitter_table(xyz, intensity, t0=t0, on_time=on_time)
    rng = np.random.default_rng(5)
    k = cfg.psf.n_modes
    phase = rng.normal(0.0, 0.15, (len(table), k))
    mag = np.zeros((len(table), k))
    mag[:4, 3:8] = rng.normal(0.0, 0.1, (4, 5))  # a few emitters with pupil amplitude
    sample = sample_from_arrays(cfg, table, phase=phase, mag=mag, seed=3)
    return {
        "table": table,
        "phase": phase,
        "mag": mag,
        "expected": naive_expected_photons(sample),
        "records": sample.records,
    }


def assert_close_to_oracle(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=REL_TOL * expected.max())


def test_oracle_is_not_trivial(truth):
    """Every frame gets records, light reaches every tile, photons outside the image are lost."""
    e, rec = truth["expected"], truth["records"]
    assert set(rec.frame_ix.tolist()) == set(range(T)) and len(rec) >= 3 * T
    signal = e - BACKGROUND
    assert signal.min() >= -1e-9 and signal.max() > 50.0
    for ty in range(0, SIDE, TILE):
        for tx in range(0, SIDE, TILE):
            assert signal[:, ty : ty + TILE, tx : tx + TILE].sum() > 100.0, (ty, tx)
    # an emitter in the image loses some light past the 15 px patch; one outside loses most
    assert signal.sum() < float(rec.phot.sum())
    assert signal[:, :, 0].sum() > 0.0 and signal[:, :, -1].sum() > 0.0


@pytest.mark.parametrize("camera", [{"model": "none"}, {"model": "ideal", "poisson": False}], ids=["none", "ideal"])
def test_lazy_frames_equal_the_naive_oracle_for_every_chunking_and_tiling(truth, camera):
    """psf.mode = exact: chunk_frames 1, 3 (uneven last chunk), all; whole frames and 16 px tiles."""
    cfg = oracle_config(camera)
    assert cfg.psf.mode == "exact"
    first = None
    for chunk in (1, 3, T):
        for tile in (TILE, None):
            s = sample_from_arrays(
                cfg, truth["table"], phase=truth["phase"], mag=truth["mag"], seed=3, chunk_frames=chunk, tile_size=tile
            )
            assert s.frames.chunks[0][0] == chunk
            assert len(s.frames.chunks[1]) == (3 if tile else 1) == len(s.frames.chunks[2])
            got = s.frames.compute(scheduler="threads")
            assert_close_to_oracle(got, truth["expected"])
            if first is None:
                first = got
            assert np.array_equal(got, first), (chunk, tile)  # and the chunking never changes a bit


def test_simulated_sample_equals_the_naive_oracle():
    """A drawn truth (synthetic Zmap aberrations, random positions in and around the image)."""
    s = z2t.simulate(tiny_config(camera={"model": "none"}, psf={"vectorial": False}), seed=8, chunk_frames=4)
    assert len(s.records) > 10
    assert_close_to_oracle(s.compute(), naive_expected_photons(s))


def test_naive_frames_places_one_patch_where_the_graph_does():
    """A single in-focus record on a pixel centre: the oracle's patch sits centred on that pixel."""
    cfg = oracle_config({"model": "none"})
    s = sample_from_arrays(cfg, emitter_table([[12.0, 30.0, 0.0]], 1000.0, on_time=float(T)))
    o = NaiveOptics.from_model(s.plan.psf)
    out = naive_frames(
        o,
        (SIDE, SIDE),
        1,
        np.array([0]),
        np.array([0]),
        np.array([1000.0]),
        np.array([[12.0, 30.0, 0.0]]),
        np.zeros((1, cfg.psf.n_modes)),
    )
    assert np.unravel_index(out[0].argmax(), out[0].shape) == (30, 12)  # row = y, column = x
    assert 0.8 * 1000 < out.sum() < 1000
    assert_close_to_oracle(s.frames[:1].compute(), out + BACKGROUND)
