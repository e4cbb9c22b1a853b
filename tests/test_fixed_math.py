"""The exact PSF's own cos / sin / exp (z2t_dask.physics.optics.fixed_math).

Each kernel runs three ways (NumPy definition, Python loops, compiled loops) with equal bits,
including awkward inputs and the fallback of out-of-range phases; the results are the correctly
rounded float32 values (float64 reference rounded once) on random inputs, which NumPy's own
float32 ``cos`` / ``sin`` are not for ~15 % of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_psf_kernels import _three_ways

from z2t_dask.physics.optics.fixed_math import MAX_PHASE, decay, phasors


@pytest.fixture(autouse=True)
def _quiet():
    with np.errstate(over="ignore", invalid="ignore"):
        yield


def _phases(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Phases over many scales, with zeros, -0.0, quadrant boundaries and values near MAX_PHASE."""
    a = (rng.uniform(-1, 1, shape) * np.exp2(rng.integers(-30, 19, shape))).astype(np.float32)
    flat = a.reshape(-1)
    flat[:12] = [0.0, -0.0, 1e-38, np.pi / 4, np.pi / 2, -np.pi / 2, np.pi, 3 * np.pi / 4, 100.0, -7e5, 7.9e5, 1e-7]
    return a


def test_phasors_three_ways() -> None:
    rng = np.random.default_rng(0)
    phi = _phases(rng, (7, 11, 13))

    def args():
        return (np.full((7, 11, 26), np.nan, np.float32), phi.copy())

    out = _three_ways(phasors, args, (0,))[0]
    x = phi.astype(np.float64)
    assert np.array_equal(out[..., 0::2], np.cos(x).astype(np.float32))
    assert np.array_equal(out[..., 1::2], np.sin(x).astype(np.float32))


@pytest.mark.parametrize("bad", [MAX_PHASE * 2, np.inf, np.nan])
def test_phasors_fall_back_for_the_whole_call(bad: float) -> None:
    rng = np.random.default_rng(1)
    phi = rng.uniform(-50, 50, (3, 5, 7)).astype(np.float32)
    phi[1, 2, 3] = bad

    def args():
        return (np.full((3, 5, 14), 7.0, np.float32), phi.copy())

    out = _three_ways(phasors, args, (0,))[0]
    x = phi.astype(np.float64).reshape(-1)
    want = np.array([math.cos(v) if math.isfinite(v) else math.nan for v in x], np.float32)
    got = out[..., 0::2].reshape(-1)
    assert np.array_equal(got, want, equal_nan=True)


def test_phasors_are_correctly_rounded_where_numpy_is_not() -> None:
    rng = np.random.default_rng(2)
    phi = rng.uniform(-200, 200, (4, 250, 200)).astype(np.float32)  # 2e5 phases
    out = np.empty((4, 250, 400), np.float32)
    phasors(out, phi)
    x = phi.astype(np.float64)
    cr_cos, cr_sin = np.cos(x).astype(np.float32), np.sin(x).astype(np.float32)
    assert np.array_equal(out[..., 0::2], cr_cos) and np.array_equal(out[..., 1::2], cr_sin)
    off = np.count_nonzero(np.cos(phi) != cr_cos)  # NumPy's float32 SIMD cos, for comparison
    assert off > 0.01 * phi.size  # (~15 % here: not a property of ours to keep, only why this exists)


def test_decay_three_ways_and_rounding() -> None:
    rng = np.random.default_rng(3)
    att = (rng.uniform(0, 1, (6, 9, 10)) * np.exp2(rng.integers(-30, 10, (6, 9, 10)))).astype(np.float32)
    att.reshape(-1)[:8] = [0.0, -0.0, 1e-38, 745.0, 800.0, -710.0, np.nan, 0.6931472]
    mask = (rng.random((9, 10)) > 0.3).astype(np.float32)

    def args():
        return (np.full((6, 9, 10), 5.0, np.float32), att.copy(), mask.copy())

    out = _three_ways(decay, args, (0,))[0]
    want = (np.exp(np.clip(-att.astype(np.float64), -200, 90)) * mask).astype(np.float32)
    assert np.array_equal(out, want, equal_nan=True)
