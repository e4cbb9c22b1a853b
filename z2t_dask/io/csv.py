"""Ground-truth table as CSV (one row per emitter per frame), written atomically."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.io.atomic import atomic_path

__all__ = ["OPTIONAL_CSV_COLUMNS", "RECORDS_CSV_COLUMNS", "write_records_csv"]

#: Header of the ground-truth CSV, in order.
RECORDS_CSV_COLUMNS = ("frame", "id", "x_px", "y_px", "z_um", "photons", "inside")
#: Columns appended (in this order) when the records hold them: the depth above the coverslip (µm)
#: and the fixed-dipole orientation (rad); CSV header name = record column name.
OPTIONAL_CSV_COLUMNS = ("depth_um", "dipole_polar_rad", "dipole_azimuth_rad")
#: Prefixes of the per-channel columns of a multi-channel sample, appended after those (in the records'
#: order): ``photons_<channel>`` (photons in that channel), ``x_px_<channel>``, ``y_px_<channel>`` (position
#: in that channel's pixels), ``inside_<channel>`` (1.0 / 0.0).
CHANNEL_CSV_PREFIXES = ("photons_", "x_px_", "y_px_", "inside_")


def _text(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip decimal text of each value (vectorised)."""
    return values.astype(str)


def write_records_csv(path: str | os.PathLike[str], records: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Path:
    """Write the per-frame ground truth as CSV with a header, atomically.

    Parameters
    ----------
    path : path-like
        Output file (replaced if it exists).
    records : mapping, or iterable of mappings
        As in ``emitters.h5``: ``frame_ix`` (M,) int, ``id`` (M,) int, ``xyz`` (M, 3)
        [x, y camera px (pixel (r, c) centred at y=r, x=c); z µm], ``phot`` (M,) photons in
        that frame, optional ``inside`` (M,) bool, optional ``depth_um`` (M,) µm above the
        coverslip, ``dipole_polar_rad`` and ``dipole_azimuth_rad`` (M,) (fixed dipoles). An
        iterable of such mappings (e.g. the time segments of a long sample) is written part
        after part, one in memory at a time; the first part's optional columns are every part's.

    Returns
    -------
    pathlib.Path
        The final path.

    Notes
    -----
    Columns ``frame, id, x_px, y_px, z_um, photons, inside``, then those of
    :data:`OPTIONAL_CSV_COLUMNS` the records hold; rows in the given order.
    Floats are written as the shortest text that reads back to the same float32 value;
    ``inside`` as 1/0, or empty when ``records`` has no ``inside`` column.
    """
    parts = iter([records] if isinstance(records, Mapping) else records)
    first = next(parts, None)
    optional = tuple(k for k in OPTIONAL_CSV_COLUMNS if isinstance(first, Mapping) and k in first)
    if isinstance(first, Mapping):  # per-channel columns of a multi-channel sample (photons_<channel>, ...)
        optional += tuple(k for k in first if isinstance(k, str) and k.startswith(CHANNEL_CSV_PREFIXES))
    order = ("frame_ix", "id", "x", "y", "z", "phot", "inside", *optional)
    final = Path(path)
    with atomic_path(final) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(RECORDS_CSV_COLUMNS + optional) + "\n")
        for part in itertools.chain([] if first is None else [first], parts):
            columns = _columns(part, optional)
            m = columns["frame_ix"].shape[0]
            step = 65536
            for start in range(0, m, step):
                rows = zip(*(columns[k][start : start + step].tolist() for k in order))
                fh.write("".join(",".join(row) + "\n" for row in rows))
    return final


def _columns(records: Mapping[str, Any], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The text columns of one mapping of records, with the ``optional`` ones (validated; errors name the column)."""
    if not isinstance(records, Mapping):
        raise ValueError(f"records must be a mapping of column name -> array, got {type(records).__name__}")
    for key in ("frame_ix", "id", "xyz", "phot"):
        if key not in records:
            raise ValueError(f"records/{key} is missing (required: frame_ix, id, xyz, phot)")
    xyz = np.asarray(records["xyz"])
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"records/xyz must have shape (M, 3), got {xyz.shape}")
    m = xyz.shape[0]
    columns: dict[str, np.ndarray] = {}
    for key in ("frame_ix", "id"):
        arr = np.asarray(records[key])
        if arr.shape != (m,) or arr.dtype.kind not in "iu":
            raise ValueError(f"records/{key} must be integers of shape ({m},), got {arr.dtype} {arr.shape}")
        columns[key] = arr.astype(np.int64).astype(str)
    phot = np.asarray(records["phot"])
    if phot.shape != (m,) or phot.dtype.kind not in "iuf":
        raise ValueError(f"records/phot must be numbers of shape ({m},), got {phot.dtype} {phot.shape}")
    if xyz.dtype.kind not in "iuf":
        raise ValueError(f"records/xyz must be numbers, got {xyz.dtype}")
    xyz32 = xyz.astype(np.float32, copy=False)
    for i, name in enumerate(("x", "y", "z")):
        columns[name] = _text(xyz32[:, i])
    columns["phot"] = _text(phot.astype(np.float32, copy=False))
    if "inside" in records:
        inside = np.asarray(records["inside"])
        if inside.shape != (m,) or inside.dtype.kind not in "biu":
            raise ValueError(f"records/inside must be bool of shape ({m},), got {inside.dtype} {inside.shape}")
        columns["inside"] = np.where(inside.astype(bool), "1", "0")
    else:
        columns["inside"] = np.full(m, "", dtype="<U1")
    for key in optional:
        if key not in records:
            raise ValueError(f"records/{key} is missing in a later part (the first part has it)")
        arr = np.asarray(records[key])
        if arr.shape != (m,) or arr.dtype.kind not in "iuf":
            raise ValueError(f"records/{key} must be numbers of shape ({m},), got {arr.dtype} {arr.shape}")
        columns[key] = _text(arr.astype(np.float32, copy=False))
    return columns
