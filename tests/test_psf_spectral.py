"""Fast PSF mode on whole chips: the low-rank spectral library's error bound, fallbacks, determinism."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.engine.assembly import aberration_field, make_psf_model
from z2t_dask.physics.optics import psf_library
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.psf_spectral import SpectralLibrary
from z2t_dask.physics.zmap import SyntheticZmap

BOUND = 0.01  # relative L2 per PSF, as the table library
CHIP = {"tiff": {"roi_size": 1200, "crop_offset": [0, 0]}, "psf": {"mode": "fast"}}


def rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64).reshape(len(a), -1)
    b = b.astype(np.float64).reshape(len(b), -1)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def held_out(field_fn, extent, z_range, n: int, seed: int):
    """Emitters uniform over the field, the z range and the sub-pixel offsets."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(extent[0], extent[1], n), rng.uniform(extent[2], extent[3], n)
    ph, mag = field_fn(x, y)
    return ph, mag, rng.uniform(*z_range, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)


@pytest.fixture(scope="module")
def chip() -> tuple:
    """The default config's whole 1200^2 chip (vectorial model, varying synthetic field), fast mode."""
    cfg = z2t.load_config(CHIP)
    return cfg, make_psf_model(cfg)


def test_whole_chip_is_served_within_the_bound(chip) -> None:
    cfg, lib = chip
    assert isinstance(lib, SpectralLibrary) and lib.exact.vectorial
    info = lib.describe()
    assert info["coverage"] == 1.0 and info["table_mib"] <= cfg.psf.fast_max_mib
    assert info["error"]["max"] <= BOUND and info["error"]["exact_fraction"] == 0.0
    extent = info["field_extent_px"]  # where emitters are drawn: the chip (+ emitters.margin_px)
    assert extent[1] - extent[0] >= 1200 and extent[3] - extent[2] >= 1200
    ph, mag, z, dx, dy = held_out(aberration_field(cfg).at, extent, (-1.0, 1.0), 96, seed=11)
    before = dict(lib.__dict__.setdefault("_counts", {"fast": 0, "exact": 0}))
    fast = lib.compute(ph, z, dx, dy, mag)
    err = rel_l2(fast, lib.exact.compute(ph, z, dx, dy, mag))
    assert err.max() <= BOUND, err.max()
    assert lib.__dict__["_counts"]["fast"] - before["fast"] == 96  # every held-out PSF from the library
    # the same chip with the table library would not fit: the spectral one is a few MiB
    assert info["table_mib"] < 16 and info["rank"] >= 8


def test_fallbacks_are_byte_identical_to_the_exact_model(chip) -> None:
    cfg, lib = chip
    ph, mag, z, dx, dy = held_out(aberration_field(cfg).at, (0, 1200, 0, 1200), (-1.0, 1.0), 6, seed=12)
    z[0] = 1.3  # beyond the planes
    ph[1, 6] += 0.05  # 0.05 rad RMS away from the Zmap
    ph[2] *= 1.5  # another aberration strength (zernike.scale)
    out = lib.compute(ph, z, dx, dy)
    assert np.array_equal(out[:3], lib.exact.compute(ph[:3], z[:3], dx[:3], dy[:3]))
    assert not np.array_equal(out[3:], lib.exact.compute(ph[3:], z[3:], dx[3:], dy[3:]))  # served
    dip = np.tile([[0.0, 0.6, 0.8]], (6, 1))
    assert np.array_equal(lib.compute(ph, z, dx, dy, dipole=dip), lib.exact.compute(ph, z, dx, dy, dipole=dip))


def test_bit_identical_whatever_the_batch(chip) -> None:
    cfg, lib = chip
    ph, _, z, dx, dy = held_out(aberration_field(cfg).at, (0, 1200, 0, 1200), (-1.0, 1.0), 40, seed=13)
    z[5] = -1.5  # an exact fallback inside the same call
    ref = lib.compute(ph, z, dx, dy)
    for i in (0, 5, 17, 39):
        assert np.array_equal(lib.compute(ph[i : i + 1], z[i : i + 1], dx[i : i + 1], dy[i : i + 1])[0], ref[i])
    idx = np.random.default_rng(4).permutation(40)[:23]
    assert np.array_equal(lib.compute(ph[idx], z[idx], dx[idx], dy[idx], batch_size=7), ref[idx])


def test_a_large_call_in_blocks_gives_the_same_bits(chip) -> None:
    """Lookups (64-80 rows), residuals (32) and renders (128 / 16) run in blocks: no bit depends on them."""
    cfg, lib = chip
    n = 300
    ph, _, z, dx, dy = held_out(aberration_field(cfg).at, (0, 1200, 0, 1200), (-1.0, 1.0), n, seed=15)
    z[[7, 150, 299]] = 1.6  # exact fallbacks between served emitters
    ref = lib.compute(ph, z, dx, dy)
    parts = np.split(np.arange(n), [1, 38, 168, 170])  # 1, 37, 130, 2 and 130 emitters
    got = np.concatenate([lib.compute(ph[i], z[i], dx[i], dy[i]) for i in parts])
    assert np.array_equal(got, ref)
    order = np.random.default_rng(5).permutation(n)
    assert np.array_equal(lib.compute(ph[order], z[order], dx[order], dy[order]), ref[order])


