"""Tiled frames: byte identity with whole frames, border emitters, automatic chunking, ordered assembly."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import tifffile

import z2t_dask as z2t
from z2t_dask.engine.render import NOISE_BLOCK, choose_chunks, frames_array
from z2t_dask.engine.streaming import iter_frame_blocks
from z2t_dask.physics.emitters import EmitterTable, make_records
from z2t_dask.testing import sample_from_arrays

H, W, T = 600, 560, 5


def corner_sample(
    camera: dict, tile: int = 128, background: float = 50.0, n_random: int = 60, aberration_rad: float = 0.2
):
    """Random emitters plus emitters exactly on tile corners (pixel edge and pixel centre) and outside the edge."""
    c = z2t.load_config(
        {
            "tiff": {"roi_width": W, "roi_height": H},
            "emitters": {"frames": T},
            "psf": {"patch_size": 21},
            "camera": camera,
            "background": {"photons": background},
        }
    )
    rng = np.random.default_rng(0)
    special = np.array(
        [
            [tile - 0.5, tile - 0.5, 0.0],  # on the corner of 4 tiles (pixel edges)
            [float(2 * tile), float(tile), 0.2],  # on a corner, at a pixel centre
            [float(NOISE_BLOCK), float(NOISE_BLOCK) - 0.5, -0.3],  # on the noise-grid corner
            [-2.0, 150.0, 0.0],
            [W + 1.5, H + 1.0, 0.0],
        ]
    )  # outside: lights the edge
    rand = np.column_stack(
        [rng.uniform(-5, W + 5, n_random), rng.uniform(-5, H + 5, n_random), rng.uniform(-0.5, 0.5, n_random)]
    )
    xyz = np.vstack([special, rand])
    n = len(xyz)
    table = EmitterTable(
        xyz=xyz, intensity=np.full(n, 4000.0), t0=rng.uniform(-1, T, n), on_time=rng.uniform(1, 4, n), id=np.arange(n)
    )
    table.t0[: len(special)] = 0.0
    table.on_time[: len(special)] = float(T)
    records = make_records(table, (np.arange(n), table.t0, table.t0 + table.on_time), T, c.image_shape)
    phase = np.random.default_rng(1).normal(0, aberration_rad, (n, c.psf.n_modes))
    return sample_from_arrays(c, table, records, phase, seed=7)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize(
    ("camera", "tilings"),
    [({"model": "emccd"}, ((128, 1), (512, 2), (100, 3), (75, 4))), ({"model": "original"}, ((100, 2),))],
)
@pytest.mark.slow
def test_tiled_stack_is_byte_identical_to_whole_frames(camera, tilings):
    s = corner_sample(camera)
    ref = frames_array(s.plan, T, tile_size=10**6).compute(scheduler="sync")
    assert ref.shape == (T, H, W)
    for tile, chunk in tilings:
        arr = frames_array(s.plan, chunk, tile_size=tile)
        assert len(arr.chunks[1]) > 1 and len(arr.chunks[2]) > 1
        assert digest(arr.compute(scheduler="threads")) == digest(ref), (tile, chunk)
    # one tile computed alone equals that rectangle of the whole frame
    arr = frames_array(s.plan, 2, tile_size=128)
    assert np.array_equal(arr[1:3, 128:256, 0:128].compute(), ref[1:3, 128:256, 0:128])


def test_emitter_on_a_tile_corner_lights_all_four_tiles():
    s = corner_sample({"model": "none"}, background=0.0, n_random=0, aberration_rad=0.0)
    frames = frames_array(s.plan, 1, tile_size=128).compute()
    f = frames[0]
    # the emitter at (127.5, 127.5): every tile touching that corner gets a large share of its light
    quads = [f[118:128, 118:128], f[118:128, 128:138], f[128:138, 118:128], f[128:138, 128:138]]
    sums = [q.sum() for q in quads]
    assert all(v > 0.15 * sum(sums) for v in sums), sums
    assert max(sums) / min(sums) < 1.01  # an unaberrated in-focus PSF is symmetric about the corner
    # emitters just outside the image light its edge
    assert f[140:160, 0].sum() > 0.01 * 4000


def test_background_free_tiles_equal_expected_signal_rectangles():
    from z2t_dask.engine.render import expected_signal

    s = corner_sample({"model": "none"}, background=0.0)
    whole = expected_signal(s.plan, 0, T)
    part = expected_signal(s.plan, 0, T, (100, 200, 50, 130))
    assert np.array_equal(part, whole[:, 100:200, 50:130])


def test_scmos_pixel_maps_are_tiled_consistently(tmp_path):
    rng = np.random.default_rng(3)
    for name, value in (
        ("offset", rng.uniform(90, 110, (H, W))),
        ("variance", rng.uniform(1, 5, (H, W))),
        ("gain", rng.uniform(0.4, 0.6, (H, W))),
    ):
        np.save(tmp_path / f"{name}.npy", value.astype(np.float32))
    cam = {"model": "scmos", **{f"scmos_{k}": str(tmp_path / f"{k}.npy") for k in ("offset", "variance", "gain")}}
    s = corner_sample(cam)
    ref = frames_array(s.plan, T, tile_size=10**6).compute()
    assert np.array_equal(frames_array(s.plan, 2, tile_size=100).compute(), ref)


def test_chunks_chosen_from_the_memory_target():
    # 1200x1200 uint16 = 2.75 MiB: whole frames, 5 per 16 MiB chunk
    assert choose_chunks((1200, 1200), 200, 2, chunk_mb=16) == (5, 1200, 1200)
    # small frames: capped at 32 frames per chunk, and never more than T
    assert choose_chunks((40, 40), 200, 2) == (32, 40, 40)
    assert choose_chunks((40, 40), 10, 2) == (10, 40, 40)
    # a frame larger than the target: square tiles, multiples of the noise grid
    ct, ty, tx = choose_chunks((4096, 4096), 100, 2, chunk_mb=16)
    assert ty == tx and ty % NOISE_BLOCK == 0 and ty * tx * 2 * ct <= 16 * 2**20 and ty < 4096
    assert choose_chunks((2048, 2048), 100, 4, chunk_mb=1) == (1, 512, 512)  # float32: 1 MiB tiles
    assert choose_chunks((2048, 2048), 100, 2, chunk_mb=1) == (2, 512, 512)  # uint16: 2 tiles of 0.5 MiB
    # user overrides
    assert choose_chunks((1200, 1200), 200, 2, chunk_frames=3, tile_size=500) == (3, 500, 500)
    with pytest.raises(ValueError, match="render.tile_size"):
        choose_chunks((100, 100), 5, 2, tile_size=0)
    with pytest.raises(ValueError, match="render.chunk_mb"):
        choose_chunks((100, 100), 5, 2, chunk_mb=-1)
    # the config keys drive simulate()
    cfg = {
        "tiff": {"roi_width": 300, "roi_height": 200},
        "emitters": {"frames": 7, "num_emitters": 5},
        "render": {"tile_size": 128, "chunk_frames": 3},
    }
    s = z2t.simulate(cfg, seed=0)
    assert s.frames.chunks == ((3, 3, 1), (128, 72), (128, 128, 44))
    s = z2t.simulate({**cfg, "tiff": {"roi_width": 700, "roi_height": 200}, "render": {"chunk_mb": 0.05}}, seed=0)
    assert s.frames.chunksize[1:] == (200, NOISE_BLOCK) and s.frames.chunksize[0] == 1
    with pytest.raises(z2t.ConfigError, match="render.chunk_mb"):
        z2t.load_config({"render": {"chunk_mb": 0}})


@pytest.mark.slow
def test_tiled_stack_streams_whole_frames_in_order_and_round_trips_through_bigtiff(tmp_path):
    s = corner_sample({"model": "emccd"}, tile=100)
    s.config = dataclasses.replace(s.config, tiff=dataclasses.replace(s.config.tiff, bigtiff=True))
    s.frames = frames_array(s.plan, 2, tile_size=100)
    ref = s.frames.compute()
    blocks = list(iter_frame_blocks(s.frames, prefetch=2))
    assert [b.shape for b in blocks] == [(2, H, W), (2, H, W), (1, H, W)]
    assert np.array_equal(np.concatenate(blocks), ref)
    out = s.save(tmp_path / "tiled", format="ome-tiff", compression="zlib")
    with tifffile.TiffFile(out / "tiled.ome.tiff") as tf:
        assert tf.is_bigtiff and len(tf.pages) == T and tf.series[0].axes == "TYX"
        assert tf.pages[0].compression == 8 and tf.pages[0].predictor == 1  # deflate, no predictor
        assert np.array_equal(tf.asarray(), ref)
    with pytest.raises(ValueError, match="lzw"):
        s.save(tmp_path / "lzw", format="ome-tiff", compression="lzw")
