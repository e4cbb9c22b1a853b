"""The optional compiled kernels (z2t_dask.compiled): numba loops equal their NumPy definitions bit for bit.

Each kernel is checked three ways on the same inputs: its NumPy definition, its loops run as
plain Python (the arithmetic numba compiles), and the compiled loops (when numba is installed;
the [test] extra installs it). A whole sample is then rendered with and without the compiled
kernels and must give the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask import compiled
from z2t_dask.engine.patch_sums import SMALL_REGION_PX, add_patches
from z2t_dask.physics.optics.table_sum import weighted_rows


def _signal_case(rng: np.random.Generator, h: int, w: int, n_rec: int, ps: int, y0: int = 0, x0: int = 0):
    """Records whose patch centres lie within ps // 2 px of the region (as the renderer keeps them)."""
    c = ps // 2
    u = max(1, n_rec // 2)
    psfs = rng.random((u, ps, ps)).astype(np.float32)
    psfs[0, 0, 0] = 0.0  # zero weights and a -0.0 product must round like the definition
    inv = rng.integers(0, u, n_rec)
    cy = rng.integers(y0 - c, y0 + h + c, n_rec).astype(np.int64)
    cx = rng.integers(x0 - c, x0 + w + c, n_rec).astype(np.int64)
    phot = (rng.random(n_rec) * 5000).astype(np.float32)
    phot[: min(2, n_rec)] = [-0.0, 1e-30][: min(2, n_rec)]
    return psfs, inv, cy, cx, phot


def _run_signal(fn, h, w, case, a, b, y0, x0, bg):
    out = np.full((h, w), np.nan, np.float32)
    acc = np.zeros((h, w), np.float64)
    fn(out, acc, *case, a, b, y0, x0, np.float32(bg))
    assert not acc.any(), "the scratch must be handed back all zero"
    return out


@pytest.mark.parametrize(
    "h, w, n_rec, ps, y0, x0",
    [
        (40, 40, 60, 33, 0, 0),  # W1: a small region, most patches partly outside
        (20, 24, 7, 21, 50, 100),  # a tile away from the origin
        (300, 300, 25, 9, 0, 0),  # larger than SMALL_REGION_PX: sparse boxes
        (260, 270, 900, 15, 5, 3),  # large and densely covered
        (16, 16, 0, 7, 0, 0),  # no record: background only
    ],
)
def test_patch_sums_loops_equal_their_numpy_definition(h, w, n_rec, ps, y0, x0):
    rng = np.random.default_rng(h * 1000 + n_rec)
    case = _signal_case(rng, h, w, n_rec, ps, y0, x0)
    a, b = (1, n_rec - 1) if n_rec > 2 else (0, n_rec)
    ref = _run_signal(add_patches.reference, h, w, case, a, b, y0, x0, 7.25)
    if n_rec:
        assert (ref != np.float32(7.25)).any()
    assert (h * w > SMALL_REGION_PX) == (h >= 256)  # both ways of the NumPy definition are covered
    py = _run_signal(add_patches.loops, h, w, case, a, b, y0, x0, 7.25) if h * w < 5000 or n_rec < 30 else ref
    assert np.array_equal(ref.view(np.uint32), py.view(np.uint32))
    nb = add_patches.compiled()
    if nb is None:
        pytest.skip("numba not installed: the NumPy definition is the one used")
    got = _run_signal(nb, h, w, case, a, b, y0, x0, 7.25)
    assert np.array_equal(ref.view(np.uint32), got.view(np.uint32))


def test_patch_sums_are_the_float64_sums_in_record_order():
    """Against a direct statement of the definition: float64 products summed per pixel in record order."""
    rng = np.random.default_rng(5)
    h, w, ps = 12, 10, 5
    psfs, inv, cy, cx, phot = _signal_case(rng, h, w, 9, ps)
    out = _run_signal(add_patches, h, w, (psfs, inv, cy, cx, phot), 0, 9, 0, 0, 2.0)
    sums = np.zeros((h, w), np.float64)
    for r in range(9):
        for i in range(ps):
            for j in range(ps):
                y, x = cy[r] - ps // 2 + i, cx[r] - ps // 2 + j
                if 0 <= y < h and 0 <= x < w:
                    sums[y, x] = sums[y, x] + np.float64(psfs[inv[r], i, j]) * np.float64(phot[r])
    expected = sums.astype(np.float32) + np.float32(2.0)
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


def _table_case(rng: np.random.Generator, m: int, taps: int, p: int, rows_in_table: int = 50):
    tab = rng.random((rows_in_table, p)).astype(np.float32)
    tab[3, :5] = 0.0
    rows = rng.integers(0, rows_in_table, (m, taps))
    rows[0] = 3
    w = (rng.random((m, taps)) * 1.2 - 0.1).astype(np.float32)  # barycentric weights may be slightly negative
    w[-1] = np.float32(-0.0)
    return rows, w, tab


@pytest.mark.parametrize("m, taps, p", [(300, 6, 1089), (5, 18, 49), (1, 3, 4)])
def test_table_sums_loops_equal_their_numpy_definition(m, taps, p):
    rng = np.random.default_rng(m + taps)
    rows, w, tab = _table_case(rng, m, taps, p)
    idx = rng.permutation(m + 3)[:m]

    def run(fn):
        out = np.full((m + 3, p), np.nan, np.float32)
        fn(out, idx, rows, w, tab)
        return out

    ref = run(weighted_rows.reference)
    direct = np.zeros((m, p), np.float64)
    for k in range(taps):  # the definition: float64 products summed in tap order from 0.0
        direct = direct + w[:, k, None].astype(np.float64) * tab[rows[:, k]].astype(np.float64)
    assert np.array_equal(ref[idx].view(np.uint32), direct.astype(np.float32).view(np.uint32))
    assert np.isnan(np.delete(ref, idx, axis=0)).all()  # other rows untouched
    if m * p < 10_000:
        assert np.array_equal(ref.view(np.uint32), run(weighted_rows.loops).view(np.uint32))
    if weighted_rows.compiled() is None:
        pytest.skip("numba not installed")
    assert np.array_equal(ref.view(np.uint32), run(weighted_rows.compiled()).view(np.uint32))


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_a_sample_has_the_same_bytes_with_and_without_compiled_kernels(mode):
    if not compiled.available():
        pytest.skip("numba not installed: only the NumPy path exists here")
    cfg = small_config(psf={"mode": mode}, emitters={"num_emitters": 60, "frames": 6})
    s = z2t.simulate(cfg, seed=11)
    with_numba = s.frames.compute(scheduler="sync")
    with compiled.numpy_only():
        assert not compiled.available()
        without = z2t.simulate(cfg, seed=11).frames.compute(scheduler="sync")
    assert compiled.available()
    assert with_numba.tobytes() == without.tobytes()
    assert with_numba.max() > with_numba.min()


def test_the_environment_variable_turns_the_kernels_off():
    code = "from z2t_dask import compiled; print(compiled.available())"
    env = {**os.environ, compiled.ENV_VAR: "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_package_does_not_import_numba():
    code = "import sys, z2t_dask, z2t_dask.engine.render; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_numpy_here_is_for_this_thread_only():
    import threading

    calls: list[str] = []
    k = compiled.Kernel(lambda out: None, lambda out: calls.append(threading.current_thread().name))
    try:
        with compiled.numpy_here():
            k(None)  # the NumPy definition here, whatever numba's state
            t = threading.Thread(target=k, args=(None,), name="other")
            t.start()
            t.join()
        k(None)
    finally:
        compiled._KERNELS.remove(k)
    expected_numpy = ["MainThread"] + (["other", "MainThread"] if not compiled.available() else [])
    assert calls == expected_numpy


def test_a_few_exact_psfs_do_not_import_numba():
    """A cached library's probes (4 exact PSFs) must not pay numba's import; many PSFs use it when installed."""
    code = (
        "import sys, numpy as np\n"
        "from z2t_dask.physics.optics.psf import PupilPSF\n"
        "m = PupilPSF(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=100.0, pixel_size_nm_y=100.0, patch_size=15)\n"
        "ph = np.zeros((4, 6)); ph[:, 4] = 0.1\n"
        "few = m.compute(ph, np.zeros(4))\n"
        "print('numba' in sys.modules)\n"
        "many = m.compute(np.repeat(ph, 8, 0), np.zeros(32))\n"
        "print('numba' in sys.modules, np.array_equal(many[:4], few))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.split()
    assert lines[0] == "False"
    assert lines[1] == str(compiled.available()) and lines[2] == "True"