def test_z_slabs_cover_every_cubic_tap_with_orthonormal_bases(chip) -> None:
    """One basis per z slab: the slabs tile the first cubic taps, each basis is orthonormal."""
    from z2t_dask.physics.optics.psf_basis import slab_starts

    cfg, lib = chip
    tab = lib._tables()
    nz = len(lib.z_planes)
    starts = tab.starts
    assert starts[0] == 0 and starts[-1] == nz - 3 and np.all(np.diff(starts) >= 1)
    assert len(tab.ranks) == len(starts) - 1 >= 2  # the default chip's 42 planes: several slabs
    for basis, rank in zip(tab.bases, tab.ranks):
        assert basis.shape[0] == rank
        gram = basis.astype(np.float64) @ basis.T.astype(np.float64)
        assert np.abs(gram - np.eye(rank)).max() < 1e-5
    assert list(slab_starts(1)) == [0, 1] and list(slab_starts(4)) == [0, 1] and len(slab_starts(18)) == 2
    # emitters on the planes where one slab hands over to the next: within the bound in both
    edges = lib.z_planes[starts[1:-1] + 1]
    n = 2 * len(edges)
    ph, _, _, dx, dy = held_out(aberration_field(cfg).at, (0, 1200, 0, 1200), (-1.0, 1.0), n, seed=16)
    z = np.repeat(edges, 2) + np.tile([-1e-4, 1e-4], len(edges))
    err = rel_l2(lib.compute(ph, z, dx, dy), lib.exact.compute(ph, z, dx, dy))
    assert err.max() <= BOUND, err.max()


def test_rebuilt_identically_after_pickling(chip) -> None:
    cfg, lib = chip
    ph, _, z, dx, dy = held_out(aberration_field(cfg).at, (0, 1200, 0, 1200), (-1.0, 1.0), 12, seed=14)
    ref = lib.compute(ph, z, dx, dy)
    blob = pickle.dumps(lib)
    assert len(blob) < 2_000_000  # parameters, lookup and node aberrations, never the tables
    psf_library.clear_cache()
    clone = pickle.loads(blob)
    assert clone.key == lib.key and np.array_equal(clone.compute(ph, z, dx, dy), ref)


def _small(**kw) -> PupilPSF:
    base = dict(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=101.11, pixel_size_nm_y=98.83, patch_size=17)
    base.update(kw)
    return PupilPSF(vectorial=True, **base)


def test_water_medium_and_a_second_channel_zmap() -> None:
    """Index mismatch (water, 1.5 um deep) and another Zmap/wavelength: one library each, both within the bound."""
    extent, z_range = (-8, 1208, -8, 1208), (-0.8, 0.8)
    zm1 = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=0)
    zm2 = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=7)
    water = _small(n_medium=1.33, focus_depth_um=1.5, window_px=64)
    assert water.depth_dependent
    second = _small(wavelength_nm=700.0, window_px=64)
    libs = []
    for exact, zm in ((water, zm1), (second, zm2)):
        lib = SpectralLibrary.from_field(exact, zm.coefficients, extent, z_range, error_samples=32)
        ph, mag, z, dx, dy = held_out(zm.coefficients, extent, z_range, 48, seed=15)
        err = rel_l2(lib.compute(ph, z, dx, dy), exact.compute(ph, z, dx, dy))
        assert lib.__dict__["_counts"]["fast"] >= 48 and lib.psf_grid[0] >= 4  # served by the library
        assert err.max() <= BOUND and lib.info["error"]["max"] <= BOUND, (exact, err.max())
        libs.append(lib)
    # the first channel's emitters are foreign to the second channel's library: exact, bit for bit
    ph, _, z, dx, dy = held_out(zm1.coefficients, extent, z_range, 8, seed=16)
    res = libs[1].field_weights(ph, None)[2]
    assert np.all(res > libs[1].tol_rad)
    assert np.array_equal(libs[1].compute(ph, z, dx, dy), second.compute(ph, z, dx, dy))


