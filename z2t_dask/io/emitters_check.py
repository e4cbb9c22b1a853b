"""Validation of the tables written to ``emitters.h5`` (:mod:`z2t_dask.io.emitters_h5`).

Each function checks one group's columns (names, shapes, dtypes, finiteness) and returns them cast to
their stored dtypes; every message names the dataset (``records/phot``, ``zernike_coeffs/mag``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["table", "zernike"]


def _column(name: str, value: Any, dtype: np.dtype, length: int | None, width: int | None) -> np.ndarray:
    """Validate and cast one required dataset; ``name`` (its path) appears in errors.

    ``length`` None accepts any number of rows; ``width`` None means a 1-D column.
    """
    arr = np.asarray(value)
    if dtype.kind == "i" and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers (stored as {dtype}), got dtype {arr.dtype}")
    if dtype.kind == "f" and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers (stored as {dtype}), got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and dtype.kind == "i" and arr.size and int(arr.max()) > np.iinfo(dtype).max:
        raise ValueError(f"{name} has values too large for {dtype}")
    expected = (length,) if width is None else (length, width)
    if arr.ndim != len(expected) or any(e is not None and a != e for a, e in zip(arr.shape, expected)):
        shown = tuple("M/N" if e is None else e for e in expected)
        raise ValueError(f"{name} must have shape {shown}, got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def table(group: str, data: Mapping[str, Any], spec: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    """Validate the required columns of a group (length from ``xyz``) and any extras."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{group} must be a mapping of column name -> array, got {type(data).__name__}")
    for key in spec:
        if key not in data:
            raise ValueError(f"{group}/{key} is missing (required: {', '.join(spec)})")
    xyz = _column(f"{group}/xyz", data["xyz"], spec["xyz"], None, 3)
    n = xyz.shape[0]
    out = {"xyz": xyz}
    for key, value in data.items():
        if key == "xyz":
            continue
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            raise ValueError(f"{group} column names must be non-empty strings without '/', got {key!r}")
        if key in spec:
            out[key] = _column(f"{group}/{key}", value, spec[key], n, None)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"{group}/{key} must be numeric or bool, got dtype {arr.dtype}")
            if arr.ndim < 1 or arr.shape[0] != n:
                raise ValueError(f"{group}/{key} must have {n} rows (like {group}/xyz), got shape {arr.shape}")
            out[key] = arr
    return out


def zernike(data: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    """Validate ``zernike_coeffs`` (``phase`` and ``mag``, (n, K), same shape) as float32; {} when empty."""
    if not data:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"zernike_coeffs must be a mapping with 'phase' and 'mag', got {type(data).__name__}")
    out = {}
    for key in ("phase", "mag"):
        if key not in data:
            raise ValueError(f"zernike_coeffs/{key} is missing (both 'phase' and 'mag' are required)")
        arr = np.asarray(data[key])
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ValueError(f"zernike_coeffs/{key} must have shape (N={n}, K), got {arr.shape}")
        out[key] = _column(f"zernike_coeffs/{key}", arr, np.dtype(np.float32), n, arr.shape[1])
    extra = set(data) - {"phase", "mag"}
    if extra:
        raise ValueError(f"zernike_coeffs accepts only 'phase' and 'mag', got extra {sorted(extra)}")
    if out["phase"].shape != out["mag"].shape:
        raise ValueError(
            f"zernike_coeffs/phase {out['phase'].shape} and zernike_coeffs/mag {out['mag'].shape} "
            "must have the same shape"
        )
    return out
