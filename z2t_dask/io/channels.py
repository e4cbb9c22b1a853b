"""The channel axis of multi-channel stacks: OME-XML channels, NGFF axes and ``omero`` metadata.

A multi-channel sample's stack is ``(T, C, Y, X)``; its provenance attributes carry the channel
table (attribute ``channels``: a JSON list of ``{name, wavelength_nm, ...}``, see
:func:`z2t_dask.sample.channels.channel_table`). The writers of :mod:`z2t_dask.io.tiff`,
:mod:`z2t_dask.io.zarr` and :mod:`z2t_dask.io.hdf5` call these helpers for the C axis:

* OME-TIFF: axes ``TCYX``, one page per (frame, channel) in T-major order, OME ``Channel``
  elements with ``Name``, ``EmissionWavelength`` (nm) and ``Color``;
* OME-Zarr: NGFF axes ``t, c, y, x`` (``c`` of type channel, scale 1) and the ``omero``
  block (channel ``label``, ``color`` hex, display ``window``);
* HDF5: ``frames`` (T, C, Y, X) with attribute ``channel_names``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "channel_colour",
    "channel_table_from_attrs",
    "ngff_with_channels",
    "ome_channel_metadata",
]


def channel_table_from_attrs(attrs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The channel table of a stack's provenance attributes (``channels``, JSON or a list); [] when none."""
    raw = (attrs or {}).get("channels")
    if isinstance(raw, (bytes, str)):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    if not isinstance(raw, list):
        return []
    return [dict(c) for c in raw if isinstance(c, Mapping)]


def channel_colour(wavelength_nm: float | None, index: int) -> str:
    """A display colour ``RRGGBB`` of an emission wavelength (nm): blue < 500, green < 570, yellow < 600,
    red beyond; without a wavelength, green / magenta / cyan by index."""
    if wavelength_nm is None or not np.isfinite(float(wavelength_nm)):
        return ("00FF00", "FF00FF", "00FFFF", "FFFF00")[index % 4]
    w = float(wavelength_nm)
    if w < 500:
        return "0000FF"
    if w < 570:
        return "00FF00"
    if w < 600:
        return "FFFF00"
    return "FF0000"


def _names(table: list[dict[str, Any]], n: int) -> list[str]:
    return [str(table[i].get("name", f"ch{i}")) if i < len(table) else f"ch{i}" for i in range(n)]


def ome_channel_metadata(table: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """tifffile OME metadata of ``n`` channels: ``axes`` ``TCYX`` and ``Channel`` (names, nm, colours).

    OME ``Color`` is a signed 32-bit RGBA integer.
    """
    names = _names(table, n)
    waves = [table[i].get("wavelength_nm") if i < len(table) else None for i in range(n)]
    colours = []
    for i, w in enumerate(waves):
        rgba = int(channel_colour(w, i) + "FF", 16)
        colours.append(rgba - 2**32 if rgba >= 2**31 else rgba)
    channel: dict[str, Any] = {"Name": names, "Color": colours}
    if all(w is not None for w in waves):
        channel["EmissionWavelength"] = [float(w) for w in waves]  # type: ignore[arg-type]
        channel["EmissionWavelengthUnit"] = ["nm"] * n
    return {"axes": "TCYX", "Channel": channel}


def ngff_with_channels(
    attributes: Mapping[str, Any], table: list[dict[str, Any]], n: int, dtype: Any
) -> dict[str, Any]:
    """NGFF group attributes of a ``(t, y, x)`` image turned into ``(t, c, y, x)`` with an ``omero`` block.

    The ``c`` axis (type ``channel``) is inserted after ``t`` with scale 1; ``omero.channels``
    holds each channel's ``label``, ``color`` (hex) and display ``window`` (the dtype's range).
    Works for NGFF 0.4 (``multiscales`` at the top) and 0.5 (under ``ome``).
    """
    out = copy.deepcopy(dict(attributes))
    holder = out["ome"] if "ome" in out else out
    for ms in holder["multiscales"]:
        ms["axes"].insert(1, {"name": "c", "type": "channel"})
        for ds in ms["datasets"]:
            for tr in ds["coordinateTransformations"]:
                if tr.get("type") == "scale":
                    tr["scale"].insert(1, 1.0)
    dt = np.dtype(dtype)
    hi = float(np.iinfo(dt).max) if dt.kind in "iu" else 1.0
    names = _names(table, n)
    channels = []
    for i, name in enumerate(names):
        w = table[i].get("wavelength_nm") if i < len(table) else None
        channels.append(
            {
                "label": name,
                "color": channel_colour(w, i),
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": 0.0, "max": hi, "start": 0.0, "end": hi},
                **({"emission_wavelength_nm": float(w)} if w is not None else {}),
            }
        )
    holder["omero"] = {"channels": channels, "rdefs": {"model": "color", "defaultT": 0}}
    return out
