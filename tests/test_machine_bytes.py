"""Same bytes on any machine: the exact PSF uses neither BLAS nor NumPy's per-CPU SIMD math.

A BLAS kernel's summation order and its use of fused multiply-adds depend on the CPU it was
chosen for, so a product computed by BLAS can differ in its last bits from one machine to the
next. OpenBLAS (NumPy's wheels) picks its kernels at run time and ``OPENBLAS_CORETYPE`` forces
another choice: the subprocess test below computes exact PSFs and noiseless samples under the
Haswell (AVX2 + FMA), Sandy Bridge (AVX, no FMA) and Prescott (SSE3) kernels and requires the
same bytes, after checking that a plain float32 ``matmul`` does differ between them (otherwise
it skips: that BLAS does not switch kernels). Before ``pupil_poly`` summed its terms itself, all
five sums of the test differed between Haswell and Sandy Bridge. It also evaluates the synthetic
Zmap (term by term, not a BLAS product). The spectral library (fast mode on whole chips) is not
tested here: it is built with LAPACK and renders with BLAS products (README, "Across machines").

NumPy's own SIMD code is chosen per CPU too: its float32 ``cos``, ``sin`` and ``exp`` give other
bits without AVX2 / FMA. The exact model computes its own (:mod:`z2t_dask.physics.optics.fixed_math`);
a second subprocess test disables NumPy's X86_V3 / X86_V4 code (``NPY_DISABLE_CPU_FEATURES``) and
requires the same bytes.

The kernels of :mod:`z2t_dask.physics.optics.pupil_poly` are checked three ways (NumPy
definition, Python loops, compiled loops) as in ``test_psf_kernels.py``, and against an
independent oracle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_psf_kernels import _three_ways

from z2t_dask.physics.optics import pupil_poly
from z2t_dask.physics.optics.zernike import zernike_basis


def _float64_awkward(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float64 values over many binades, with zeros and -0.0."""
    a = rng.standard_normal(shape) * np.exp2(rng.integers(-40, 40, shape))
    flat = a.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    return a


def _float32_awkward(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return _float64_awkward(rng, shape).astype(np.float32)


def test_combine_modes_adds_the_modes_in_order() -> None:
    rng = np.random.default_rng(1)
    coeffs, mono = _float64_awkward(rng, (37, 21)), _float64_awkward(rng, (21, 6, 6))
    out = pupil_poly.combine_modes(np, coeffs, mono)
    e, a, b = 5, 2, 3
    acc = 0.0  # independent oracle: the same terms added in mode order by Python floats
    for k in range(1, 21):
        acc += float(coeffs[e, k]) * float(mono[k, a, b])
    assert out[e, a, b] == acc
    with pytest.raises(ValueError, match="22 Zernike coefficients"):
        pupil_poly.combine_modes(np, np.zeros((1, 22)), mono)


def test_row_polynomials_kernel_is_its_numpy_definition() -> None:
    rng = np.random.default_rng(2)
    coeffs, mono = _float64_awkward(rng, (43, 21)), _float64_awkward(rng, (21, 6, 6))  # 43 > the NumPy chunk
    linear, v_pow = _float64_awkward(rng, (43, 3)), _float64_awkward(rng, (6, 41))

    def args():
        return (np.full((43, 41, 6), np.nan, np.float32), coeffs.copy(), mono.copy(), 1, linear.copy(), v_pow.copy())

    out = _three_ways(pupil_poly._row_polys, args, (0,))[0]
    for e, r, a in ((7, 30, 4), (42, 0, 1), (0, 40, 0)):
        poly = [0.0] * 6  # oracle: coefficient (a, b) of the polynomial, b = 0 .. 5
        for b in range(6):
            for k in range(1, 21):
                poly[b] += float(coeffs[e, k]) * float(mono[k, a, b])
        if a == 0:
            poly[0] += float(linear[e, 0])
            poly[1] += float(linear[e, 2])
        if a == 1:
            poly[0] += float(linear[e, 1])
        acc = 0.0
        for b in range(6):
            acc += poly[b] * float(v_pow[b, r])
        assert out[e, r, a] == np.float32(acc)
    got = pupil_poly.row_polynomials(np, coeffs, mono, v_pow, linear)
    assert got.flags.c_contiguous and np.array_equal(got, out)
    # an emitter's rows do not depend on the others of the call
    assert np.array_equal(pupil_poly.row_polynomials(np, coeffs[9:10], mono, v_pow, linear[9:10])[0], out[9])


def test_eval_rows_kernel_adds_float32_products_in_order() -> None:
    rng = np.random.default_rng(3)
    rows, u_pow = _float32_awkward(rng, (40, 29, 7)), _float32_awkward(rng, (7, 31))

    def args():
        return (np.full((40, 29, 31), np.nan, np.float32), rows.copy(), u_pow.copy())

    out = _three_ways(pupil_poly._eval_rows, args, (0,))[0]
    for e, r, c in ((0, 0, 0), (39, 28, 30), (17, 3, 22)):
        acc = np.float32(0.0)  # oracle: NumPy float32 scalars, one product and one sum at a time
        for a in range(7):
            acc = np.float32(acc + np.float32(rows[e, r, a] * u_pow[a, c]))
        assert out[e, r, c] == acc
    one = np.empty((1, 29, 31), np.float32)
    assert np.array_equal(pupil_poly.eval_rows(np, rows[17:18], u_pow, one)[0], out[17])


def test_powers_are_repeated_products() -> None:
    x = np.linspace(-1.0, 1.0, 57)
    p = pupil_poly.powers(x, 6)
    assert p.shape == (7, 57) and np.all(p[0] == 1.0)
    for a in range(1, 7):
        assert np.array_equal(p[a], p[a - 1] * x)
        np.testing.assert_allclose(p[a], x**a, rtol=4e-16 * a, atol=0)


def test_the_sums_give_the_zernike_phase() -> None:
    """row_polynomials -> eval_rows is the Zernike sum (plus the linear terms) on the pupil grid."""
    rng = np.random.default_rng(4)
    n_modes = 21
    u = np.linspace(-0.7, 0.7, 25)
    v = np.linspace(-0.7, 0.7, 19)
    coeffs = rng.normal(0, 0.3, (3, n_modes)).astype(np.float32)
    linear = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, -1.5, 2.0]])
    mono = pupil_poly.zernike_monomials(n_modes)
    rows = pupil_poly.row_polynomials(np, coeffs, mono, pupil_poly.powers(v, mono.shape[2] - 1), linear)
    assert rows.dtype == np.float32 and rows.flags.c_contiguous and rows.shape == (3, 19, mono.shape[1])
    u_pow = pupil_poly.powers(u, mono.shape[1] - 1).astype(np.float32)
    phase = pupil_poly.eval_rows(np, rows, u_pow, np.empty((3, 19, 25), np.float32))
    vv, uu = np.meshgrid(v, u, indexing="ij")
    rho, theta = np.hypot(uu, vv), np.arctan2(vv, uu)
    basis = zernike_basis(n_modes, rho, theta)  # (n_modes, 19, 25), Noll order
    for e in range(3):
        ref = np.tensordot(coeffs[e, 1:].astype(np.float64), basis[1:], axes=1)  # piston skipped
        ref += linear[e, 0] + linear[e, 1] * uu + linear[e, 2] * vv
        np.testing.assert_allclose(phase[e], ref, rtol=0, atol=2e-5)


