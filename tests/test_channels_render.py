"""Multi-channel rendering: (T, C, Y, X) bytes independent of chunking, tiles and schedulers;
registration (records lit at their channel positions); photons per channel in the images."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t

CHANNELS = [
    {"name": "ch1", "wavelength_nm": 600.0},
    {
        "name": "ch2",
        "wavelength_nm": 680.0,
        "efficiency": 0.9,
        "z_offset_um": 0.1,
        "background": 20.0,
        "transform": {"shift_px": [1.7, -2.2], "rotation_deg": 4.0},
    },
]
SPECIES = [
    {"name": "A", "fraction": 0.5, "ratio": [0.3, 0.7], "ratio_spread": 0.1},
    {"name": "B", "fraction": 0.5, "ratio": [0.6, 0.4], "ratio_spread": 0.05},
]


def doc(**over) -> dict:
    d = small_config(**over)
    d["channels"] = copy.deepcopy(CHANNELS)
    d["emitters"]["species"] = copy.deepcopy(SPECIES)
    return d


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def cfg():
    return z2t.load_config(doc())


@pytest.fixture(scope="module")
def ref(cfg):
    return z2t.simulate(cfg, seed=11, chunk_frames=12).frames.compute(scheduler="sync")


def test_frames_are_lazy_tcyx(cfg):
    s = z2t.simulate(cfg, seed=11, chunk_frames=5)
    assert s.frames.shape == (12, 2, 20, 24) and s.frames.dtype == np.uint16
    assert s.frames.chunks[0] == (5, 5, 2) and s.frames.chunks[1] == (1, 1)


@pytest.mark.parametrize("chunk", [1, 7, 12])
def test_same_bytes_for_any_chunking(cfg, ref, chunk):
    got = z2t.simulate(cfg, seed=11, chunk_frames=chunk).frames.compute(scheduler="threads")
    assert digest(got) == digest(ref)


def test_same_bytes_with_tiles_and_processes(cfg, ref):
    tiled = z2t.simulate(cfg, seed=11, chunk_frames=5, tile_size=8)
    assert len(tiled.frames.chunks[2]) > 1 and len(tiled.frames.chunks[3]) > 1
    assert digest(tiled.frames.compute(scheduler="threads")) == digest(ref)
    got = z2t.simulate(cfg, seed=11, chunk_frames=4).frames.compute(scheduler="processes", num_workers=2)
    assert digest(got) == digest(ref)


@pytest.mark.cluster
@pytest.mark.slow
def test_same_bytes_on_a_distributed_cluster(cfg, ref):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        got = client.compute(z2t.simulate(cfg, seed=11, chunk_frames=3).frames).result()
    assert digest(got) == digest(ref)


def test_channels_draw_their_own_noise():
    """Two channels alike in everything (optics, Zmap, ratio 1/2 each): same expected photons, other noise."""
    d = doc()
    same = {"synthetic_seed": 0, "crop_offset": [100, 50]}
    d["channels"] = [{"name": "a", **same}, {"name": "b", **same}]
    d["emitters"]["species"] = [{"name": "X", "fraction": 1.0, "ratio": [0.5, 0.5]}]
    f = z2t.simulate(d, seed=3).frames.compute().astype(np.float64)
    assert not np.array_equal(f[:, 0], f[:, 1])
    assert abs(f[:, 0].mean() / f[:, 1].mean() - 1) < 0.02
    noiseless = copy.deepcopy(d)
    noiseless["camera"] = {"model": "none"}
    g = z2t.simulate(noiseless, seed=3).frames.compute()
    assert np.array_equal(g[:, 0], g[:, 1])


def test_channel_images_carry_their_photons_exactly():
    """Noise-free, identity registration, the reference Zmap and chip position: channel c is
    ratio_c x efficiency_c times the single-channel image. With ratios 1/4, 3/4 and efficiencies 1, 2/3 the
    products in the truth are 1/4 and 1/2, so the equality is exact (float32 bytes); a channel's image sums
    its records' photons times the PSF's encircled fraction (< 1)."""
    over = {"camera": {"model": "none"}, "background": {"photons": 0.0}}
    single = z2t.simulate(small_config(**over), seed=5).frames.compute()
    d = doc(**over)
    same = {"synthetic_seed": 0, "crop_offset": [100, 50]}
    d["channels"] = [{"name": "a", **same}, {"name": "b", **same, "efficiency": 2 / 3, "background": 0.0}]
    d["emitters"]["species"] = [{"name": "X", "fraction": 1.0, "ratio": [0.25, 0.75]}]
    s = z2t.simulate(d, seed=5)
    two = s.frames.compute()
    assert two.dtype == np.float32 and single.sum() > 0
    assert np.array_equal(two[:, 0], single * np.float32(0.25))
    assert np.allclose(two[:, 1], single * np.float32(0.5), rtol=1e-6, atol=1e-6)  # 0.75 x 2/3 in float64
    phot_ch = s.records["phot_ch"].astype(np.float64)
    assert np.allclose(phot_ch[:, 1] / phot_ch[:, 0], 2.0, rtol=1e-6)
    inside = s.records.inside
    assert 0.5 * phot_ch[inside, 0].sum() < two[:, 0].sum() < 1.1 * phot_ch[:, 0].sum()


def test_registration_lights_records_at_their_channel_position():
    """Noise-free, unaberrated, two channels, the second shifted (6.4, -4.6) px and rotated 12 degrees: every
    bright, isolated record's photon centroid in each channel lies within 0.25 px of its xy_ch; in the shifted
    channel the untransformed position is dark by comparison."""
    over = {
        "camera": {"model": "none"},
        "background": {"photons": 0.0},
        "zernike": {"synthetic_rms_rad": 0.0},
        "tiff": {"roi_width": 40, "roi_height": 40},
        "emitters": {"num_emitters": 60, "z_range_um": 0.0, "margin_px": 0.0, "lifetime_avg": 3.0, "frames": 6},
    }
    d = doc(**over)
    d["channels"] = [
        {"name": "a"},
        {"name": "b", "transform": {"shift_px": [6.4, -4.6], "rotation_deg": 12.0}},
    ]
    s = z2t.simulate(d, seed=8)
    frames = s.frames.compute()
    r = s.records
    checked = dark = 0
    yy, xx = np.mgrid[-3:4, -3:4]
    for i in range(len(r)):
        t, phot = int(r.frame_ix[i]), float(r.phot[i])
        if phot < 1000:
            continue
        for c in range(2):
            x, y = (float(v) for v in r["xy_ch"][i, c])
            others = [j for j in np.nonzero(r.frame_ix == t)[0] if j != i]
            if min((np.hypot(*(r["xy_ch"][j, c] - [x, y])) for j in others), default=99) < 9:
                continue
            cx, cy = int(round(x)), int(round(y))
            if not (4 <= cx < 36 and 4 <= cy < 36):
                continue
            win = frames[t, c, cy - 3 : cy + 4, cx - 3 : cx + 4].astype(np.float64)
            gx = cx + (win * xx).sum() / win.sum()
            gy = cy + (win * yy).sum() / win.sum()
            assert abs(gx - x) < 0.25 and abs(gy - y) < 0.25, (i, c, gx, gy, x, y)
            ux, uy = int(round(r.xyz[i, 0])), int(round(r.xyz[i, 1]))
            if c == 1 and np.hypot(ux - x, uy - y) > 4:  # the untransformed position is not lit
                assert frames[t, 1, uy, ux] < 0.2 * frames[t, 1, cy, cx]
                dark += 1
            checked += 1
    assert checked >= 6 and dark >= 2


def test_per_channel_camera_and_fast_psf_mode():
    """A channel's own camera keys (stack layout) change only its frames; the fast PSF library renders every
    channel with the same bytes for any chunking."""
    d = doc(psf={"mode": "fast", "patch_size": 21})
    d["channels"][1]["camera"] = {"em_gain": 300.0}
    a = z2t.simulate(d, seed=4, chunk_frames=12).frames.compute()
    b = z2t.simulate(d, seed=4, chunk_frames=5).frames.compute()
    assert digest(a) == digest(b)
    same = copy.deepcopy(d)
    same["channels"][1]["camera"] = None
    c = z2t.simulate(same, seed=4, chunk_frames=12).frames.compute()
    assert np.array_equal(a[:, 0], c[:, 0])  # channel 0 untouched
    # EMCCD: the mean signal above the baseline scales with the gain (300 / 100), noise aside
    gain = (a[:, 1].astype(np.float64) - 100).mean() / (c[:, 1].astype(np.float64) - 100).mean()
    assert 2.5 < gain < 3.5


def test_segmented_truth_same_bytes_across_segments():
    """A 1300-frame sample (two time segments of the truth): chunks that cross the segment border give the
    same bytes as whole-movie chunks; the channel columns of the streamed parts equal the materialised ones."""
    d = doc(emitters={"frames": 1300, "num_emitters": 30}, tiff={"roi_width": 10, "roi_height": 8})
    d["channels"][1]["crop_offset"] = [110, 50]
    s = z2t.simulate(d, seed=6, chunk_frames=1300)
    assert len(s.truth.base.segments) == 2
    ref = s.frames.compute(scheduler="sync")
    got = z2t.simulate(d, seed=6, chunk_frames=333).frames.compute(scheduler="threads")
    assert digest(got) == digest(ref)
    parts = list(z2t.simulate(d, seed=6).truth.parts())
    assert len(parts) == 2
    streamed = np.concatenate([p.records["phot_ch"] for p in parts])
    assert np.array_equal(streamed, s.records["phot_ch"])


def test_species_brightness_scales_truth_and_images():
    """A species' brightness (photophysics override) multiplies its records' photons in the truth and in the
    images: brightness 1/2 and ratios 1/2 make channel a exactly 1/4 of the single-channel image (noise-free)."""
    over = {"camera": {"model": "none"}, "background": {"photons": 0.0}}
    single = z2t.simulate(small_config(**over), seed=5)
    d = doc(**over)
    same = {"synthetic_seed": 0, "crop_offset": [100, 50]}
    d["channels"] = [{"name": "a", **same}, {"name": "b", **same, "background": 0.0}]
    d["emitters"]["species"] = [{"name": "dim", "fraction": 1.0, "ratio": [0.5, 0.5], "brightness": 0.5}]
    s = z2t.simulate(d, seed=5)
    assert np.array_equal(s.records.phot, single.records.phot * np.float32(0.5))
    assert np.array_equal(s.emitters.intensity, single.emitters.intensity * 0.5)
    assert np.array_equal(s.records["phot_ch"][:, 0], single.records.phot * np.float32(0.25))
    two = s.frames.compute()
    assert np.array_equal(two[:, 0], single.frames.compute() * np.float32(0.25))
