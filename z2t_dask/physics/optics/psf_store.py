"""Persistent on-disk cache of built fast PSF libraries (a second run or another worker loads, not builds).

A fast library costs about a second to build (the table library of a small field: its node's
planes x sub-pixel patches; the spectral library of a chip: the exact PSFs of its nodes and
planes, the basis; both: the held-out error measurement); loading it costs milliseconds.
Entries are kept under

* ``$Z2T_PSF_CACHE`` when set (a folder; ``off``, ``0``, ``no``, ``false`` or ``none`` turn the
  cache off),
* else ``$XDG_CACHE_HOME/z2t_dask/psf``, else ``~/.cache/z2t_dask/psf``.

Each entry is one ``.z2tpsf`` file named by the sha256 of its key: a JSON header, then its
arrays' raw bytes (64-byte aligned; read in one call: no pickles, no zip).  The header holds
the full key, a *code stamp* (sha256 of the sources of the optics, Zmap and aberration modules
and of :mod:`z2t_dask.engine.assembly`, with the package, NumPy and SciPy versions) and the
sha256 of every array.  An entry is used only if all three match
and its arrays have the expected shapes, dtypes and finite values; anything else (a damaged,
truncated, foreign or stale file) is rebuilt and replaced.  Writes are atomic (a temporary file
in the same folder, then ``os.replace``); a folder that cannot be written only costs the rebuild.
The folder keeps at most ``$Z2T_PSF_CACHE_MAX_MIB`` (default 2048) MiB of entries: after each
write the least recently used ones (loads refresh an entry's time) are dropped.

Two kinds of entries: a library's layout (``psf-lib``, under
:func:`z2t_dask.engine.assembly.make_psf_model`'s key: field nodes, parameters, the measured
error and four probe emitters with their errors against the exact model, recomputed and compared
on every load: :func:`load_library`) and its tables (``psf-tables`` / ``spectral-tables``, under
the library's own key, which holds every parameter of the exact model; loaded by any process
that unpickles the library).  A loaded library is the built one: the same tables, hence the same
bytes of every output (tested).

This module depends only on the standard library and NumPy (the library classes are imported
when a library is loaded).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ENV",
    "cache_dir",
    "code_stamp",
    "entry_path",
    "load",
    "save",
    "stored_array",
    "save_library",
    "load_library",
]

#: Environment variable: the cache folder, or ``off`` (also ``0``, ``no``, ``false``, ``none``).
ENV = "Z2T_PSF_CACHE"
_OFF = {"", "0", "off", "no", "false", "none", "disable", "disabled"}
#: Environment variable: the most MiB of entries kept (least recently used dropped first; default 2048).
MAX_ENV = "Z2T_PSF_CACHE_MAX_MIB"
_MAX_MIB = 2048.0
_STALE_TMP_S = 3600.0  # temporary files older than this (an interrupted write) are removed
_ENTRY_NAME = re.compile(r"^[a-z][a-z-]*-[0-9a-f]{32}\.z2tpsf$")
_TMP_NAME = re.compile(r"^\.[a-z][a-z-]*-[0-9a-f]{32}-.*\.tmp$")
_FORMAT = 1
_MAGIC = b"Z2T-PSF-CACHE\n"
_PKG = Path(__file__).resolve().parents[2]  # the z2t_dask package folder
_STAMPED = ("physics/optics", "physics/zmap.py", "physics/aberrations.py", "engine/assembly.py")


def cache_dir() -> Path | None:
    """The cache folder (``$Z2T_PSF_CACHE``, ``$XDG_CACHE_HOME/z2t_dask/psf``, ``~/.cache/z2t_dask/psf``).

    Returns
    -------
    Path or None
        None when ``$Z2T_PSF_CACHE`` turns the cache off.
    """
    raw = os.environ.get(ENV)
    if raw is not None:
        return None if raw.strip().lower() in _OFF else Path(raw).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "z2t_dask" / "psf"


@functools.lru_cache(maxsize=1)
def code_stamp() -> str:
    """sha256 of the code a library depends on (sources, package / NumPy / SciPy versions)."""
    import scipy

    from z2t_dask import __version__

    h = hashlib.sha256(repr((_FORMAT, __version__, np.__version__, scipy.__version__)).encode())
    for rel in _STAMPED:
        p = _PKG / rel
        for f in sorted(p.glob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(_PKG).as_posix().encode())
            h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()


def entry_path(kind: str, key: str) -> Path | None:
    """The file of an entry (None when the cache is off)."""
    d = cache_dir()
    if d is None:
        return None
    return d / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.z2tpsf"


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(repr((name, a.dtype.str, a.shape)).encode())
        h.update(a.data)
    return h.hexdigest()


def load(kind: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and header of an entry, or None (off, missing, damaged, another key or code).

    Parameters
    ----------
    kind : str
        Entry kind (file name prefix), e.g. ``"psf-lib"``.
    key : str
        Everything the entry depends on (compared in full with the stored key).

    Returns
    -------
    (dict, dict) or None
        Arrays by name and the JSON header (``meta``: what :func:`save` was given).
    """
    path = entry_path(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        head, arrays = _read(path)
        if (
            head.get("format") != _FORMAT
            or head.get("kind") != kind
            or head.get("key") != key
            or head.get("stamp") != code_stamp()
            or head.get("sha256") != _digest(arrays)
        ):
            return None
        try:
            os.utime(path)  # recently used: kept when the folder is pruned
        except OSError:
            pass
        return arrays, head["meta"]
    except Exception:  # noqa: BLE001 - any unreadable entry is rebuilt
        return None


def _aligned(n: int) -> int:
    return -(-n // 64) * 64


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Header and arrays of an entry file (one read; the arrays are writable views of its bytes)."""
    with open(path, "rb") as fh:  # into one writable buffer (no second copy)
        raw = bytearray(os.fstat(fh.fileno()).st_size)
        if fh.readinto(raw) != len(raw):
            raise ValueError("entry changed while read")
    if raw[: len(_MAGIC)] != _MAGIC:
        raise ValueError("not an entry")
    n = int.from_bytes(raw[len(_MAGIC) : len(_MAGIC) + 8], "little")
    head = json.loads(raw[len(_MAGIC) + 8 : len(_MAGIC) + 8 + n].decode())
    base = _aligned(len(_MAGIC) + 8 + n)
    arrays = {}
    for name, dtype, shape, offset in head["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if dt.hasobject or offset < 0 or base + offset + count * dt.itemsize > len(raw):
            raise ValueError("truncated or foreign entry")
        arrays[name] = np.frombuffer(raw, dt, count, base + offset).reshape(shape)
    return head, arrays


def _write(fh: Any, head: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Magic, header length, JSON header (arrays' dtype, shape, offset after the header), 64-byte aligned arrays."""
    layout, offset = [], 0
    for name, a in arrays.items():
        layout.append([name, a.dtype.str, list(a.shape), offset])
        offset += _aligned(a.nbytes)
    text = json.dumps({**head, "arrays": layout}, allow_nan=False).encode()
    start = len(_MAGIC) + 8 + len(text)
    fh.write(_MAGIC + len(text).to_bytes(8, "little") + text + b"\0" * (_aligned(start) - start))
    for a in arrays.values():
        fh.write(a.reshape(-1).view(np.uint8).data)
        fh.write(b"\0" * (_aligned(a.nbytes) - a.nbytes))


def _max_bytes() -> float:
    try:
        return max(0.0, float(os.environ.get(MAX_ENV, _MAX_MIB))) * 2**20
    except ValueError:
        return _MAX_MIB * 2**20


def _prune(folder: Path, keep: Path) -> None:
    """Drop the least recently used entries beyond ``$Z2T_PSF_CACHE_MAX_MIB`` (never ``keep``) and stale temporaries.

    Only this module's files (``<kind>-<32 hex>.z2tpsf`` and their ``.<...>.tmp`` temporaries) are
    touched: the folder may hold anything else.
    """
    now = time.time()
    entries = []
    try:
        names = list(folder.iterdir())
        total = float(keep.stat().st_size)
    except OSError:
        return
    for f in names:
        try:
            if _TMP_NAME.match(f.name):
                if now - f.stat().st_mtime > _STALE_TMP_S:
                    f.unlink()
            elif _ENTRY_NAME.match(f.name) and f != keep:
                st = f.stat()
                entries.append((st.st_mtime, st.st_size, f))
                total += st.st_size
        except OSError:  # removed meanwhile by another process
            continue
    for _, size, f in sorted(entries):  # oldest first
        if total <= _max_bytes():
            break
        try:
            f.unlink()
            total -= size
        except OSError:
            continue


def save(kind: str, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path | None:
    """Write an entry atomically (a temporary file, then ``os.replace``); None if not written.

    Parameters
    ----------
    kind, key
        As in :func:`load`.
    arrays : mapping of str to ndarray
        Numeric arrays (stored as they are, no pickles).
    meta : mapping
        JSON-serialisable header (floats round-trip exactly).
    """
    path = entry_path(kind, key)
    if path is None:
        return None
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    head = {"format": _FORMAT, "kind": kind, "key": key, "stamp": code_stamp(), "sha256": _digest(arrays)}
    head["meta"] = dict(meta)
    tmp = None
    try:
        json.dumps(head, allow_nan=False)  # a value JSON cannot hold: no entry (ValueError, TypeError)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            _write(fh, head, arrays)  # no fsync: a file cut short by a crash fails its checks and is rebuilt
        os.replace(tmp, path)
        _prune(path.parent, path)
        return path
    except (OSError, ValueError, TypeError):  # a read-only or full disk, a value JSON cannot hold: no entry
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return None


# ---------------------------------------------------------------------- libraries
_LIB = "psf-lib"
_PROBES = 4  # probe emitters checked on every load (exact vs fast, against the stored errors)
#: Per library class: its array and scalar dataclass fields (``exact``, ``info`` and the grids aside).
_FIELDS = {
    "PSFLibrary": (("nodes", "node_xy"), ("with_mag", "z_min_um", "z_max_um", "dz_um", "subpixel", "tol_rad")),
    "SpectralLibrary": (
        ("nodes", "node_xy", "psf_nodes"),
        ("with_mag", "z_min_um", "z_max_um", "dz_um", "subpixel", "tol_rad", "rank_tol", "max_rank", "psf_tol_rad"),
    ),
}


def stored_array(kind: str, key: str, shape: tuple[int, ...], dtype: Any, build: Any) -> np.ndarray:
    """One array from the cache (its shape and dtype checked, all finite), or ``build()`` and stored.

    Parameters
    ----------
    kind, key
        As in :func:`load`.
    shape, dtype
        What the array must be.
    build : callable
        ``build() -> ndarray`` on a miss.
    """
    got = load(kind, key)
    if got is not None:
        a = got[0].get("a")
        if a is not None and a.shape == tuple(shape) and a.dtype == np.dtype(dtype) and np.isfinite(a).all():
            return a
    a = build()
    save(kind, key, {"a": a}, {})
    return a


def _probe_errors(lib: Any, probe: Mapping[str, np.ndarray]) -> np.ndarray:
    """Relative L2 errors (float64) of the library against its exact model on the probe emitters."""
    mag = probe.get("mag")
    args = (probe["phase"], probe["z"], probe["dx"], probe["dy"], mag if mag is not None and mag.size else None)
    counts = lib.__dict__.get("_counts")
    kept = None if counts is None else dict(counts)
    fast = lib.compute(*args).astype(np.float64)
    if kept is None:  # the probes are not the caller's emitters
        lib.__dict__.pop("_counts", None)
    else:
        lib.__dict__["_counts"] = kept
    ref = lib.exact.compute(*args).astype(np.float64)
    n = fast.shape[0]
    num = np.linalg.norm((fast - ref).reshape(n, -1), axis=1)
    return num / np.maximum(np.linalg.norm(ref.reshape(n, -1), axis=1), 1e-300)


def save_library(key: str, lib: Any, field_fn: Any, extent: tuple[float, float, float, float]) -> Path | None:
    """Store a built fast library under ``key`` with probe emitters (its tables are stored when built).

    Parameters
    ----------
    key : str
        Everything the library depends on (:func:`z2t_dask.engine.assembly.make_psf_model`'s key).
    lib : PSFLibrary or SpectralLibrary
        The library (built by its ``from_field``).
    field_fn, extent
        Its field function and extent (the probe emitters' aberrations).
    """
    cls = type(lib).__name__
    if cache_dir() is None or cls not in _FIELDS:
        return None
    names, scalars = _FIELDS[cls]
    rng = np.random.default_rng(np.random.SeedSequence(0, spawn_key=(0x5702E,)))
    x0, x1, y0, y1 = extent
    x, y = rng.uniform(x0, x1, _PROBES), rng.uniform(y0, y1, _PROBES)
    z = rng.uniform(lib.z_min_um, lib.z_max_um, _PROBES)
    dx, dy = rng.uniform(-0.5, 0.5, _PROBES), rng.uniform(-0.5, 0.5, _PROBES)
    ph, mag = field_fn(x, y)
    probe = {
        "phase": np.asarray(ph, np.float32),
        "mag": np.zeros((0, 0), np.float32) if mag is None else np.asarray(mag, np.float32),
        "z": z.astype(np.float32),
        "dx": dx.astype(np.float32),
        "dy": dy.astype(np.float32),
    }
    arrays = {name: getattr(lib, name) for name in names}
    arrays.update({f"probe_{k}": v for k, v in probe.items()})
    arrays["probe_err"] = _probe_errors(lib, probe)
    meta: dict[str, Any] = {name: getattr(lib, name) for name in scalars}
    meta.update(cls=cls, grid=list(lib.grid), info=lib.info, lib_key=lib.key, max_mib=lib.__dict__.get("_max_mib"))
    if cls == "SpectralLibrary":
        meta["psf_grid"] = list(lib.psf_grid)
    return save(_LIB, key, arrays, meta)


def load_library(key: str, exact: Any, error_samples: int = 256) -> Any:
    """The fast library stored under ``key`` for the exact model ``exact``, or None.

    None (the caller builds and stores it again) unless the entry is intact (:func:`load`), its
    library key matches the one rebuilt from ``exact`` and the stored parameters, its measured
    error holds ``error_samples`` consistent figures, and the library reproduces the stored
    errors against ``exact`` on its probe emitters.
    """
    got = load(_LIB, key)
    if got is None:
        return None
    from z2t_dask.physics.optics.psf_library import PSFLibrary
    from z2t_dask.physics.optics.psf_spectral import SpectralLibrary

    arrays, meta = got
    try:
        err = meta["info"]["error"]
        top, p99, mean, frac = err["max"], err["p99"], err["mean"], err["exact_fraction"]
        if err["samples"] != error_samples or not 0.0 <= frac <= 1.0:
            return None
        if top is not None and not (0.0 <= mean <= top and 0.0 <= p99 <= top < np.inf):
            return None
        cls = {"PSFLibrary": PSFLibrary, "SpectralLibrary": SpectralLibrary}[meta["cls"]]
        names, scalars = _FIELDS[meta["cls"]]
        fields: dict[str, Any] = {name: arrays[name] for name in names}
        fields.update({name: meta[name] for name in scalars})
        if cls is SpectralLibrary:
            fields["psf_grid"] = (int(meta["psf_grid"][0]), int(meta["psf_grid"][1]))
        lib = cls(exact=exact, grid=(int(meta["grid"][0]), int(meta["grid"][1])), info=meta["info"], **fields)
        if lib.key != meta["lib_key"]:
            return None
        if meta["max_mib"] is not None:
            lib.__dict__["_max_mib"] = meta["max_mib"]
        probe = {k[len("probe_") :]: v for k, v in arrays.items() if k.startswith("probe_") and k != "probe_err"}
        stored = arrays["probe_err"]
        again = _probe_errors(lib, probe)
    except Exception:  # noqa: BLE001 - a malformed entry is rebuilt
        return None
    if again.shape != stored.shape or not np.all(np.abs(again - stored) <= 1e-9 + 1e-6 * stored):
        return None
    return lib
