"""The on-disk cache of spectral PSF libraries: loaded = built (same bytes), damaged or foreign entries rebuilt."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.engine.assembly import exact_psf_model, make_psf_model
from z2t_dask.physics.optics import psf_library, psf_spectral, psf_store
from z2t_dask.physics.optics.psf_spectral import SpectralLibrary

#: A ROI whose table library exceeds psf.fast_max_mib: the pipeline builds a (small) spectral library.
OVER = {"psf": {"mode": "fast", "fast_max_mib": 1.0}, "camera": {"model": "none"}}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache on, in a temporary folder; this process's libraries dropped before and after."""
    folder = tmp_path / "psf-cache"
    monkeypatch.setenv(psf_store.ENV, str(folder))
    psf_library.clear_cache()
    yield folder
    psf_library.clear_cache()


def _no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any build of a spectral library (its tables or its field layout) fail."""

    def refuse(*args, **kwargs):
        raise AssertionError("built, not loaded")

    monkeypatch.setattr(psf_spectral, "spectral_tables", refuse)
    monkeypatch.setattr(SpectralLibrary, "from_field", refuse)


def _lib_key() -> str:
    """make_psf_model's key of the one library this process holds."""
    (key,) = psf_library._LIBRARIES._data
    return key


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.z2tpsf"))


