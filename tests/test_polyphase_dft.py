"""The vectorial PSF's own DFT (z2t_dask.physics.optics.polyphase_dft): a DFT, bit-identical on every path.

The kernel must (1) compute ``sum_j |DFT2(part_j)|^2`` over a field's polyphase parts to float32
accuracy (against NumPy's float64 FFT), (2) give the same bits as its NumPy definition, as its
loops run as plain Python and compiled by numba, and (3) leave whole exact PSFs where the
``scipy.fft`` path puts them (to float32 rounding), with the same bytes with and without numba.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import psf_inputs

from z2t_dask import compiled
from z2t_dask.physics.optics import polyphase_dft
from z2t_dask.physics.optics.polyphase_dft import dft_plan, supported
from z2t_dask.physics.optics.psf import PupilPSF


def _args(vals: np.ndarray, comp: np.ndarray, f: int, m: int) -> tuple:
    plan = dft_plan(m)
    sc = -(-vals.shape[2] // f)
    w1 = -(-sc // 16) * 16
    bufs = tuple(np.full(shape, np.nan, np.float32) for shape in ((m, w1), (m, w1), (m, m), (m, m)))
    acc = np.zeros((vals.shape[0], m, m), np.float32)
    return (acc, vals, comp, f, plan.perm, plan.radix, plan.span, plan.wr, plan.wi, *bufs)


def _field(rng: np.random.Generator, b: int, n_r: int, n_c: int, awkward: bool = False) -> np.ndarray:
    x = (rng.standard_normal((b, n_r, n_c)) + 1j * rng.standard_normal((b, n_r, n_c))).astype(np.complex64)
    if awkward:  # zeros, signed zeros, values over many binades
        flat = x.reshape(-1)
        flat *= np.exp2(rng.integers(-20, 20, flat.size)).astype(np.float32)
        flat[::7] = 0.0
        flat[3::11] = complex(-0.0, -0.0)
        flat[5::13] = complex(-0.0, 1e-20)
    return x


def _expected(vals: np.ndarray, comp: np.ndarray, f: int, m: int) -> np.ndarray:
    """``sum_j |DFT2(part_j)|^2`` of ``vals * comp`` by NumPy's float64 FFT (unnormalised), transposed [kx, ky]."""
    field = vals.astype(np.complex128) * comp.astype(np.complex128)
    b = field.shape[0]
    out = np.zeros((b, m, m))
    for p in range(f):
        for q in range(f):
            part = np.zeros((b, m, m), np.complex128)
            sub = field[:, p::f, q::f]
            part[:, : sub.shape[1], : sub.shape[2]] = sub
            out += np.abs(np.fft.ifft2(part) * (m * m)) ** 2
    return out.transpose(0, 2, 1)


@pytest.mark.parametrize(
    "m, f, n_r, n_c",
    [(2, 1, 2, 1), (4, 2, 7, 8), (8, 2, 5, 3), (16, 1, 9, 16), (32, 2, 29, 31), (64, 2, 53, 55), (64, 3, 50, 41)],
)
def test_sums_of_squared_dfts_to_float32_accuracy(m, f, n_r, n_c):
    rng = np.random.default_rng(m * 10 + f)
    vals, comp = _field(rng, 3, n_r, n_c), _field(rng, 1, n_r, n_c)
    args = _args(vals, comp, f, m)
    polyphase_dft.polyphase_dft(*args)
    expected = _expected(vals, comp, f, m)
    assert np.abs(args[0] - expected).max() <= 1e-6 * expected.max()
    # accumulates: a second call adds the same sums again
    before = args[0].copy()
    polyphase_dft.polyphase_dft(*args)
    assert np.allclose(args[0], 2 * before, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "m, f, n_r, n_c, python, shared_comp",
    [
        (2, 1, 2, 2, True, True),
        (4, 2, 8, 7, True, False),
        (8, 3, 20, 22, True, True),
        (16, 2, 15, 9, True, False),
        (32, 2, 29, 29, False, True),
        (64, 2, 53, 55, False, True),
        (64, 2, 53, 55, False, False),  # per-emitter components (fixed dipoles)
        (64, 1, 27, 27, False, True),
    ],
)
def test_compiled_python_and_numpy_give_the_same_bits(m, f, n_r, n_c, python, shared_comp):
    rng = np.random.default_rng(m + 100 * f)
    vals = _field(rng, 4, n_r, n_c, awkward=True)
    comp = _field(rng, 4 if shared_comp is False else 1, n_r, n_c, awkward=True)
    ref = _args(vals, comp, f, m)
    ref[0][...] = rng.random(ref[0].shape, np.float32)  # accumulation onto existing sums
    start = ref[0].copy()
    polyphase_dft.polyphase_dft.reference(*ref)
    runs = [polyphase_dft.polyphase_dft.loops] if python else []
    nb = polyphase_dft.polyphase_dft.compiled()
    if nb is not None:
        runs.append(nb)
    for fn in runs:
        got = _args(vals, comp, f, m)
        got[0][...] = start
        fn(*got)
        assert np.array_equal(ref[0].view(np.uint32), got[0].view(np.uint32)), fn
    if nb is None:
        pytest.skip("numba not installed: the NumPy definition is the one used")


