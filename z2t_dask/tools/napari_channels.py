"""napari layers of a multi-channel sample: channel names on the image layers, ground truth per channel.

Each channel's image layer is named after its channel (``<sample> [<channel>]``) and gets its own
truth points at the records' positions in that channel (``records/xy_ch``), inside or outside its
image by ``records/inside_ch``; :mod:`z2t_dask.tools.napari_reader` calls these for samples whose
truth has per-channel columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["channel_labels", "channel_points_layers"]


def channel_labels(attrs: dict[str, Any], n: int) -> list[str]:
    """Names of ``n`` channels from a sample's attributes (``channel_names``), else ``ch 0``, ``ch 1``, ..."""
    names = attrs.get("channel_names")
    if isinstance(names, (str, bytes)):
        try:
            names = json.loads(names)
        except ValueError:
            names = None
    if isinstance(names, list) and len(names) == n:
        return [str(v) for v in names]
    return [f"ch {c}" for c in range(n)]


def channel_points_layers(
    records: Any, attrs: dict[str, Any], scale: Any, name: str, edge: str, points: Callable[..., Any]
) -> list[Any]:
    """Points layers of every channel: ``points(records, keep, scale, name, edge_style)`` on a view of
    the records with that channel's x, y (z unchanged) and inside flags."""
    xy_ch = np.asarray(records["xy_ch"], np.float64)
    inside_ch = np.asarray(records["inside_ch"], bool)
    labels = channel_labels(attrs, xy_ch.shape[1])
    layers = []
    for c, label in enumerate(labels):
        xyz = np.column_stack([xy_ch[:, c], np.asarray(records.xyz, np.float64)[:, 2]])
        view = SimpleNamespace(
            xyz=xyz, frame_ix=records.frame_ix, inside=inside_ch[:, c], id=records.id, phot=records["phot_ch"][:, c]
        )
        inside = inside_ch[:, c]
        base = f"{name} truth [{label}]"
        if edge == "merge":
            keep = np.ones(len(inside), bool)
            layers.append(points(view, keep, scale, base, ~inside))
            continue
        layers.append(points(view, inside, scale, base, np.zeros(int(inside.sum()), dtype=bool)))
        if edge == "separate":
            layers.append(points(view, ~inside, scale, f"{base} (edge)", np.ones(int((~inside).sum()), dtype=bool)))
    return layers
