"""NGFF (OME-Zarr) metadata: the group attributes z2t writes and a validator of the layout readers rely on.

One image of axes ``(t, y, x)``: ``t`` of type time with scale 1 (one frame; frames carry no exposure
time, so no unit), ``y`` and ``x`` of type space in micrometer with the camera pixel size in the object
plane. Zarr v2 groups declare NGFF 0.4 (``.zattrs.multiscales``), zarr v3 groups NGFF 0.5
(``attributes.ome``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.errors import NGFFError

__all__ = ["NGFF_VERSIONS", "NGFFError", "ngff_attributes", "pixel_size_from_ngff", "validate_ngff"]

#: NGFF version written for each zarr format.
NGFF_VERSIONS = {2: "0.4", 3: "0.5"}

_SPACE_UNITS = frozenset(
    "angstrom attometer centimeter decimeter exameter femtometer foot gigameter hectometer inch kilometer "
    "megameter meter micrometer mile millimeter nanometer parsec petameter picometer terameter yard "
    "yoctometer yottameter zeptometer zettameter".split()
)
_TIME_UNITS = frozenset(
    "attosecond centisecond day decisecond exasecond femtosecond gigasecond hectosecond hour kilosecond "
    "megasecond microsecond millisecond minute nanosecond petasecond picosecond second terasecond "
    "yoctosecond yottasecond zeptosecond zettasecond".split()
)


def ngff_attributes(
    zarr_format: int, pixel_size_nm: tuple[float, float], *, name: str = "frames", path: str = "0"
) -> dict[str, Any]:
    """Group attributes declaring one ``(t, y, x)`` image in NGFF 0.4 (zarr v2) or 0.5 (zarr v3).

    Parameters
    ----------
    zarr_format : {2, 3}
        Zarr format of the group.
    pixel_size_nm : (float, float)
        Camera pixel size (x, y) in nm (object space); stored as the y/x scale in micrometer.
    name : str
        Name of the multiscales image.
    path : str
        Array path of the (single) resolution level.
    """
    px_x, px_y = (float(v) for v in pixel_size_nm)
    if not all(math.isfinite(v) and v > 0 for v in (px_x, px_y)):
        raise ValueError(f"pixel_size_nm must be two positive sizes (x_nm, y_nm), got {pixel_size_nm!r}")
    multiscale = {
        "name": str(name),
        "axes": [
            {"name": "t", "type": "time"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": [
            {
                "path": path,
                "coordinateTransformations": [{"type": "scale", "scale": [1.0, px_y / 1000.0, px_x / 1000.0]}],
            }
        ],
    }
    if zarr_format == 2:
        return {"multiscales": [{"version": NGFF_VERSIONS[2], **multiscale}]}
    if zarr_format == 3:
        return {"ome": {"version": NGFF_VERSIONS[3], "multiscales": [multiscale]}}
    raise ValueError(f"output.zarr_format must be 2 or 3, got {zarr_format!r}")


def _check_axes(axes: Any, where: str, problems: list[str]) -> int:
    """Check NGFF axes; return their number (0 if unusable)."""
    if not isinstance(axes, list) or not 2 <= len(axes) <= 5:
        problems.append(f"{where}.axes must be a list of 2 to 5 axes, got {axes!r}")
        return 0
    names, kinds = [], []
    for i, ax in enumerate(axes):
        if not isinstance(ax, Mapping) or not isinstance(ax.get("name"), str):
            problems.append(f"{where}.axes[{i}] must be an object with a string 'name', got {ax!r}")
            return 0
        names.append(ax["name"])
        kind = ax.get("type")
        kinds.append(kind)
        unit = ax.get("unit")
        if kind == "space" and unit is not None and unit not in _SPACE_UNITS:
            problems.append(f"{where}.axes[{i}] ({ax['name']}): space unit {unit!r} is not an NGFF unit")
        if kind == "time" and unit is not None and unit not in _TIME_UNITS:
            problems.append(f"{where}.axes[{i}] ({ax['name']}): time unit {unit!r} is not an NGFF unit")
    if len(set(names)) != len(names):
        problems.append(f"{where}.axes names must be unique, got {names}")
    n_space, n_time, n_chan = kinds.count("space"), kinds.count("time"), kinds.count("channel")
    if n_space not in (2, 3):
        problems.append(f"{where}.axes must have 2 or 3 axes of type 'space', got {n_space}")
    if n_time > 1 or n_chan > 1:
        problems.append(f"{where}.axes may have at most one 'time' and one 'channel' axis")
    rank = {"time": 0, "channel": 1, "space": 3}
    order = [rank.get(k, 2) if isinstance(k, str) else 2 for k in kinds]
    if order != sorted(order):
        problems.append(f"{where}.axes must be ordered time, channel, (custom), space; got types {kinds}")
    return len(axes)


def _check_transforms(transforms: Any, ndim: int, where: str, problems: list[str]) -> list[float] | None:
    """Check an NGFF coordinateTransformations list (one scale, then an optional translation)."""
    if not isinstance(transforms, list) or not 1 <= len(transforms) <= 2:
        problems.append(f"{where}.coordinateTransformations must list a scale and an optional translation")
        return None
    kinds = [t.get("type") if isinstance(t, Mapping) else None for t in transforms]
    if kinds[0] != "scale" or (len(kinds) == 2 and kinds[1] != "translation"):
        problems.append(f"{where}.coordinateTransformations must be [scale] or [scale, translation], got {kinds}")
        return None
    scale = None
    for t in transforms:
        key = t["type"]
        values = t.get(key)
        if (
            not isinstance(values, list)
            or len(values) != ndim
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        ):
            problems.append(f"{where} {key} must be {ndim} finite numbers, got {values!r}")
            return None
        if key == "scale":
            if not all(v > 0 for v in values):
                problems.append(f"{where} scale must be positive, got {values}")
            scale = [float(v) for v in values]
    return scale


def validate_ngff(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that a folder is an NGFF image (0.4 for zarr v2, 0.5 for zarr v3); return its multiscales.

    Checks the rules that readers such as napari rely on: the version matches the zarr format;
    ``multiscales`` is a non-empty list; axes are 2-5 uniquely named axes with 2-3 of type
    space, at most one time and one channel axis, in time-channel-space order, with NGFF units;
    every dataset path is an array of the axes' dimensionality whose first transformation is a
    positive scale of that length (optionally followed by a translation), levels ordered from
    the finest; zarr v3 ``dimension_names`` (when present) equal the axis names.

    Returns
    -------
    dict
        The first multiscales entry (with its ``version``).

    Raises
    ------
    NGFFError
        Listing every problem found (the message names the file and the field).
    """
    import zarr

    root = Path(path)
    try:
        group = zarr.open_group(store=str(root), mode="r")
    except Exception as exc:  # noqa: BLE001 - report any failure to open as a layout error
        raise NGFFError(f"{root}: not a zarr group ({exc})") from None
    zf = group.metadata.zarr_format
    attrs = dict(group.attrs)
    problems: list[str] = []
    if zf == 3:
        ome = attrs.get("ome")
        if not isinstance(ome, Mapping):
            raise NGFFError(f"{root}: zarr v3 group without an 'ome' attribute (NGFF 0.5)")
        version = ome.get("version")
        multiscales = ome.get("multiscales")
        if version != NGFF_VERSIONS[3]:
            problems.append(f"ome.version must be {NGFF_VERSIONS[3]!r} for zarr v3, got {version!r}")
    else:
        multiscales = attrs.get("multiscales")
        version = None
    if not isinstance(multiscales, list) or not multiscales:
        raise NGFFError(f"{root}: 'multiscales' must be a non-empty list, got {multiscales!r}")
    for m, ms in enumerate(multiscales):
        where = f"multiscales[{m}]"
        if not isinstance(ms, Mapping):
            problems.append(f"{where} must be an object")
            continue
        if zf == 2 and ms.get("version") != NGFF_VERSIONS[2]:
            problems.append(f"{where}.version must be {NGFF_VERSIONS[2]!r} for zarr v2, got {ms.get('version')!r}")
        ndim = _check_axes(ms.get("axes"), where, problems)
        datasets = ms.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            problems.append(f"{where}.datasets must be a non-empty list")
            continue
        previous = None
        for d, ds in enumerate(datasets):
            dwhere = f"{where}.datasets[{d}]"
            p = ds.get("path") if isinstance(ds, Mapping) else None
            if not isinstance(p, str):
                problems.append(f"{dwhere}.path must be a string")
                continue
            try:
                arr = zarr.open_array(store=str(root / p), mode="r")
            except Exception:  # noqa: BLE001
                problems.append(f"{dwhere}.path {p!r} is not an array in {root}")
                continue
            if ndim and arr.ndim != ndim:
                problems.append(f"{dwhere} array {p!r} has {arr.ndim} dimensions but there are {ndim} axes")
            names = getattr(arr.metadata, "dimension_names", None)
            axes_names = [a["name"] for a in ms["axes"]] if ndim else None
            if names is not None and axes_names is not None and list(names) != axes_names:
                problems.append(f"{dwhere} dimension_names {list(names)} differ from the axes {axes_names}")
            scale = _check_transforms(ds.get("coordinateTransformations"), ndim or arr.ndim, dwhere, problems)
            if scale is not None and previous is not None and any(a > b for a, b in zip(previous, scale)):
                problems.append(f"{dwhere} scale {scale} is finer than the previous level {previous}")
            previous = scale if scale is not None else previous
        if "coordinateTransformations" in ms:
            _check_transforms(ms["coordinateTransformations"], ndim, f"{where}", problems)
    if problems:
        raise NGFFError(f"{root}: not a valid NGFF image:\n  " + "\n  ".join(problems))
    first = dict(multiscales[0])
    first.setdefault("version", version)
    return first


def pixel_size_from_ngff(attrs: Mapping[str, Any]) -> tuple[float, float] | None:
    """Camera pixel size ``(x_nm, y_nm)`` from a group's NGFF attributes (the first level's scale).

    Parameters
    ----------
    attrs : mapping
        Group attributes (``ome.multiscales`` of NGFF 0.5 or ``multiscales`` of 0.4).

    Returns
    -------
    (float, float) or None
        None when the attributes declare no spatial scale in a known length unit.
    """
    factor = {"nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "meter": 1e9}
    ome = attrs.get("ome")
    multiscales: Any = ome.get("multiscales") if isinstance(ome, Mapping) else attrs.get("multiscales")
    try:
        ms = multiscales[0]
        axes = ms["axes"]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        by_name = {ax["name"]: (float(s), ax.get("unit")) for ax, s in zip(axes, scale)}
        sizes = tuple(by_name[n][0] * factor[by_name[n][1]] for n in ("x", "y"))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return sizes  # type: ignore[return-value]
