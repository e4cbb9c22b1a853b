"""The exact PSF's compiled kernels (z2t_dask.physics.optics.polyphase) equal their NumPy definitions bit for bit.

Each kernel runs three ways on the same inputs: its NumPy definition (the code the model ran
before the kernels), its loops as plain Python, and the loops compiled by numba. Then whole
exact PSFs (scalar, vectorial, index mismatch, fixed dipoles, pupil amplitude) are computed with
and without the compiled kernels and must have the same bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import psf_inputs

from z2t_dask import compiled
from z2t_dask.physics.optics import polyphase
from z2t_dask.physics.optics.psf import PupilPSF


@pytest.fixture(autouse=True)
def _overflow_is_data():
    """The awkward inputs overflow float32 on purpose (inf must round the same way on every path)."""
    with np.errstate(over="ignore", invalid="ignore"):
        yield


KERNELS = ("defocus_phase", "masked_rows", "fold_intensity", "polyphase_scatter", "square_accumulate", "pupil_energy")


def _three_ways(kernel: compiled.Kernel, make_args, outputs: tuple[int, ...], python: bool = True) -> list:
    """Run the NumPy definition, the Python loops and the compiled loops on fresh copies of the
    same arguments; assert the ``outputs`` arguments agree bit for bit; return the definition's."""
    ref = make_args()
    kernel.reference(*ref)
    runs = [kernel.loops] if python else []
    nb = kernel.compiled()
    if nb is not None:
        runs.append(nb)
    for fn in runs:
        got = make_args()
        fn(*got)
        for i in outputs:
            a, b = np.ascontiguousarray(ref[i]), np.ascontiguousarray(got[i])  # (an output may be a strided view)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{kernel.__name__} argument {i} differs"
    if nb is None:
        pytest.skip("numba not installed: the NumPy definition is the one used")
    return ref


