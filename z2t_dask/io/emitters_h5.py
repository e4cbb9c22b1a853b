"""The original tool's ``emitters.h5`` layout: writer (atomic, with units and provenance) and reader.

Layout (names and dtypes exactly as the original's consumers expect)::

    emitters/xyz        float32 (N, 3)   x, y camera px; z µm
    emitters/intensity  float32 (N,)     photons per frame while on
    emitters/t0         float32 (N,)     on-time start, frames
    emitters/on_time    float32 (N,)     on duration, frames
    emitters/id         int64   (N,)     0..N-1
    records/xyz         float32 (M, 3)   position of the emitter in that frame
    records/phot        float32 (M,)     photons in that frame
    records/frame_ix    int64   (M,)     frame index (= TIFF page index)
    records/id          int64   (M,)     emitter id (row into emitters/* and zernike_coeffs/*)
    records/<extra>     any     (M,)     optional columns, e.g. ``inside`` bool
    emitters|records/depth_um                      float32  height above the coverslip, µm (z2t)
    emitters|records/dipole_{polar,azimuth}_rad    float32  fixed-dipole orientation, rad (z2t, fixed dipoles)
    zernike_coeffs/phase, zernike_coeffs/mag   float32 (N, K)   optional
    frames              (T, Y, X)        optional, one HDF5 chunk per frame (v2/v3 loaders)

Additions over the original (ignored by its readers): root attributes (config, seed,
version, conventions; dicts and lists as JSON strings) and a ``units`` attribute on
every dataset. The file carries no timestamps (same inputs, same bytes).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.emitters_check import table as _table
from z2t_dask.io.emitters_check import zernike as _zernike
from z2t_dask.io.h5files import create_group, create_plain_dataset, h5_writer, new_attrs, write_failure_check
from z2t_dask.io.hdf5 import FRAME_COMPRESSIONS, decode_attr, encode_attr, write_frames_dataset

__all__ = [
    "DEFAULT_UNITS",
    "EMITTER_DTYPES",
    "RECORD_DTYPES",
    "XYZ_UNITS",
    "EmittersFile",
    "read_emitters_h5",
    "write_emitters_h5",
    "write_emitters_h5_parts",
]

#: Units string of every ``xyz`` dataset (coordinate convention included).
XYZ_UNITS = "x,y: camera px (pixel (r,c) centred at y=r,x=c); z: um"

#: Required ``emitters/*`` datasets and their dtypes (in the original's order).
EMITTER_DTYPES: dict[str, np.dtype] = {
    "xyz": np.dtype(np.float32),
    "intensity": np.dtype(np.float32),
    "t0": np.dtype(np.float32),
    "on_time": np.dtype(np.float32),
    "id": np.dtype(np.int64),
}

#: Required ``records/*`` datasets and their dtypes.
RECORD_DTYPES: dict[str, np.dtype] = {
    "xyz": np.dtype(np.float32),
    "phot": np.dtype(np.float32),
    "frame_ix": np.dtype(np.int64),
    "id": np.dtype(np.int64),
}

#: Default ``units`` attribute per dataset path (override or extend with ``units=``).
DEFAULT_UNITS: dict[str, str] = {
    "emitters/xyz": XYZ_UNITS,
    "emitters/intensity": "photons/frame (detected photons per full frame while on)",
    "emitters/t0": "frames (start of the on-interval)",
    "emitters/on_time": "frames (duration of the on-interval)",
    "emitters/id": "1 (emitter index 0..N-1)",
    "records/xyz": XYZ_UNITS,
    "records/phot": "photons (detected in this frame)",
    "records/frame_ix": "frame index (0-based, equals the TIFF page index)",
    "records/id": "1 (emitter id: row into emitters/* and zernike_coeffs/*)",
    "records/inside": "bool (emitter inside the simulated field of view)",
    "emitters/depth_um": "um (height above the coverslip: optical.focus_depth_um + z)",
    "records/depth_um": "um (height above the coverslip: optical.focus_depth_um + z)",
    "emitters/dipole_polar_rad": "rad (fixed dipole: polar angle from +z, away from the objective; 0..pi/2)",
    "emitters/dipole_azimuth_rad": "rad (fixed dipole: azimuth from +x towards +y; 0..2pi)",
    "records/dipole_polar_rad": "rad (fixed dipole: polar angle from +z, away from the objective; 0..pi/2)",
    "records/dipole_azimuth_rad": "rad (fixed dipole: azimuth from +x towards +y; 0..2pi)",
    "zernike_coeffs/phase": "1 (phase Zernike coefficients per emitter, original mode order)",
    "zernike_coeffs/mag": "1 (magnitude Zernike coefficients per emitter, original mode order)",
}


@dataclass
class EmittersFile:
    """Contents of an ``emitters.h5`` file.

    Attributes
    ----------
    emitters : dict of str -> numpy.ndarray
        ``xyz``, ``intensity``, ``t0``, ``on_time``, ``id`` and any extra columns.
    records : dict of str -> numpy.ndarray
        ``xyz``, ``phot``, ``frame_ix``, ``id`` and any extra columns (e.g. ``inside``).
    zernike_coeffs : dict of str -> numpy.ndarray
        ``phase`` and ``mag`` (N, K); empty if the group is absent.
    attrs : dict
        Root attributes; JSON strings (objects/arrays) decoded.
    units : dict of str -> str
        ``units`` attribute per dataset path (empty for the original's files).
    frames_shape : tuple of int or None
        Shape of the optional ``frames`` dataset (not loaded unless requested).
    frames : numpy.ndarray or None
        The ``frames`` dataset when read with ``load_frames=True``.
    path : pathlib.Path or None
        File read.
    """

    emitters: dict[str, np.ndarray]
    records: dict[str, np.ndarray]
    zernike_coeffs: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    frames_shape: tuple[int, ...] | None = None
    frames: np.ndarray | None = None
    path: Path | None = None


# --------------------------------------------------------------------------- writer


def write_emitters_h5(
    path: str | os.PathLike[str],
    *,
    emitters: Mapping[str, Any],
    records: Mapping[str, Any],
    zernike_coeffs: Mapping[str, Any] | None,
    attrs: Mapping[str, Any] | None = None,
    frames: Any = None,
    units: Mapping[str, str] | None = None,
    frames_compression: str | None = None,
) -> Path:
    """Write an ``emitters.h5`` in the original layout, plus units and provenance, atomically.

    Parameters
    ----------
    path : path-like
        Output file (replaced if it exists; appears only when complete).
    emitters : mapping
        ``xyz`` (N, 3) [x, y px; z µm], ``intensity`` (N,) photons/frame, ``t0`` (N,)
        frames, ``on_time`` (N,) frames, ``id`` (N,) int; extra (N, ...) columns allowed.
        Cast to float32 / int64.
    records : mapping
        ``xyz`` (M, 3), ``phot`` (M,) photons, ``frame_ix`` (M,) int, ``id`` (M,) int
        (must be in [0, N)); extra (M, ...) columns allowed (e.g. ``inside`` bool).
    zernike_coeffs : mapping or None
        ``phase`` and ``mag`` (N, K), cast to float32. None or empty: no group.
    attrs : mapping, optional
        Root attributes (config, seed, version, conventions, units...). Dicts, lists,
        tuples and None are stored as JSON strings. ``z2t_dask_version`` and
        ``coordinate_convention`` are added when absent.
    frames : array (T, Y, X), ((T, Y, X), iterable) or iterable of frames/blocks, optional
        Movie stored as dataset ``frames`` with one HDF5 chunk per frame (the original's
        v2/v3 training loaders read it). Dask arrays are streamed block by block; with the
        ``(shape, iterable)`` pair the frame count is checked against ``shape[0]``.
    units : mapping, optional
        Extra or overriding ``units`` attributes by dataset path (e.g.
        ``{"frames": "ADU", "records/inside": "bool"}``), merged over ``DEFAULT_UNITS``.
    frames_compression : {None, "none", "gzip", "lzf"}
        HDF5 filter for ``frames`` (gzip at level 1; built into h5py, so every reader can
        open the file).

    Returns
    -------
    pathlib.Path
        The final path.

    Raises
    ------
    ValueError
        Missing dataset, wrong shape or dtype, ids out of range, negative frame index (or
        one beyond ``frames``), or unusable attribute values; the message names the
        dataset or attribute.
    """
    return write_emitters_h5_parts(
        path,
        [(emitters, records, zernike_coeffs)],
        attrs=attrs,
        frames=frames,
        units=units,
        frames_compression=frames_compression,
    )


def write_emitters_h5_parts(
    path: str | os.PathLike[str],
    parts: Iterable[tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any] | None]],
    *,
    n_emitters: int | None = None,
    n_records: int | None = None,
    n_modes: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    frames: Any = None,
    units: Mapping[str, str] | None = None,
    frames_compression: str | None = None,
) -> Path:
    """Write an ``emitters.h5`` from consecutive parts of the truth, one part in memory at a time.

    The layout, validation and atomicity of :func:`write_emitters_h5`; a long sample's truth
    is streamed (e.g. one time segment per part) into datasets created at their final size.

    Parameters
    ----------
    path : path-like
        Output file (replaced if it exists; appears only when complete).
    parts : iterable of (emitters, records, zernike_coeffs)
        Mappings as in :func:`write_emitters_h5`, of consecutive emitters and their records, in
        the order they are to be stored. ``records/id`` are the file's emitter ids (in
        ``[0, n_emitters)``). Every part has the same columns (``zernike_coeffs`` in all or none).
    n_emitters, n_records : int, optional
        Total rows of ``emitters/*`` and ``records/*`` (checked against the parts); needed for
        more than one part, default those of a single part.
    n_modes : int, optional
        Columns K of ``zernike_coeffs/*`` (checked; default that of the first part).
    attrs, frames, units, frames_compression
        As in :func:`write_emitters_h5`.

    Returns the final path. Raises ValueError as :func:`write_emitters_h5` does, and when the
    parts hold other totals than announced or their columns differ (the message names the
    dataset); no file is left behind.
    """
    if (n_emitters is None) != (n_records is None):
        raise ValueError("give both n_emitters and n_records, or neither (a single part)")
    single = n_emitters is None
    n_total, m_total = (0, 0) if n_emitters is None or n_records is None else (int(n_emitters), int(n_records))
    if n_total < 0 or m_total < 0:
        raise ValueError(f"n_emitters and n_records must be >= 0, got {n_emitters}, {n_records}")
    if frames_compression not in FRAME_COMPRESSIONS:
        raise ValueError(f"frames_compression must be one of None, 'none', 'gzip', 'lzf', got {frames_compression!r}")
    root = dict(attrs or {})
    root.setdefault("z2t_dask_version", _package_version())
    root.setdefault(
        "coordinate_convention",
        "x = column, y = row, pixel (r, c) centred at (y=r, x=c), camera px; z in um",
    )
    encoded = {str(k): encode_attr(str(k), v) for k, v in root.items()}
    all_units = {**DEFAULT_UNITS, **dict(units or {})}

    final = Path(path)
    with atomic_path(final) as tmp:
        with h5_writer(tmp) as f:
            new_attrs(f, encoded)
            write_failed = write_failure_check(f)
            written: list[str] = []
            datasets: dict[str, Any] = {}  # path -> dataset (no lookups by name: each costs ~0.3 ms in h5py)
            n_done = m_done = 0
            max_frame = -1
            for i, (emitters, records, zernike) in enumerate(parts):
                em = _table("emitters", emitters, EMITTER_DTYPES)
                rec = _table("records", records, RECORD_DTYPES)
                n, m = em["xyz"].shape[0], rec["xyz"].shape[0]
                zc = _zernike(zernike, n)
                if single:
                    if i:
                        raise ValueError("n_emitters and n_records are required for more than one part")
                    n_total, m_total = n, m
                if n_done + n > n_total or m_done + m > m_total:
                    raise ValueError(
                        f"the parts hold more than n_emitters={n_total} emitters or n_records={m_total} records"
                    )
                ids = rec["id"]
                if ids.size and (ids.min() < 0 or ids.max() >= n_total):
                    raise ValueError(
                        f"records/id must be in [0, {n_total}) (rows of emitters/*), got [{ids.min()}, {ids.max()}]"
                    )
                fix = rec["frame_ix"]
                if fix.size:
                    if fix.min() < 0:
                        raise ValueError(f"records/frame_ix must be >= 0, got minimum {fix.min()}")
                    max_frame = max(max_frame, int(fix.max()))
                tables = {
                    "emitters": (em, n_total, n_done),
                    "records": (rec, m_total, m_done),
                    "zernike_coeffs": (zc, n_total, n_done),
                }
                if i == 0:
                    if n_modes is not None and zc and zc["phase"].shape[1] != n_modes:
                        raise ValueError(
                            f"zernike_coeffs/phase must have {n_modes} columns, got {zc['phase'].shape[1]}"
                        )
                    for group, (table, rows, _) in tables.items():
                        if table:
                            g = create_group(f, group)
                            for key, arr in table.items():
                                shape = (rows, *arr.shape[1:])
                                ds = create_plain_dataset(g, key, shape, arr.dtype)
                                datasets[f"{group}/{key}"] = (ds, shape)
                                written.append(f"{group}/{key}")
                    unknown = set(units or {}) - set(written) - {"frames"}
                    if unknown:
                        raise ValueError(f"units given for datasets that are not written: {sorted(unknown)}")
                for group, (table, _, done) in tables.items():
                    expected = {name.split("/", 1)[1] for name in written if name.startswith(group + "/")}
                    if set(table) != expected:
                        raise ValueError(
                            f"part {i}: {group} columns {sorted(table)} differ from the first part's {sorted(expected)}"
                        )
                    for key, arr in table.items():
                        ds, shape = datasets[f"{group}/{key}"]
                        if arr.shape[1:] != shape[1:]:
                            raise ValueError(f"part {i}: {group}/{key} has shape {arr.shape}, the dataset {shape}")
                        if arr.shape[0]:
                            _write_rows(ds, shape, done, arr)
                            write_failed()
                n_done += n
                m_done += m
            if not written:
                raise ValueError("no parts given (at least one, possibly empty, is needed)")
            if (n_done, m_done) != (n_total, m_total):
                raise ValueError(
                    f"the parts hold {n_done} emitters and {m_done} records, "
                    f"expected n_emitters={n_total} and n_records={m_total}"
                )
            if frames is not None:
                t = write_frames_dataset(f, frames, compression=frames_compression)
                written.append("frames")
                if max_frame >= t:
                    raise ValueError(f"records/frame_ix must be < {t} (frames written), got maximum {max_frame}")
            elif "frames" in (units or {}):
                raise ValueError("units given for datasets that are not written: ['frames']")
            for name in written:
                if name in all_units:
                    target = datasets[name][0] if name in datasets else f[name]
                    new_attrs(target, {"units": str(all_units[name])})
    return final


def _write_rows(ds: Any, shape: tuple[int, ...], start: int, arr: np.ndarray) -> None:
    """Write ``arr`` into rows ``start:start + len(arr)`` of the dataset ``ds`` (a low-level ``DatasetID``
    of ``shape`` and ``arr``'s dtype, see :func:`~z2t_dask.io.h5files.create_plain_dataset`).

    A write of the whole dataset goes straight to the HDF5 library (h5py's slicing machinery costs more
    than the write of a small table); the bytes written are the same.
    """
    from h5py import Dataset, h5s

    if start == 0 and arr.shape == shape:
        ds.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(arr))
    else:
        Dataset(ds)[start : start + arr.shape[0]] = arr


@functools.lru_cache(maxsize=1)
def _package_version() -> str:
    """The installed distribution's version (read once per process: the metadata parse costs ~1.5 ms)."""
    try:
        from importlib.metadata import version

        return version("z2t-dask")
    except Exception:  # not installed (e.g. running from a source tree)
        return "unknown"


# --------------------------------------------------------------------------- reader


def read_emitters_h5(path: str | os.PathLike[str], *, load_frames: bool = False) -> EmittersFile:
    """Read an ``emitters.h5`` (this package's or the original tool's).

    Parameters
    ----------
    path : path-like
        File to read.
    load_frames : bool
        Also load the optional ``frames`` dataset into memory.

    Returns
    -------
    EmittersFile
        All datasets of ``emitters``, ``records`` and ``zernike_coeffs`` (empty if
        absent), root attributes (JSON decoded) and per-dataset units.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FormatError
        If the file is not HDF5 or a required ``emitters/*`` or ``records/*`` dataset is missing
        (the message names the file and the dataset); a ValueError too.
    """
    import h5py

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"emitters file {file} does not exist")
    units: dict[str, str] = {}

    def read_group(f: Any, group: str, required: Iterable[str]) -> dict[str, np.ndarray]:
        for key in required:
            if f"{group}/{key}" not in f:
                raise FormatError(f"{file}: missing dataset '{group}/{key}' (required by the emitters.h5 layout)")
        if group not in f:
            return {}
        out = {}
        for key, obj in f[group].items():
            if isinstance(obj, h5py.Dataset):
                out[key] = obj[()]
                if "units" in obj.attrs:
                    units[f"{group}/{key}"] = str(decode_attr(obj.attrs["units"]))
        return out

    try:
        h5 = h5py.File(file, "r")
    except OSError as exc:
        raise FormatError(f"{file}: not a readable HDF5 file ({exc})") from None
    with h5 as f:
        emitters = read_group(f, "emitters", EMITTER_DTYPES)
        records = read_group(f, "records", RECORD_DTYPES)
        zernike = read_group(f, "zernike_coeffs", ())
        attrs = {key: decode_attr(value) for key, value in f.attrs.items()}
        frames_shape = frames = None
        if "frames" in f and isinstance(f["frames"], h5py.Dataset):
            frames_shape = tuple(f["frames"].shape)
            if "units" in f["frames"].attrs:
                units["frames"] = str(decode_attr(f["frames"].attrs["units"]))
            if load_frames:
                frames = f["frames"][()]
    return EmittersFile(
        emitters=emitters,
        records=records,
        zernike_coeffs=zernike,
        attrs=attrs,
        units=units,
        frames_shape=frames_shape,
        frames=frames,
        path=file,
    )