def test_complex_product_is_four_float32_products_and_two_sums():
    rng = np.random.default_rng(5)
    a = _field(rng, 3, 17, 19, awkward=True)
    b = _field(rng, 1, 17, 19, awkward=True)
    got = polyphase_dft.complex_product(a, b)
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    re = (ar.astype(np.float64) * br).astype(np.float32) - (ai.astype(np.float64) * bi).astype(np.float32)
    im = (ar.astype(np.float64) * bi).astype(np.float32) + (ai.astype(np.float64) * br).astype(np.float32)
    assert np.array_equal(got.real.view(np.uint32), re.view(np.uint32))
    assert np.array_equal(got.imag.view(np.uint32), im.view(np.uint32))
    aliased = a.copy()
    polyphase_dft.complex_product(aliased, b, out=aliased)  # in place, as PupilPSF._to_patches does
    assert np.array_equal(aliased.view(np.uint32), got.view(np.uint32))


def test_multiply_spectra_is_complex_product_on_every_path():
    rng = np.random.default_rng(6)
    spec = _field(rng, 4, 16, 9, awkward=True)
    factor = _field(rng, 1, 16, 9, awkward=True)[0]
    ref = spec.copy()
    polyphase_dft.multiply_spectra.reference(ref, factor)
    assert np.array_equal(ref.view(np.uint32), polyphase_dft.complex_product(spec, factor[None]).view(np.uint32))
    runs = [polyphase_dft.multiply_spectra.loops]
    nb = polyphase_dft.multiply_spectra.compiled()
    if nb is not None:
        runs.append(nb)
    for fn in runs:
        got = spec.copy()
        fn(got, factor)
        assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), fn
    if nb is None:
        pytest.skip("numba not installed: the NumPy definition is the one used")


def test_plan_is_a_permutation_with_unit_twiddles_and_refuses_other_sizes():
    for m in (2, 4, 8, 32, 64, 128, 256):
        plan = dft_plan(m)
        assert sorted(plan.perm.tolist()) == list(range(m))
        assert int(np.prod(plan.radix)) == m
        assert set(plan.radix.tolist()) <= {2, 4} and (plan.radix[1:] == 4).all()
        for s, (r, span) in enumerate(zip(plan.radix, plan.span)):
            w = plan.wr[s, : r - 1, :span].astype(np.float64) + 1j * plan.wi[s, : r - 1, :span]
            assert np.allclose(np.abs(w), 1.0, atol=1e-7)
    for bad in (0, 1, 3, 6, 48, 96, 100):
        assert not supported(bad)
        with pytest.raises(ValueError, match="power of two"):
            dft_plan(bad)


@pytest.mark.parametrize("name", ["polyphase_dft", "multiply_spectra"])
def test_example_runs(name):
    kernel = getattr(polyphase_dft, name)
    kernel.reference(*kernel.example())
    nb = kernel.compiled()
    if nb is not None:
        nb(*kernel.example())