def _awkward(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """float32 values over many binades, with zeros, -0.0, tiny (subnormal square) and huge values."""
    a = (rng.standard_normal(shape) * scale * np.exp2(rng.integers(-30, 30, shape))).astype(np.float32)
    flat = a.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    flat[5::13] = np.float32(1e-25)  # its square is subnormal in float32
    flat[6::17] = np.float32(3e19)  # its square overflows to inf
    return a


@pytest.mark.parametrize("add_static", [False, True])
def test_defocus_phase(add_static):
    rng = np.random.default_rng(1)
    b, n_r, n_c = 5, 11, 13
    phi, defocus, static = _awkward(rng, (b, n_r, n_c)), _awkward(rng, (n_r, n_c)), _awkward(rng, (n_r, n_c))
    z_nm = (rng.uniform(-3000, 3000, b)).astype(np.float32)
    z_nm[0] = 0.0

    def args():
        return phi.copy(), np.empty_like(phi), defocus, z_nm, static, add_static

    out = _three_ways(polyphase.defocus_phase, args, (0,))[0]
    expected = phi + defocus[None] * z_nm[:, None, None]  # float32 product, then float32 sum
    if add_static:
        expected = expected + static[None]
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


def test_masked_rows_write_the_field_then_zeros_and_leave_the_other_rows():
    rng = np.random.default_rng(2)
    b, n, n_r, n_c = 3, 16, 7, 9
    src = _awkward(rng, (b, n_r, 2 * n_c))
    mask2 = np.repeat((rng.random((n_r, n_c)) < 0.7).astype(np.float32), 2, axis=1)

    def args():
        dst = np.full((b, n, 2 * n), np.nan, np.float32)
        dst[:, n_r:] = 7.0
        return dst, src, mask2

    dst = _three_ways(polyphase.masked_rows, args, (0,))[0]
    assert np.array_equal(dst[:, :n_r, : 2 * n_c], src * mask2[None])
    assert not dst[:, :n_r, 2 * n_c :].any()
    assert (dst[:, n_r:] == 7.0).all()


@pytest.mark.parametrize("n, m", [(12, 12), (12, 6), (12, 4), (9, 3)])
def test_fold_intensity(n, m):
    rng = np.random.default_rng(n * m)
    b = 4
    hv = _awkward(rng, (b, n, 2 * n), 1e-3)

    def args():
        return np.full((b, m, m), np.nan, np.float32), hv.copy()

    inten = _three_ways(polyphase.fold_intensity, args, (0,))[0]
    # the definition, stated directly: squares, then row blocks, then column blocks, then re + im
    sq = hv * hv
    top = sq[:, :m]
    for i in range(1, n // m):
        top = top + sq[:, i * m : (i + 1) * m]
    left = top[:, :, : 2 * m]
    for j in range(1, n // m):
        left = left + top[:, :, 2 * j * m : 2 * (j + 1) * m]
    assert np.array_equal(inten.view(np.uint32), (left[:, :, 0::2] + left[:, :, 1::2]).view(np.uint32))


@pytest.mark.parametrize("f, m, n_r, n_c", [(2, 8, 13, 15), (2, 8, 16, 16), (3, 5, 11, 7), (1, 6, 5, 6)])
def test_polyphase_scatter(f, m, n_r, n_c):
    rng = np.random.default_rng(f + n_r)
    b = 3
    field = (_awkward(rng, (b, n_r, n_c)) + 1j * _awkward(rng, (b, n_r, n_c))).astype(np.complex64)
    sr = -(-n_r // f)

    def args():
        pb = (rng.random((b, f * f, m, m)) + 1j).astype(np.complex64)
        pb[:, :, sr:] = 0
        return pb, field, sr

    pb = _three_ways(polyphase.polyphase_scatter, args, (0,))[0]
    for p in range(f):
        for q in range(f):
            comp = field[:, p::f, q::f]
            full = np.zeros((b, m, m), np.complex64)
            full[:, : comp.shape[1], : comp.shape[2]] = comp
            assert np.array_equal(pb[:, p * f + q], full)


@pytest.mark.parametrize("accumulate, final", [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize("ff", [4, 1, 9])
def test_square_accumulate(accumulate, final, ff):
    rng = np.random.default_rng(ff + 2 * accumulate + final)
    b, m = 3, 6
    hv = _awkward(rng, (b, ff, m, 2 * m), 1e-3)
    acc0 = _awkward(rng, (b, m, 2 * m), 1e-6)

    def args():
        return acc0.copy(), hv.copy(), accumulate, np.full((b, m, m), np.nan, np.float32), final

    acc, _, _, inten, _ = _three_ways(polyphase.square_accumulate, args, (0, 3))
    expected = acc0.copy() if accumulate else None
    for j in range(ff):
        sq = hv[:, j] * hv[:, j]
        expected = sq if expected is None else expected + sq
    assert np.array_equal(acc.view(np.uint32), expected.view(np.uint32))
    if final:
        assert np.array_equal(inten.view(np.uint32), (acc[:, :, 0::2] + acc[:, :, 1::2]).view(np.uint32))
    else:
        assert np.isnan(inten).all()


@pytest.mark.parametrize("n_r, n_c", [(1, 5), (1, 8), (3, 41), (1, 129), (27, 27), (53, 55), (91, 100)])
@pytest.mark.parametrize("weighted, accumulate", [(True, False), (False, True)])
def test_pupil_energy_is_numpys_pairwise_sum(n_r, n_c, weighted, accumulate):
    """Sizes below 8, up to 128 and above (the recursive halves) of NumPy's pairwise summation."""
    rng = np.random.default_rng(n_r * n_c)
    b = 3
    field = (rng.standard_normal((b, n_r, n_c)) + 1j * rng.standard_normal((b, n_r, n_c))).astype(np.complex64)
    field[:, 0, : min(n_c, 3)] = 0
    field *= np.exp2(rng.integers(-12, 12, (b, n_r, n_c))).astype(np.float32)
    weights = rng.random(n_r * n_c) * 3
    e0 = rng.random(b)

    def args():
        return e0.copy(), field, weights, weighted, accumulate

    energy = _three_ways(polyphase.pupil_energy, args, (0,), python=n_r * n_c < 3000)[0]
    v = field.reshape(b, -1).astype(np.complex128)
    p = v.real**2 + v.imag**2
    s = np.sum(p * weights if weighted else p, axis=1)
    assert np.array_equal(energy, e0 + s if accumulate else s)


def test_every_kernel_has_an_example_that_runs():
    for name in KERNELS:
        k = getattr(polyphase, name)
        args = k.example()
        k.reference(*args)
        if k.compiled() is not None:
            k.compiled()(*k.example())


_BASE = {"wavelength_nm": 660.0, "na": 1.4, "pixel_size_nm_x": 101.11, "pixel_size_nm_y": 98.83}


@pytest.mark.parametrize(
    "params, extra",
    [
        ({"window_px": 64}, {}),  # scalar, uniform pupil: f = 1
        ({"window_px": 48, "patch_size": 11}, {"mag": True}),  # scalar, pupil amplitude, folded f = 2
        ({"pixel_size_nm_x": 160.0, "pixel_size_nm_y": 160.0, "patch_size": 9, "window_px": 32}, {}),  # s = 2
        ({"vectorial": True, "window_px": 48, "patch_size": 11}, {}),  # polyphase f = 2
        ({"vectorial": True, "window_px": 48, "patch_size": 11}, {"dipole": True, "mag": True}),
        ({"n_medium": 1.33, "focus_depth_um": 1.0, "window_px": 48, "patch_size": 11}, {}),  # Gibson-Lanni, scalar
        ({"vectorial": True, "n_medium": 1.33, "focus_depth_um": 1.0, "window_px": 48, "patch_size": 11}, {}),
    ],
)
def test_exact_psfs_have_the_same_bytes_with_and_without_the_compiled_kernels(params, extra):
    if not compiled.available():
        pytest.skip("numba not installed: only the NumPy path exists here")
    model = PupilPSF(**{**_BASE, **params})
    # 20 PSFs (>= _FEW_FOR_NUMBA): the compiled kernels run even when nothing has loaded numba yet
    phase, z, d, kw = psf_inputs(model.depth_dependent, 20, 7, **extra)
    with_numba = model.compute(phase, z, d[0], d[1], batch_size=4, **kw)
    otf, norm = model.pixel_otf(phase, z, **kw)
    with compiled.numpy_only():
        without = model.compute(phase, z, d[0], d[1], batch_size=4, **kw)
        otf0, norm0 = model.pixel_otf(phase, z, **kw)
    assert with_numba.tobytes() == without.tobytes()
    assert otf.tobytes() == otf0.tobytes() and norm.tobytes() == norm0.tobytes()
    sums = with_numba.sum(axis=(1, 2))
    assert ((sums > 0.05) & (sums < 1.0)).all()  # real PSFs: light in the patch, not all of it
    assert (with_numba >= -1e-6).all()
