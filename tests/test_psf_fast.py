"""Fast PSF mode: the library's error bound against the exact model, determinism, fallbacks."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.config import ConfigError
from z2t_dask.engine.assembly import make_psf_model
from z2t_dask.physics.optics import psf_library
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.psf_library import PSFLibrary
from z2t_dask.physics.zmap import SyntheticZmap

#: The bound stated in the docs and config: relative L2 error per PSF.
BOUND = 0.01


def make_exact(**kw) -> PupilPSF:
    base = dict(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=101.11, pixel_size_nm_y=98.83)
    base.update(kw)
    return PupilPSF(**base)


ZMAP = SyntheticZmap(shape=(300, 300), rms_rad=0.35, seed=0)


def field(x, y):
    """Field-dependent aberrations of a 40-px ROI at (100, 50) of a synthetic Zmap."""
    return ZMAP.coefficients(np.asarray(x) + 100.0, np.asarray(y) + 50.0)


def draws(n: int, seed: int, extent=(-2, 42, -2, 42), z=(-0.5, 0.5)):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(extent[0], extent[1], n), rng.uniform(extent[2], extent[3], n)
    ph, mag = field(x, y)
    return ph, rng.uniform(*z, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)


def rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64).reshape(len(a), -1)
    b = b.astype(np.float64).reshape(len(b), -1)
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def lib() -> PSFLibrary:
    """A small library (17-px patches, 64-px window) over a varying field, +-0.5 um."""
    return PSFLibrary.from_field(
        make_exact(patch_size=17, window_px=64), field, (-2, 42, -2, 42), (-0.5, 0.5), error_samples=64
    )


def test_error_bound_over_field_z_and_subpixel(lib: PSFLibrary) -> None:
    assert lib.grid[0] * lib.grid[1] > 1  # the field varies: interpolation across nodes is exercised
    ph, z, dx, dy = draws(160, seed=1)
    fast = lib.compute(ph, z, dx, dy)
    exact = lib.exact.compute(ph, z, dx, dy)
    err = rel_l2(fast, exact)
    assert err.max() <= BOUND, err.max()
    assert lib.__dict__["_counts"]["exact"] == 0  # all served by the library
    # the measured error stored in the metadata states the same bound
    meta = lib.describe()["error"]
    assert meta["max"] <= BOUND and meta["exact_fraction"] == 0.0 and meta["samples"] == 64


def test_default_model_error_bound_and_speed_structure() -> None:
    """The default exact model (33-px patch, 128-px window), one field node: within the bound."""
    exact = make_exact()
    const = field(np.array([20.0]), np.array([20.0]))[0]
    lib = PSFLibrary.from_field(
        exact, lambda x, y: (np.repeat(const, np.size(x), 0), None), (0, 40, 0, 40), (-0.3, 0.3), error_samples=0
    )
    assert lib.grid == (1, 1)
    n = 48
    rng = np.random.default_rng(2)
    ph = np.repeat(const, n, 0)
    z, dx, dy = rng.uniform(-0.3, 0.3, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    err = rel_l2(lib.compute(ph, z, dx, dy), exact.compute(ph, z, dx, dy))
    assert err.max() <= BOUND, err.max()


def test_table_nodes_reproduce_the_exact_model(lib: PSFLibrary) -> None:
    """On a node, a plane and a sub-pixel grid point the library is the exact model."""
    planes = lib.z_planes
    s = lib.subpixel
    k = lib.exact.n_modes
    ph = np.zeros((4, k))
    ph[:, 1:] = lib.nodes[[0, 0, -1, -1], : k - 1]
    z = planes[[0, 3, 5, -1]]
    dx = np.array([0, 3, s, 5]) / s - 0.5
    dy = np.array([2, 0, 7, s]) / s - 0.5
    fast = lib.compute(ph, z, dx, dy)
    exact = lib.exact.compute(ph, z, dx, dy)
    assert np.abs(fast - exact).max() <= 2e-5 * exact.max()


def test_bit_identical_whatever_the_batch(lib: PSFLibrary) -> None:
    ph, z, dx, dy = draws(30, seed=3)
    z[[4, 9]] = [0.7, -0.9]  # outside the table: exact fallback inside the same call
    ph[12, 7] += 0.05  # foreign aberration: fallback
    ref = lib.compute(ph, z, dx, dy)
    for i in range(30):
        assert np.array_equal(lib.compute(ph[i : i + 1], z[i : i + 1], dx[i : i + 1], dy[i : i + 1])[0], ref[i]), i
    idx = np.random.default_rng(4).permutation(30)[:17]
    assert np.array_equal(lib.compute(ph[idx], z[idx], dx[idx], dy[idx], batch_size=5), ref[idx])


def test_fallbacks_are_the_exact_model(lib: PSFLibrary) -> None:
    ph, z, dx, dy = draws(6, seed=5)
    z[0] = 0.8  # beyond the table
    dx[1] = 0.7  # more than half a pixel
    ph[2, 5] += 0.05  # 0.05 rad RMS away from the Zmap
    ph[3] *= 1.5  # another aberration strength (e.g. zernike.scale)
    out = lib.compute(ph, z, dx, dy)
    ex = lib.exact.compute(ph[:4], z[:4], dx[:4], dy[:4])
    assert np.array_equal(out[:4], ex)
    nodes, weights, res = lib.field_weights(ph, None)
    assert np.all(res[2:4] > lib.tol_rad) and np.all(res[4:] <= lib.tol_rad)
    np.testing.assert_allclose(weights.sum(1), 1.0)


def test_tables_are_rebuilt_identically_after_pickling(lib: PSFLibrary) -> None:
    ph, z, dx, dy = draws(12, seed=6)
    ref = lib.compute(ph, z, dx, dy)
    blob = pickle.dumps(lib)
    assert len(blob) < 200_000  # parameters and nodes only, never the tables
    psf_library.clear_cache()  # as in a fresh worker process
    clone = pickle.loads(blob)
    assert clone.key == lib.key and repr(clone) == repr(lib)
    assert np.array_equal(clone.compute(ph, z, dx, dy), ref)


def test_library_that_serves_nothing_warns_and_stays_exact() -> None:
    exact = make_exact(patch_size=9, window_px=32)
    steep = SyntheticZmap(shape=(300, 300), rms_rad=3.0, seed=1)

    def fn(x, y):
        return steep.coefficients(np.asarray(x) * 6.0, np.asarray(y) * 6.0)

    with pytest.warns(UserWarning, match="serves"):
        lib = PSFLibrary.from_field(exact, fn, (0, 40, 0, 40), (-0.2, 0.2), max_mib=0.05, error_samples=8)
    info = lib.describe()
    assert info["coverage"] < 0.99 and info["error"]["exact_fraction"] > 0


def test_pipeline_fast_mode_metadata_and_frames() -> None:
    over = {"camera": {"model": "none"}, "psf": {"mode": "fast"}}
    cfg_fast = z2t.load_config(small_config(**over))
    cfg_exact = z2t.load_config(small_config(camera={"model": "none"}))
    fast = z2t.simulate(cfg_fast, seed=3)
    exact = z2t.simulate(cfg_exact, seed=3)
    info = fast.psf_info
    assert info["mode"] == "fast" and info["error"]["max"] <= BOUND and info["coverage"] == 1.0
    assert exact.psf_info["mode"] == "exact"
    assert json.loads(fast.attrs()["psf"])["error"]["max"] == info["error"]["max"]
    assert make_psf_model(cfg_fast) is fast.plan.psf  # built once per process for the same Zmap + optics
    a = fast.compute().astype(np.float64)
    b = exact.compute().astype(np.float64) - cfg_exact.background.photons
    a -= cfg_fast.background.photons
    assert np.linalg.norm(a - b) <= BOUND * np.linalg.norm(b)
    rechunked = z2t.simulate(cfg_fast, seed=3, chunk_frames=5, tile_size=16)
    assert np.array_equal(rechunked.compute(), fast.compute())  # chunking-invariant bytes


def test_config_fast_mode_keys() -> None:
    cfg = z2t.load_config({"psf": {"mode": "fast", "fast_dz_um": 0.02, "fast_subpixel": 6}})
    assert cfg.psf.mode == "fast" and cfg.psf.fast_subpixel == 6
    with pytest.raises(ConfigError, match="fast_subpixel"):
        z2t.load_config({"psf": {"fast_subpixel": 5}})
    with pytest.raises(ConfigError, match="psf.mode"):
        z2t.load_config({"psf": {"mode": "library"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="subpixel"):
            PSFLibrary(exact=make_exact(), nodes=np.zeros((1, 20)), grid=(1, 1), node_xy=np.zeros((1, 2)), subpixel=5)


def test_same_bytes_for_any_blas_thread_count() -> None:
    """The per-emitter tap sums (one BLAS call each) do not depend on BLAS threading."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, numpy as np\n"
        "from z2t_dask.physics.optics.psf import PupilPSF\n"
        "from z2t_dask.physics.optics.psf_library import PSFLibrary\n"
        "from z2t_dask.physics.zmap import SyntheticZmap\n"
        "zm = SyntheticZmap(shape=(300, 300), rms_rad=0.35, seed=0)\n"
        "f = lambda x, y: zm.coefficients(np.asarray(x) + 100.0, np.asarray(y) + 50.0)\n"
        "ex = PupilPSF(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=101.11, pixel_size_nm_y=98.83,\n"
        "              patch_size=17, window_px=64)\n"
        "lib = PSFLibrary.from_field(ex, f, (-2, 42, -2, 42), (-0.5, 0.5), error_samples=0)\n"
        "rng = np.random.default_rng(1)\n"
        "n = 64\n"
        "ph, _ = f(rng.uniform(-2, 42, n), rng.uniform(-2, 42, n))\n"
        "out = lib.compute(ph, rng.uniform(-.5, .5, n), rng.uniform(-.5, .5, n), rng.uniform(-.5, .5, n))\n"
        "print(lib.grid, hashlib.sha1(out.tobytes()).hexdigest())\n"
    )
    digests = set()
    for threads in ("1", "4"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(res.stdout.strip())
    assert len(digests) == 1 and "(1, 1)" not in digests.pop()  # a multi-node library, same bytes
