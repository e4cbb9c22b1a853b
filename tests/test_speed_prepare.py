"""Per-sample preparation made cheaper (issue 16, W1): each shortcut gives the arrays of its definition."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.engine import render
from z2t_dask.physics.optics.psf_library import PSFLibrary, _sq_dist
from z2t_dask.physics.truth import _content_token
from z2t_dask.physics.truth_parts import unique_inverse


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize("n_rows", [1, 50, 5000, 100_000])
def test_unique_inverse_equals_numpy_unique(n_rows):
    rng = np.random.default_rng(n_rows)
    for size in (0, 1, 7, 400, 3000):
        em = rng.integers(0, n_rows, size).astype(np.int32)
        uniq, inv = unique_inverse(em, n_rows)
        ref_u, ref_i = np.unique(em, return_inverse=True)
        assert uniq.dtype == em.dtype and np.array_equal(uniq, ref_u)
        assert inv.shape == em.shape and np.array_equal(inv, ref_i.reshape(-1))
        assert np.array_equal(uniq[inv], em)


def _taps_reference(lib, nodes, lam, z, dx, dy):
    """The taps as first written: one row per (field node, z plane, sub-pixel corner), in that order."""
    planes = lib.z_planes
    n_z, s = len(planes), lib.subpixel
    fz = (z - planes[0]) / (planes[1] - planes[0])
    iz = np.clip(np.floor(fz), 0, n_z - 2).astype(np.intp)
    wz = fz - iz
    fx = (dx + 0.5) * s
    ix = np.clip(np.floor(fx), 0, s - 1).astype(np.intp)
    wx = fx - ix
    fy = (dy + 0.5) * s
    iy = np.clip(np.floor(fy), 0, s - 1).astype(np.intp)
    wy = fy - iy
    upper = wx >= wy
    sub = (
        (0, 0, 1.0 - np.maximum(wx, wy)),
        (np.where(upper, 0, 1), np.where(upper, 1, 0), np.abs(wx - wy)),
        (1, 1, np.minimum(wx, wy)),
    )
    rows, ws = [], []
    for v in range(1 if lib.nodes.shape[0] == 1 else 3):
        for a, wa in ((0, 1.0 - wz), (1, wz)):
            for b, c, wbc in sub:
                rows.append((((nodes[:, v] * n_z + iz + a) * (s + 1) + iy + b) * (s + 1)) + ix + c)
                ws.append(lam[:, v] * wa * wbc)
    return np.stack(rows, 1), np.stack(ws, 1).astype(np.float32)


@pytest.mark.parametrize("n_nodes", [1, 6])
def test_library_taps_equal_their_definition_bit_for_bit(n_nodes):
    rng = np.random.default_rng(n_nodes)
    for subpixel, n_z in ((2, 2), (8, 66), (16, 9)):
        lib = SimpleNamespace(z_planes=np.linspace(-0.8, 0.75, n_z), subpixel=subpixel, nodes=np.zeros((n_nodes, 4)))
        n = 500
        nodes = rng.integers(0, n_nodes, (n, 3))
        lam = rng.dirichlet([1.0, 1.0, 1.0], n)
        z = rng.uniform(-1.0, 1.0, n)  # beyond the planes too (clipped)
        dx, dy = rng.uniform(-0.5, 0.5, (2, n))
        dx[:4], dy[:4] = [-0.5, 0.5, 0.0, 0.25], [0.5, -0.5, 0.0, 0.25]  # corners and the diagonal
        rows, w = PSFLibrary._taps(lib, nodes, lam, z, dx, dy)
        ref_rows, ref_w = _taps_reference(lib, nodes, lam, z, dx, dy)
        assert rows.dtype == ref_rows.dtype and rows.flags.c_contiguous and np.array_equal(rows, ref_rows)
        assert w.dtype == np.float32 and w.flags.c_contiguous and np.array_equal(w.view(np.int32), ref_w.view(np.int32))


def test_one_node_squared_distances_are_the_mode_by_mode_sums():
    rng = np.random.default_rng(3)
    for n, k in ((0, 20), (1, 1), (900, 20), (33, 41)):
        v = rng.normal(size=(n, k)) * 3.0
        node = rng.normal(size=(1, k))
        ref = np.zeros((n, 1))
        for j in range(k):
            d = v[:, j, None] - node[None, :, j]
            ref += d * d
        got = _sq_dist(v, node)
        assert got.shape == (n, 1) and np.array_equal(got.view(np.int64), ref.view(np.int64))


def test_content_token_tells_documents_apart():
    doc = {"a": [1, 2.5, None], "b": {"c": "x"}}
    assert _content_token(doc) == _content_token({"b": {"c": "x"}, "a": [1, 2.5, None]})  # key order
    assert _content_token(doc) != _content_token({"a": [1, 2.5, 0], "b": {"c": "x"}})
    big = np.arange(5000.0)
    other = big.copy()
    other[2500] = -1.0  # repr would elide it
    assert _content_token([big]) != _content_token([other])
    assert _content_token([big]) == _content_token([big.copy()])
    assert isinstance(_content_token({1: 2, "x": 3}), str)  # keys JSON cannot order: dask's tokenize


def test_simulated_truth_token_follows_config_and_seed():
    cfg = z2t.load_config(small_config())
    a, b = z2t.simulate(cfg, seed=4), z2t.simulate(cfg, seed=4)
    assert a.frames.name == b.frames.name
    assert z2t.simulate(cfg, seed=5).frames.name != a.frames.name
    bright = z2t.load_config(small_config(), overrides={"emitters": {"intensity_mu": 9000.0}})
    assert z2t.simulate(bright, seed=4).frames.name != a.frames.name


def test_graph_blocks_get_map_blocks_block_info():
    cfg = z2t.load_config(small_config())
    s = z2t.simulate(cfg, seed=9, chunk_frames=5, tile_size=16)
    graph = dict(s.frames.__dask_graph__())
    assert len(graph) == 3 * 2 * 2
    seen = []
    for key, (fn, info) in graph.items():
        loc = info[None]["array-location"]
        assert info[None]["chunk-location"] == key[1:]
        assert info[None]["shape"] == s.frames.shape and info[None]["num-chunks"] == (3, 2, 2)
        block = fn(info)  # the task is render_block of that block
        assert block.shape == tuple(b - a for a, b in loc)
        seen.append((loc, block))
    whole = s.frames.compute(scheduler="sync")
    for ((t0, t1), (y0, y1), (x0, x1)), block in seen:
        assert np.array_equal(block, whole[t0:t1, y0:y1, x0:x1])


def test_whole_noise_block_path_equals_cropped_path():
    """A block that is one noise block (no crops) gives the bytes of the same frames cut from tiles."""
    cfg = z2t.load_config(small_config())
    whole = z2t.simulate(cfg, seed=21, chunk_frames=4).frames.compute(scheduler="sync")
    tiled = z2t.simulate(cfg, seed=21, chunk_frames=3, tile_size=7).frames.compute(scheduler="sync")
    assert _digest(whole) == _digest(tiled)


def test_prepare_signal_keeps_records_outside_a_tile_out():
    cfg = z2t.load_config(small_config())
    plan = z2t.simulate(cfg, seed=2).plan
    h, w = plan.image_shape
    full = render._prepare_signal(plan, 0, plan.frames, (0, h, 0, w))
    corner = render._prepare_signal(plan, 0, plan.frames, (0, 2, 0, 2))
    c = plan.psf.patch_size // 2
    reach = (full.cx + c >= 0) & (full.cx - c < 2) & (full.cy + c >= 0) & (full.cy - c < 2)
    assert corner.cx.size == int(reach.sum()) and np.array_equal(corner.phot, full.phot[reach])
    for a in (corner.cx, corner.cy, corner.inv, corner.phot, full.cx, full.cy):
        assert a.flags.c_contiguous