_PROBE = r"""
import hashlib, json, sys
import numpy as np
from threadpoolctl import threadpool_info
import z2t_dask as z2t
from z2t_dask.physics.optics.psf import PupilPSF

def h(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

out = {"blas": [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]}
rng = np.random.default_rng(0)
a, b = rng.normal(size=(64, 40, 7)).astype(np.float32), rng.normal(size=(7, 40)).astype(np.float32)
out["matmul"] = h(np.matmul(a, b))
out["np_cos"] = h(np.cos(a * 30))  # NumPy's float32 SIMD cos: chosen per CPU
rng = np.random.default_rng(5)
n = 12
ph, mag = rng.normal(0, 0.3, (n, 21)), rng.normal(0, 0.1, (n, 21))
z, dx, dy = rng.uniform(-0.8, 0.8, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
kw = dict(wavelength_nm=660.0, na=1.4, pixel_size_nm_x=101.11, pixel_size_nm_y=98.83, patch_size=17)
out["vectorial"] = h(PupilPSF(**kw).compute(ph, z, dx, dy))
out["scalar_mag"] = h(PupilPSF(**kw, vectorial=False).compute(ph, z, dx, dy, mag))
out["water"] = h(PupilPSF(**kw, n_medium=1.33).compute(ph, z + 1.0, dx, dy))
from z2t_dask.physics.zmap import SyntheticZmap
rng = np.random.default_rng(6)
out["synthetic_zmap"] = h(SyntheticZmap().coefficients(rng.uniform(0, 1200, 500), rng.uniform(0, 1200, 500))[0])
cam = {"model": "ideal", "poisson": False}  # noiseless frames: every PSF bit shows
for mode in ("exact", "fast"):
    cfg = z2t.load_config({"emitters": {"frames": 3}, "tiff": {"roi_size": 48}, "camera": cam, "psf": {"mode": mode}})
    out["sample_" + mode] = h(z2t.simulate(cfg, seed=1).frames.compute(scheduler="sync"))
print(json.dumps(out))
"""


def _probe(tmp_path, **env: str) -> dict:
    """Digests of _PROBE in a fresh interpreter with ``env`` added (no PSF cache, one BLAS thread)."""
    full = dict(os.environ, OPENBLAS_NUM_THREADS="1", Z2T_PSF_CACHE="off", **env)
    res = subprocess.run([sys.executable, "-c", _PROBE], env=full, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_same_bytes_under_every_openblas_kernel(tmp_path) -> None:
    runs = {core: _probe(tmp_path, OPENBLAS_CORETYPE=core) for core in ("Haswell", "SandyBridge", "Prescott")}
    kernels = {core: tuple(r.pop("blas")) for core, r in runs.items()}
    matmuls = {r.pop("matmul") for r in runs.values()}
    if any(not k for k in kernels.values()) or len(matmuls) == 1:
        pytest.skip(f"NumPy's BLAS does not switch kernels with OPENBLAS_CORETYPE here ({kernels})")
    assert runs["SandyBridge"] == runs["Haswell"] and runs["Prescott"] == runs["Haswell"], runs


def test_same_bytes_with_numpy_baseline_simd(tmp_path) -> None:
    """NumPy's SIMD code without AVX2 / FMA / AVX-512 (``NPY_DISABLE_CPU_FEATURES``), as on an older CPU:
    its float32 cos / sin / exp change, the PSFs must not (the exact model computes its own)."""
    here = _probe(tmp_path)
    base = _probe(tmp_path, NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR")
    if here.pop("np_cos") == base.pop("np_cos"):
        pytest.skip("NumPy runs the same float32 cos without its X86_V3 / X86_V4 code on this CPU")
    assert here == base, (here, base)
