"""The per-job shortcuts of the physics layer give exactly the bytes of their plain definitions.

Cubic Zmap interpolation from a cached prefiltered window vs scipy's ``map_coordinates`` per mode,
the early-stopping NaN-plane scan vs a full read, the random streams vs ``SeedSequence`` +
``default_rng``, and the cameras' per-frame code vs straightforward NumPy versions of it.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from z2t_dask.physics import zmap_windows as zw
from z2t_dask.physics.zmap import ZmapError, read_zmap

ORIGINAL = Path("/work/shared/fixtures/original/result_phase_retrieval.h5")


def _maps(path: Path) -> zw.PhaseMaps:
    st = path.stat()
    with h5py.File(path, "r") as f:
        shape = f["z_maps/phase"].shape
    return zw.PhaseMaps(str(path.resolve()), st.st_size, st.st_mtime_ns, shape)


def _points(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points around a random centre, some outside the chip, some on integers and map edges."""
    cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
    span = rng.uniform(0.5, min(max(h, w) / 3, 30.0))
    x = cx + rng.uniform(-span, span, n)
    y = cy + rng.uniform(-span, span, n)
    q = n // 8
    x[:q] = np.round(x[:q])
    y[q : 2 * q] = np.clip(np.round(y[q : 2 * q]), 0, h - 1)
    x[2 * q : 3 * q] = w - 1
    y[3 * q : 4 * q] = 0.0
    x[4 * q : 5 * q] = np.nextafter(np.round(x[4 * q : 5 * q]), -np.inf)
    return x, y


def _assert_cubic_matches_scipy(path: Path, used: frozenset[int], trials: int, seed: int) -> None:
    maps = _maps(path)
    k, h, w = maps.shape
    every = frozenset(range(k))
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        x, y = _points(rng, h, w, int(rng.integers(1, 400)))
        ref = zw.interp_window(maps, x, y, 3, used, str(path))  # scipy map_coordinates per mode
        got = zw.interp_cubic(maps, x, y, used, frozenset(), str(path))
        cols = sorted(used)
        assert got[:, cols].tobytes() == ref[:, cols].tobytes()
        assert not got[:, sorted(every - used)].any()  # modes nobody reads are not interpolated
        again = zw.interp_cubic(maps, x, y, used, every - used, str(path))
        assert again[:, cols].tobytes() == ref[:, cols].tobytes()