def test_pipeline_chooses_it_and_bytes_do_not_depend_on_the_chunking() -> None:
    """A ROI whose table library exceeds psf.fast_max_mib gets the spectral library; same bytes per chunking."""
    over = {"psf": {"mode": "fast", "fast_max_mib": 1.0}, "camera": {"model": "none"}}
    cfg = z2t.load_config(small_config(**over))
    sample = z2t.simulate(cfg, seed=2)
    assert isinstance(sample.plan.psf, SpectralLibrary)
    assert sample.psf_info["error"]["max"] <= BOUND and sample.psf_info["mode"] == "fast"
    a = sample.compute(scheduler="sync")
    b = z2t.simulate(cfg, seed=2, chunk_frames=5, tile_size=16).compute(scheduler="threads")
    assert np.array_equal(a, b)
    exact = z2t.simulate(z2t.load_config(small_config(camera={"model": "none"})), seed=2).compute(scheduler="sync")
    bg = cfg.background.photons
    assert np.linalg.norm(a - exact) <= BOUND * np.linalg.norm(exact - bg)


def test_same_bytes_for_any_blas_thread_count() -> None:
    """The basis (eigen-decomposition under one BLAS thread) and the per-emitter products: same bytes."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np\n"
        "from z2t_dask.physics.optics.psf import PupilPSF\n"
        "from z2t_dask.physics.optics.psf_spectral import SpectralLibrary\n"
        "from z2t_dask.physics.zmap import SyntheticZmap\n"
        "zm = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=0)\n"
        "ex = PupilPSF(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=101.11, pixel_size_nm_y=98.83,\n"
        "              patch_size=17, window_px=64)\n"
        "lib = SpectralLibrary.from_field(ex, zm.coefficients, (0, 1200, 0, 1200), (-0.3, 0.3), error_samples=0)\n"
        "rng = np.random.default_rng(1)\n"
        "n = 40\n"
        "ph, _ = zm.coefficients(rng.uniform(0, 1200, n), rng.uniform(0, 1200, n))\n"
        "out = lib.compute(ph, rng.uniform(-.3, .3, n), rng.uniform(-.5, .5, n), rng.uniform(-.5, .5, n))\n"
        "tab = lib._tables()\n"
        "print(lib.psf_grid, hashlib.sha1(out.tobytes() + tab.basis.tobytes()).hexdigest())\n"
    )
    digests = set()
    for threads in ("1", "4"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(res.stdout.strip())
    assert len(digests) == 1 and "(1, 1)" not in digests.pop()


def test_amplitude_zmap_and_oversampled_model() -> None:
    """A Zmap with Zernike amplitudes (vectorial) and a 2x oversampled scalar model: within the bound."""
    zm = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=3)

    def with_mag(x, y):
        ph, _ = zm.coefficients(x, y)
        mag = np.zeros_like(ph)
        mag[:, 3] = 0.1 + 0.1 * np.asarray(x) / 1200
        mag[:, 10] = 0.05
        return ph, mag

    big_px = dict(pixel_size_nm_x=160.0, pixel_size_nm_y=160.0, patch_size=15, window_px=48)
    cases = ((_small(window_px=64), with_mag), (PupilPSF(wavelength_nm=660.0, na=1.4, **big_px), zm.coefficients))
    for exact, fn in cases:
        lib = SpectralLibrary.from_field(exact, fn, (0, 1200, 0, 1200), (-0.5, 0.5), error_samples=0)
        ph, mag, z, dx, dy = held_out(fn, (0, 1200, 0, 1200), (-0.5, 0.5), 48, seed=17)
        err = rel_l2(lib.compute(ph, z, dx, dy, mag), exact.compute(ph, z, dx, dy, mag))
        assert lib.__dict__["_counts"] == {"fast": 48, "exact": 0} and err.max() <= BOUND, (exact, err.max())
    assert cases[1][0].sampling == 2 and lib.info["band_loss"] < 1e-12


def test_a_field_rougher_than_the_nodes_falls_back_where_they_cannot_follow() -> None:
    """A Zmap with ripples finer than the (capped) PSF node grid: served PSFs within the bound, the rest exact."""
    zm = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=0)

    def rough(x, y):
        ph, _ = zm.coefficients(x, y)
        ph[:, 6] += 0.08 * np.sin(2 * np.pi * np.asarray(x) / 70.0)  # coma ripples, 70-px period
        return ph, None

    exact = _small(window_px=64)
    with pytest.warns(UserWarning, match="serves"):
        lib = SpectralLibrary.from_field(exact, rough, (0, 1200, 0, 1200), (-0.3, 0.3), error_samples=64)
    assert lib.info["coverage"] < 0.99 and lib.info["error"]["exact_fraction"] > 0
    ph, _, z, dx, dy = held_out(rough, (0, 1200, 0, 1200), (-0.3, 0.3), 64, seed=18)
    served = lib.serves(ph, None)
    out = lib.compute(ph, z, dx, dy)
    ref = exact.compute(ph, z, dx, dy)
    assert 0 < served.sum() < 64 and np.array_equal(out[~served], ref[~served])
    assert rel_l2(out[served], ref[served]).max() <= BOUND