def _saved(sample, folder: Path) -> dict[str, bytes]:
    """Every file of a saved sample (stack and emitters.h5, metadata included) by name."""
    out = folder / "sample"  # the same name in both folders: it is part of the stack's metadata
    sample.save(out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_loaded_library_gives_the_bytes_of_the_built_one(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = z2t.load_config(small_config(**OVER))
    built = z2t.simulate(cfg, seed=2)
    assert isinstance(built.plan.psf, SpectralLibrary)
    a = built.compute(scheduler="sync")
    info = built.psf_info
    files = _saved(built, tmp_path / "built")
    names = [p.name.split("-")[1] for p in _entries(cache)]
    assert sorted(names) == ["lib", "tables"]  # the library and its tables, one file each
    assert not list(cache.glob("*.tmp"))  # atomic writes leave no temporary file
    psf_library.clear_cache()  # a fresh process
    with monkeypatch.context() as m:
        _no_build(m)
        loaded = z2t.simulate(cfg, seed=2)
        b = loaded.compute(scheduler="sync")
        assert loaded.plan.psf is not built.plan.psf and loaded.psf_info == info
        assert _saved(loaded, tmp_path / "loaded") == files  # frames, truth and metadata: the same bytes
    assert a.dtype == b.dtype and np.array_equal(a, b)
    # and the cache off: built again, the same bytes
    monkeypatch.setenv(psf_store.ENV, "off")
    psf_library.clear_cache()
    c = z2t.simulate(cfg, seed=2).compute(scheduler="sync")
    assert np.array_equal(a, c)


def test_table_library_loaded_gives_the_same_bytes(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small field's table library (psf.fast_max_mib not binding): stored, loaded, the same frames."""
    cfg = z2t.load_config(small_config(psf={"mode": "fast"}, camera={"model": "none"}))
    built = z2t.simulate(cfg, seed=3)
    assert type(built.plan.psf) is psf_library.PSFLibrary
    a = built.compute(scheduler="sync")
    assert sorted(p.name.split("-")[1] for p in _entries(cache)) == ["lib", "tables"]
    psf_library.clear_cache()
    with monkeypatch.context() as m:
        m.setattr(psf_library.PSFLibrary, "_build_tables", lambda self: pytest.fail("tables built, not loaded"))
        m.setattr(psf_library.PSFLibrary, "from_field", lambda *a, **k: pytest.fail("library built, not loaded"))
        loaded = z2t.simulate(cfg, seed=3)
        assert loaded.psf_info == built.psf_info
        assert np.array_equal(loaded.compute(scheduler="sync"), a)


def test_a_worker_loads_the_tables_of_a_pickled_library(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = make_psf_model(z2t.load_config(small_config(**OVER)))
    assert isinstance(lib, SpectralLibrary)
    rng = np.random.default_rng(5)
    ph = lib.nodes[rng.integers(0, len(lib.nodes), 8)]  # aberrations of the field (lookup nodes)
    phase = np.concatenate([np.zeros((8, 1)), ph[:, : lib.n_modes - 1]], axis=1)
    z, dx, dy = rng.uniform(-0.4, 0.4, 8), rng.uniform(-0.5, 0.5, 8), rng.uniform(-0.5, 0.5, 8)
    ref = lib.compute(phase, z, dx, dy)
    blob = pickle.dumps(lib)
    psf_library.clear_cache()
    with monkeypatch.context() as m:
        _no_build(m)
        clone = pickle.loads(blob)
        assert np.array_equal(clone.compute(phase, z, dx, dy), ref)
        assert clone.__dict__["_counts"]["fast"] == 8


def test_damaged_foreign_or_stale_entries_are_rebuilt(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = z2t.load_config(small_config(**OVER))
    ref = make_psf_model(cfg).describe()
    lib_file = next(p for p in _entries(cache) if p.name.startswith("psf-lib-"))
    tab_file = next(p for p in _entries(cache) if p.name.startswith("spectral-tables-"))
    good_tab = tab_file.read_bytes()

    def rebuilt() -> bool:
        """Whether make_psf_model builds (True) or loads (False) in a fresh process; same library either way."""
        psf_library.clear_cache()
        calls = []
        real = psf_spectral.spectral_tables
        with monkeypatch.context() as m:
            m.setattr(psf_spectral, "spectral_tables", lambda *a, **k: calls.append(1) or real(*a, **k))
            lib = make_psf_model(cfg)
            assert lib.describe() == ref
        return bool(calls)

    assert not rebuilt()
    # a truncated tables file, then one byte flipped in the library's arrays: rebuilt and rewritten
    tab_file.write_bytes(good_tab[: len(good_tab) // 2])
    assert rebuilt() and not rebuilt()  # rewritten: loaded again
    flipped = bytearray(lib_file.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    lib_file.write_bytes(bytes(flipped))
    psf_library.clear_cache()
    assert psf_store.load("psf-lib", "anything") is None
    assert not rebuilt()  # the library was laid out again (its tables still load) and stored again
    assert next(iter(psf_library._LIBRARIES._data)) and psf_store.load("psf-lib", _lib_key()) is not None
    # another key's entry under this name, and entries of other code: not used
    arrays, meta = {"a": np.arange(3.0)}, {"x": 1}
    psf_store.save("t", "key A", arrays, meta)
    psf_store.entry_path("t", "key A").rename(psf_store.entry_path("t", "key B"))
    assert psf_store.load("t", "key B") is None
    psf_store.save("t", "key A", arrays, meta)
    got = psf_store.load("t", "key A")
    assert got is not None and np.array_equal(got[0]["a"], arrays["a"]) and got[1] == meta
    monkeypatch.setattr(psf_store, "code_stamp", lambda: "another version")
    assert psf_store.load("t", "key A") is None


def test_loaded_library_is_checked_against_the_exact_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intact entries whose stored errors or probes disagree with the exact model are not trusted."""
    cfg = z2t.load_config(small_config(**OVER))
    lib = make_psf_model(cfg)
    key = _lib_key()
    got = psf_store.load("psf-lib", key)
    assert got is not None
    arrays, meta = got
    assert psf_store.load_library(key, lib.exact) is not None
    # a probe error that the exact model does not reproduce (entry intact: a valid checksum)
    wrong = dict(arrays, probe_err=arrays["probe_err"] * 1.01 + 1e-6)
    psf_store.save("psf-lib", key, wrong, meta)
    assert psf_store.load_library(key, lib.exact) is None
    # error figures of another measurement (sample count) or impossible ones
    error = meta["info"]["error"]
    for err in ({**error, "samples": 8}, {**error, "max": -0.5}, {**error, "exact_fraction": 1.5}):
        bad = json.loads(json.dumps(meta))
        bad["info"]["error"] = err
        assert psf_store.save("psf-lib", key, arrays, bad) is not None
        assert psf_store.load_library(key, lib.exact) is None
    bad = json.loads(json.dumps(meta))
    bad["info"]["error"]["max"] = float("inf")
    assert psf_store.save("psf-lib", key, arrays, bad) is None  # not JSON: never written
    # another exact model (here: another OTF blur) never gets this library
    other = z2t.load_config(small_config(**{**OVER, "psf": {**OVER["psf"], "otf_sigma_nm": 5.0}}))
    psf_store.save("psf-lib", key, arrays, meta)
    assert psf_store.load_library(key, exact_psf_model(other)) is None
    assert psf_store.load_library(key, lib.exact) is not None


def test_cache_folder_switch_and_unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(psf_store.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert psf_store.cache_dir() == tmp_path / "xdg" / "z2t_dask" / "psf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert psf_store.cache_dir() == Path.home() / ".cache" / "z2t_dask" / "psf"
    for off in ("off", "0", "False", "none", ""):
        monkeypatch.setenv(psf_store.ENV, off)
        assert psf_store.cache_dir() is None and psf_store.entry_path("t", "k") is None
        assert psf_store.save("t", "k", {"a": np.zeros(2)}, {}) is None and psf_store.load("t", "k") is None
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(psf_store.ENV, str(blocker / "cache"))
    assert psf_store.save("t", "k", {"a": np.zeros(2)}, {}) is None  # not writable: no entry, no error
    assert psf_store.load("t", "k") is None


def test_a_rank_capped_library_is_the_same_in_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """psf.fast_max_mib caps the rank: a worker rebuilding the unpickled library's tables keeps the cap.

    (The cap travels with the pickled library and is part of the tables' cache keys: before, a worker
    rebuilt the uncapped basis and rendered other bytes than the process that built the library.)
    """
    monkeypatch.setenv(psf_store.ENV, "off")
    psf_library.clear_cache()
    capped = z2t.load_config(small_config(psf={"mode": "fast", "fast_max_mib": 0.05}, camera={"model": "none"}))
    lib = make_psf_model(capped)
    assert isinstance(lib, SpectralLibrary) and lib.info["rank"] < 8  # the cap binds (13 without it)
    rng = np.random.default_rng(1)
    phase = np.concatenate([np.zeros((16, 1)), lib.nodes[rng.integers(0, len(lib.nodes), 16), : lib.n_modes - 1]], 1)
    args = (phase, rng.uniform(-0.4, 0.4, 16), rng.uniform(-0.5, 0.5, 16), rng.uniform(-0.5, 0.5, 16))
    ref = lib.compute(*args)
    blob = pickle.dumps(lib)
    psf_library.clear_cache()  # a fresh worker process
    clone = pickle.loads(blob)
    assert np.array_equal(clone.compute(*args), ref) and clone._tables().rank == lib.info["rank"]
    # in one process, the uncapped library of the same field first: the capped one still gets its own tables
    psf_library.clear_cache()
    free = make_psf_model(
        z2t.load_config(small_config(psf={"mode": "fast", "fast_max_mib": 1.0}, camera={"model": "none"}))
    )
    again = make_psf_model(capped)
    assert free.key == again.key and free.info["rank"] > again.info["rank"] == lib.info["rank"]
    assert np.array_equal(again.compute(*args), ref)
    psf_library.clear_cache()


def test_the_folder_keeps_the_recently_used_entries_within_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(psf_store.ENV, str(tmp_path))
    other = [tmp_path / "data.z2tpsf.npz", tmp_path / "notes.txt"]  # not the cache's: never touched
    for f in other:
        f.write_bytes(b"x" * 50_000)
    old_tmp = tmp_path / f".t-{'0' * 32}-abc.tmp"
    new_tmp = tmp_path / f".t-{'1' * 32}-abc.tmp"
    old_tmp.write_bytes(b"half")
    new_tmp.write_bytes(b"half")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    big = {"a": np.zeros(20_000)}  # 160 kB
    monkeypatch.setenv(psf_store.MAX_ENV, "0.4")  # 0.4 MiB: two entries fit, not three
    for i, key in enumerate(("k1", "k2")):
        psf_store.save("t", key, big, {})
        os.utime(psf_store.entry_path("t", key), (1e9 + i, 1e9 + i))  # k1 the least recently used
    assert psf_store.load("t", "k1") is not None  # a load refreshes k1: now k2 is the oldest
    psf_store.save("t", "k3", big, {})
    kept = {k for k in ("k1", "k2", "k3") if psf_store.entry_path("t", k).exists()}
    assert kept == {"k1", "k3"}
    assert all(f.exists() for f in other) and new_tmp.exists() and not old_tmp.exists()
    monkeypatch.setenv(psf_store.MAX_ENV, "0")  # nothing kept but the entry just written
    psf_store.save("t", "k4", big, {})
    assert [k for k in ("k1", "k3", "k4") if psf_store.entry_path("t", k).exists()] == ["k4"]