@pytest.mark.skipif(not ORIGINAL.is_file(), reason="original Zmap fixture not present")
def test_cubic_interpolation_is_scipys_bit_for_bit_on_the_original_zmap() -> None:
    z = read_zmap(ORIGINAL)
    _assert_cubic_matches_scipy(ORIGINAL, frozenset(range(21)), 8, 1)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-0.5, 39.5, 2000), rng.uniform(-0.5, 39.5, 2000)
    ph, _ = z.coefficients(x, y, method="cubic")
    raw = zw.interp_window(_maps(ORIGINAL), x, y, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the original's invalid legacy modes are ~1e-16: no warning
        from z2t_dask.physics.zmap import legacy_to_noll

        assert np.array_equal(ph, legacy_to_noll(raw, 21))


def test_cubic_interpolation_is_scipys_with_nan_pixels_and_chunked_maps(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    maps = rng.normal(0.0, 0.3, (7, 37, 53))
    maps[2, :5, :9] = np.nan  # NaN pixels mixed with finite ones: filled with the window's mean
    maps[3, 10:20] = np.inf
    maps[6] = np.nan  # a mode nobody reads
    p = tmp_path / "z.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("z_maps/phase", data=maps, chunks=(2, 8, 16), compression="gzip")
    _assert_cubic_matches_scipy(p, frozenset(range(6)), 40, 3)
    with pytest.raises(ZmapError, match=r"z\.h5.*mode 6 is NaN everywhere"):
        zw.interp_cubic(_maps(p), np.array([3.0]), np.array([4.0]), frozenset(range(7)), frozenset(), str(p))


def test_large_invalid_legacy_modes_are_interpolated_for_the_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    maps = rng.normal(0.0, 0.2, (21, 30, 30))
    maps[[6, 7, 11, 12, 15, 18, 19]] = 1e-9  # parity-invalid legacy modes: dropped, too small to mention
    maps[3] = 1e-3  # legacy (1, 0): parity-invalid, dropped with a warning naming its size
    p = tmp_path / "legacy.h5"
    with h5py.File(p, "w") as f:
        f["z_maps/phase"] = maps
    z = read_zmap(p)
    x, y = rng.uniform(0, 29, 50), rng.uniform(0, 29, 50)
    with pytest.warns(UserWarning, match=r"dropped invalid modes \[3, 6.*largest \|coefficient\| 0\.001"):
        z.coefficients(x, y, method="cubic")


def test_nan_plane_scan_stops_early_but_finds_every_empty_plane(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    maps = rng.normal(0.0, 1.0, (9, 40, 33))
    maps[0, :30] = np.nan  # finite only in the last chunk rows
    maps[4] = np.nan
    maps[5, :, :-1] = np.nan  # one finite column, in the last chunk column
    maps[8] = np.nan
    for chunks in ((2, 16, 8), (3, 40, 33), None):
        p = tmp_path / f"z{chunks}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("z_maps/phase", data=maps, chunks=chunks)
        st = p.stat()
        truth = tuple(j for j in range(9) if not np.isfinite(maps[j]).any())
        assert truth == (4, 8)
        assert zw.nan_planes(str(p), st.st_size, st.st_mtime_ns) == truth


def _plain_stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """The definition of a stream (random_streams' docstring)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose, *keys)))


def test_streams_have_the_plain_seedsequence_state_and_draws() -> None:
    from z2t_dask.physics.random_streams import stream

    rng = np.random.default_rng(8)
    special = [0, 1, 5, 42, 2**32 - 1, 2**32, 2**64 + 5, 2**127, 2**130 + 7]
    for _ in range(1500):
        seed = int(rng.choice(special)) if rng.random() < 0.3 else int(rng.integers(0, 2**63))
        if rng.random() < 0.1:
            seed = int(seed) << int(rng.integers(1, 200))  # multi-word seeds
        purpose = int(rng.choice([0, 1, 12, 13, 14, 0x5A, 2**33, 2**70 + 3]))
        keys = [int(rng.choice(special)) if rng.random() < 0.3 else int(rng.integers(0, 5000)) for _ in range(4)]
        keys = keys[: int(rng.integers(0, 5))]
        assert (
            stream(seed, purpose, *keys).bit_generator.state == _plain_stream(seed, purpose, *keys).bit_generator.state
        )
    for key in [(3, 1, 7, 0, 0), (2**40, 14, 1, 9, 2, 3), (0, 0)]:
        a, b = stream(*key), _plain_stream(*key)
        assert np.array_equal(a.normal(size=64), b.normal(size=64))
        assert np.array_equal(a.poisson(100.0, 64), b.poisson(100.0, 64))
        assert a.bit_generator.seed_seq.entropy == key[0]  # the real SeedSequence stands behind it
        assert a.bit_generator.seed_seq.spawn_key == key[1:]
        assert [c.bit_generator.state for c in a.spawn(2)] == [c.bit_generator.state for c in b.spawn(2)]
        copied = copy.deepcopy(a)
        assert np.array_equal(pickle.loads(pickle.dumps(a)).normal(size=8), b.normal(size=8))
        assert np.array_equal(copied.normal(size=8), a.normal(size=8))
    long_key = tuple(range(40))  # beyond the precomputed hash constants: NumPy's own SeedSequence
    assert stream(1, 2, *long_key).bit_generator.state == _plain_stream(1, 2, *long_key).bit_generator.state
    for bad in [(-1, 1), (1, -1), (1, 1, -3)]:
        with pytest.raises(ValueError):
            stream(*bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_cameras_check_frames_that_draw_from_the_floor_table_before_drawing(bad: float) -> None:
    from z2t_dask.physics.camera import EMCCD, SCMOS

    photons = np.full((200, 200), 3.0, np.float32)  # large enough for the floor table
    photons[50:60, 50:60] = 40.0
    photons[7, 9] = bad
    hi = float(photons.max())
    for camera in (EMCCD(), SCMOS()):
        gen = np.random.default_rng(1)
        before = gen.bit_generator.state
        with pytest.raises(ValueError, match=r"finite and >= 0 .*got values in \[" + f"{float(photons.min())}, {hi}"):
            camera(photons, gen)
        assert gen.bit_generator.state == before  # nothing drawn


def test_floor_table_frames_keep_their_bytes() -> None:
    """The table route: floor pixels from the table, the pixels above it through the explicit chain."""
    from z2t_dask.physics.camera import EMCCD
    from z2t_dask.physics.camera.common import _TABLE_MIN_PIXELS

    cam = EMCCD()
    photons = np.full((160, 160), 12.0, np.float32)
    assert photons.size >= _TABLE_MIN_PIXELS
    photons[40:70, 10:30] = np.linspace(12.5, 900.0, 600, dtype=np.float32).reshape(30, 20)
    got = cam(photons, np.random.default_rng(3))
    gen = np.random.default_rng(3)
    ref = cam.floor_sampler(12.0).sample(gen, photons.size).reshape(photons.shape)
    above = np.flatnonzero(photons != np.float32(12.0))
    ref.reshape(-1)[above] = cam.draw_chain(gen, photons.reshape(-1)[above])
    assert got.tobytes() == ref.tobytes()