_BASE = {"wavelength_nm": 660.0, "na": 1.4, "pixel_size_nm_x": 101.11, "pixel_size_nm_y": 98.83, "vectorial": True}
_VECTORIAL_CASES = [
    ({"window_px": 64, "patch_size": 11}, {}),  # f = 1
    ({"window_px": 128, "patch_size": 15}, {}),  # the default grids (n_int 64, f = 2)
    ({"window_px": 128, "patch_size": 15}, {"dipole": True, "mag": True}),
    ({"n_medium": 1.33, "focus_depth_um": 1.0, "window_px": 64, "patch_size": 11}, {}),  # Gibson-Lanni
    ({"pixel_size_nm_x": 160.0, "pixel_size_nm_y": 160.0, "patch_size": 9, "window_px": 32}, {}),  # sampling 2
]
# the scalar model transforms its one field the same way (the pupil mask as its "component")
_SCALAR_CASES = [
    ({"vectorial": False, "window_px": 32, "patch_size": 17}, {}),  # f = 1, the 32-px benchmark window
    ({"vectorial": False, "window_px": 128, "patch_size": 15}, {}),  # f = 2
    ({"vectorial": False, "window_px": 128, "patch_size": 15}, {"mag": True}),  # an amplitude: its own energy
    ({"vectorial": False, "n_medium": 1.33, "focus_depth_um": 1.0, "window_px": 64, "patch_size": 11}, {}),
    ({"vectorial": False, "pixel_size_nm_x": 160.0, "pixel_size_nm_y": 160.0, "patch_size": 9, "window_px": 32}, {}),
]
_CASES = _VECTORIAL_CASES + _SCALAR_CASES


def _inputs(model: PupilPSF, extra: dict, n: int = 20):
    return psf_inputs(model.depth_dependent, n, 11, **extra)


@pytest.mark.parametrize("params, extra", _CASES)
def test_exact_psfs_agree_with_the_scipy_fft_path(params, extra):
    model = PupilPSF(**{**_BASE, **params})
    assert model._grids.dft is not None, "the case must use the package's DFT"
    scipy_model = PupilPSF(**{**_BASE, **params})
    scipy_model._grids.dft = None  # the scipy.fft path (ortho-normalised), as for other grid sizes
    phase, z, d, kw = _inputs(model, extra)
    ours = model.compute(phase, z, d[0], d[1], **kw)
    ref = scipy_model.compute(phase, z, d[0], d[1], **kw)
    rel = np.linalg.norm((ours - ref).reshape(len(z), -1), axis=1) / np.linalg.norm(ref.reshape(len(z), -1), axis=1)
    assert rel.max() < 2e-6
    otf, norm = model.pixel_otf(phase, z, **kw)
    otf_ref, norm_ref = scipy_model.pixel_otf(phase, z, **kw)
    np.testing.assert_allclose(norm * np.abs(otf[:, 0, 0]), norm_ref * np.abs(otf_ref[:, 0, 0]), rtol=1e-5)


@pytest.mark.parametrize("params, extra", _CASES)
def test_exact_psfs_have_the_same_bytes_with_and_without_numba(params, extra):
    if not compiled.available():
        pytest.skip("numba not installed: only the NumPy path exists here")
    model = PupilPSF(**{**_BASE, **params})
    phase, z, d, kw = _inputs(model, extra)  # 20 PSFs: enough for the compiled kernels (>= 16)
    with_numba = model.compute(phase, z, d[0], d[1], batch_size=7, **kw)
    with compiled.numpy_only():
        without = model.compute(phase, z, d[0], d[1], batch_size=7, **kw)
    assert with_numba.tobytes() == without.tobytes()


def test_other_grid_sizes_keep_scipy_fft():
    model = PupilPSF(**{**_BASE, "window_px": 48, "patch_size": 11})
    assert model._grids.n_int == 48 and model._grids.dft is None
    phase, z, d, _ = _inputs(model, {}, n=3)
    psf = model.compute(phase, z, d[0], d[1])
    sums = psf.sum(axis=(1, 2))
    assert ((sums > 0.05) & (sums < 1.0)).all()


def test_without_numba_a_warning_says_the_dft_is_slow_once(monkeypatch, caplog):
    from z2t_dask.physics.optics import psf as psf_module

    monkeypatch.setitem(compiled._state, "numba", False)  # as if numba could not be imported
    monkeypatch.setitem(psf_module._SLOW_DFT_WARNED, "done", False)
    model = PupilPSF(**{**_BASE, "window_px": 64, "patch_size": 11})
    phase, z, d, _ = _inputs(model, {})
    with caplog.at_level("WARNING", logger="z2t_dask.physics.optics.psf"):
        model.compute(phase, z, d[0], d[1])
        model.compute(phase, z, d[0], d[1])
    slow = [r for r in caplog.records if "NumPy definition of their DFT" in r.getMessage()]
    assert len(slow) == 1
