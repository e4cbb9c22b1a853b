"""Zmaps: the original result.h5, conventions and units, lazy windows, NaN beads, synthetic maps."""

from __future__ import annotations

import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from z2t_dask.physics.optics.zernike import LEGACY_21_NM, nm_to_noll, osa_to_noll
from z2t_dask.physics.zmap import SyntheticZmap, ZmapError, legacy_to_noll, read_zmap


def test_original_result_h5_reads_with_legacy_convention(original):
    path = original("result_phase_retrieval.h5")
    z = read_zmap(path)
    assert z.shape == (300, 300) and z.convention == "legacy21" and z.units == "rad"
    with h5py.File(path) as f:
        maps = f["z_maps/phase"][()]
    # at a pixel centre the cubic B-spline interpolates exactly: value at (x=c, y=r) is maps[:, r, c]
    r, c = 140, 260  # a bead: coords are (y, x) = (140, 260)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph, _ = z.coefficients(np.array([float(c)]), np.array([float(r)]))
    expect = legacy_to_noll(maps[:, r, c][None], 21, warn=False)[0]
    assert np.allclose(ph[0], expect, atol=1e-5)
    # axis order: x is the column. The maps vary across the field, so swapping x/y would differ
    ph_swapped, _ = z.coefficients(np.array([float(r)]), np.array([float(c)]))
    assert not np.allclose(ph_swapped[0], expect, atol=1e-3)
    # (2, 0) "defocus" of the legacy ordering (l = 8) lands at Noll 4; (4, 4) (l = 16) at Noll 15
    assert expect[3] == pytest.approx(maps[8, r, c], abs=1e-6)
    assert expect[nm_to_noll(4, 4) - 1] == pytest.approx(maps[16, r, c], abs=1e-6)


def test_legacy_invalid_modes_dropped_with_warning():
    coeffs = np.zeros(21)
    coeffs[3] = 0.5  # (1, 0): parity-invalid in the legacy ordering
    coeffs[4] = 0.2  # (2, 2) -> Noll 6
    with pytest.warns(UserWarning, match="dropped invalid modes"):
        out = legacy_to_noll(coeffs)
    assert out[5] == pytest.approx(0.2) and np.count_nonzero(out) == 1
    valid = [l for l, (n, m) in enumerate(LEGACY_21_NM) if (n - abs(m)) % 2 == 0]
    assert len(valid) == 13


def test_window_read_equals_whole_map_interpolation(original):
    path = original("result_phase_retrieval.h5")
    z = read_zmap(path, convention="noll")  # no reordering: compare raw interpolation
    with h5py.File(path) as f:
        maps = f["z_maps/phase"][()].astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.uniform(100, 140, 30)
    y = rng.uniform(30, 60, 30)
    ph, _ = z.coefficients(x, y)
    for j in (0, 4, 8, 16, 20):
        full = map_coordinates(maps[j], np.stack([y, x]), order=3, mode="nearest")
        assert np.allclose(ph[:, j], full, atol=1e-5)


def _write_zmap(path, maps, coords=None, mag=None, ncc=None, **attrs):
    with h5py.File(path, "w") as f:
        f["z_maps/phase"] = maps.astype(np.float32)
        if coords is not None:
            f["coords"] = np.asarray(coords, np.int32)
        if mag is not None:
            f["zernike/coeff_mag"] = np.asarray(mag, np.float32)
            f["zernike/coeff_phase"] = np.asarray(mag, np.float32)
        if ncc is not None:
            f["zernike/mean_ncc"] = np.asarray(ncc, np.float32)
        f.attrs.update(attrs)


def test_declared_osa_waves_convention(tmp_path):
    maps = np.zeros((15, 20, 30))
    maps[12] = 0.05  # OSA 12 = (4, 0) spherical, in waves
    p = tmp_path / "z.h5"
    _write_zmap(p, maps, convention="osa", units="waves")
    z = read_zmap(p)
    ph, mag = z.coefficients(np.array([3.0, 25.5]), np.array([4.0, 10.0]))
    j = osa_to_noll(12)
    assert j == 11
    assert np.allclose(ph[:, j - 1], 0.05 * 2 * np.pi, atol=1e-6)
    assert np.count_nonzero(np.abs(ph) > 1e-9) == 2 and mag is None
    # nm of wavefront -> rad at the given wavelength
    _write_zmap(p, maps * 660.0, convention="osa", units="nm")
    ph_nm, _ = read_zmap(p, wavelength_nm=660.0).coefficients(np.array([3.0]), np.array([4.0]))
    assert ph_nm[0, 10] == pytest.approx(0.05 * 2 * np.pi, rel=1e-5)


def test_nan_beads_ignored_and_magnitude_axes_correct(tmp_path):
    maps = np.zeros((21, 100, 300))
    coords = [[10, 200], [80, 20], [50, 150], [90, 280], [5, 5], [60, 60]]  # (y, x)
    mag = np.zeros((6, 21))
    mag[:, 0] = 1.0
    mag[:, 4] = [0.3, -0.2, 0.1, 0.0, 0.05, -0.1]  # legacy l=4 = (2, 2) -> Noll 6
    mag[5] = np.nan  # a rejected bead
    ncc = [0.95, 0.96, 0.97, 0.95, 0.96, np.nan]
    p = tmp_path / "z.h5"
    _write_zmap(p, maps, coords, mag, ncc)
    z = read_zmap(p)
    assert len(z.beads()["x"]) == 5
    _, m = z.coefficients(np.array([200.0, 20.0]), np.array([10.0, 80.0]))  # at beads 0 and 1 (x, y)
    assert np.all(np.isfinite(m))
    assert m[0, 5] == pytest.approx(0.3, abs=1e-5) and m[1, 5] == pytest.approx(-0.2, abs=1e-5)
    assert np.all(m[:, 0] == 0)  # amplitude piston removed


def test_missing_dataset_and_file_errors(tmp_path):
    with pytest.raises(ZmapError, match="not found"):
        read_zmap(tmp_path / "nope.h5")
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f["coords"] = np.zeros((2, 2), np.int32)
    with pytest.raises(ZmapError, match="z_maps/phase"):
        read_zmap(p)


def test_synthetic_zmap_smooth_realistic_deterministic():
    a = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=0)
    b = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=0)
    c = SyntheticZmap(shape=(1200, 1200), rms_rad=0.35, seed=1)
    x = np.array([599.5, 0.0, 1199.0, 300.0])
    y = np.array([599.5, 0.0, 1199.0, 900.0])
    pa, _ = a.coefficients(x, y)
    assert np.array_equal(pa, b.coefficients(x, y)[0])
    assert not np.allclose(pa, c.coefficients(x, y)[0])
    # RMS pupil phase at the centre equals rms_rad; piston/tip/tilt/defocus are zero
    assert np.sqrt((pa[0] ** 2).sum()) == pytest.approx(0.35, rel=1e-6)
    assert np.all(pa[:, :4] == 0)
    # varies over the field, smoothly (one pixel step changes coefficients by < 1e-3 rad)
    assert np.abs(pa[1] - pa[2]).max() > 0.02
    step = a.coefficients(np.array([300.0, 301.0]), np.array([900.0, 900.0]))[0]
    assert np.abs(step[1] - step[0]).max() < 1e-3


def test_used_source_modes_skip_invalid_legacy_and_extra_modes():
    from z2t_dask.physics.zmap import used_source_modes

    legacy = used_source_modes("legacy21", 21, 21)
    assert len(legacy) == 13  # the 8 parity-invalid legacy modes are never used
    assert used_source_modes("noll", 30, 21) == frozenset(range(21))
    assert used_source_modes("osa", 15, 15) == frozenset(range(15))


def test_all_nan_modes_of_a_zmap_are_refused_but_unused_ones_are_not(tmp_path):
    maps = np.zeros((25, 20, 20))
    maps[22:] = np.nan  # Noll 23..25: beyond n_modes = 21, never read
    p = tmp_path / "z.h5"
    with h5py.File(p, "w") as f:
        f["z_maps/phase"] = maps
    assert read_zmap(p, convention="noll").n_source_modes == 25
    maps[4] = np.nan
    p = tmp_path / "z4.h5"
    with h5py.File(p, "w") as f:
        f["z_maps/phase"] = maps
    with pytest.raises(ZmapError, match=r"z4\.h5.*mode\(s\) \[4\]"):
        read_zmap(p, convention="noll")


def _bead_mags(level: float) -> np.ndarray:
    mag = np.zeros((6, 21))
    mag[:, 0] = 1.0  # amplitude piston: a uniform scale
    mag[:, 4] = level * np.array([3.0, -2.0, 1.0, 0.5, -1.5, 2.5])  # legacy l=4 = (2, 2) -> Noll 6
    return mag


def test_numerically_zero_bead_magnitudes_mean_no_amplitude_map(tmp_path):
    """Magnitudes a phase retrieval left at ~1e-16 give no amplitude map and build no interpolator;
    just above MAG_ZERO they are interpolated as before."""
    from z2t_dask.physics import zmap as zmap_module

    maps = np.zeros((21, 100, 300))
    coords = [[10, 200], [80, 20], [50, 150], [90, 280], [5, 5], [60, 60]]  # (y, x)
    x, y = np.array([200.0, 100.0, 250.0]), np.array([10.0, 50.0, 70.0])
    tiny, small = tmp_path / "tiny.h5", tmp_path / "small.h5"
    _write_zmap(tiny, maps, coords, _bead_mags(1e-16), [0.95] * 6)
    _write_zmap(small, maps, coords, _bead_mags(1e-6), [0.95] * 6)
    built = []
    real = zmap_module._bead_interpolators
    try:
        zmap_module._bead_interpolators = lambda *key: built.append(key) or real(*key)
        assert read_zmap(tiny).coefficients(x, y)[1] is None
        assert built == []  # no interpolator built for numerical zeros
        m = read_zmap(small).coefficients(x, y)[1]
        assert len(built) == 1
    finally:
        zmap_module._bead_interpolators = real
    assert m is not None and m[0, 5] == pytest.approx(3e-6, rel=1e-4)  # at bead 0
    assert 1e-6 / 3 > zmap_module.MAG_ZERO * 1000


def test_a_zmap_without_amplitude_does_not_import_scipy_interpolation(original):
    """The original's result.h5 (bead magnitudes <= 7e-16): no amplitude, no SciPy interpolation import."""
    fixture = original("result_phase_retrieval.h5")
    code = (
        "import sys\n"
        "from z2t_dask.physics.zmap import read_zmap\n"
        "import numpy as np\n"
        f"z = read_zmap({str(fixture)!r})\n"
        "ph, mag = z.coefficients(np.array([10.0, 20.0]), np.array([5.0, 30.0]))\n"
        "print(mag is None, 'scipy.interpolate' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
