"""``z2t inspect`` of a multi-channel sample: photons per channel and the photon split ratio per species.

:func:`channel_stats` summarises the per-channel truth (``records/phot_ch``, ``emitters/species``,
``emitters/ratio``, the ``channels`` / ``species`` attributes of ``emitters.h5``);
:func:`channel_lines` formats it for :mod:`z2t_dask.tools.summary_text`. Single-channel truth
gives nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["channel_lines", "channel_stats"]


def _json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _st(v: np.ndarray) -> dict[str, float] | None:
    v = np.asarray(v, np.float64)
    if v.size == 0:
        return None
    return {
        "min": round(float(v.min()), 4),
        "median": round(float(np.median(v)), 4),
        "mean": round(float(v.mean()), 4),
        "max": round(float(v.max()), 4),
    }


def channel_stats(emitters: Mapping[str, Any], records: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Per-channel photons (per record, photons) and the ratio per species (mean and s.d. per channel).

    Returns ``{}`` for single-channel truth; else ``{"channels": [...], "species": [...]}``.
    """
    if "phot_ch" not in records:
        return {}
    phot_ch = np.asarray(records["phot_ch"])
    table = _json(attrs.get("channels")) or []
    names = [str(c.get("name")) for c in table] if table else [f"ch{c}" for c in range(phot_ch.shape[1])]
    inside = np.asarray(records["inside_ch"]) if "inside_ch" in records else np.ones(phot_ch.shape, bool)
    channels = []
    for c, name in enumerate(names[: phot_ch.shape[1]]):
        entry = {"name": name, "photons_per_record": _st(phot_ch[:, c]), "records_inside": int(inside[:, c].sum())}
        if table and c < len(table):
            entry.update({k: table[c].get(k) for k in ("wavelength_nm", "efficiency", "z_offset_um")})
        channels.append(entry)
    species_out = []
    if "ratio" in emitters:
        ratio = np.asarray(emitters["ratio"], np.float64)
        sp = np.asarray(emitters.get("species", np.zeros(len(ratio))), np.int64)
        declared = _json(attrs.get("species")) or []
        for s in range(int(sp.max()) + 1 if sp.size else 0):
            sel = sp == s
            info = declared[s] if s < len(declared) else {}
            species_out.append(
                {
                    "name": info.get("name", f"species{s}"),
                    "emitters": int(sel.sum()),
                    "ratio_mean": [round(float(v), 4) for v in ratio[sel].mean(0)] if sel.any() else None,
                    "ratio_std": [round(float(v), 4) for v in ratio[sel].std(0)] if sel.any() else None,
                    "configured": {k: info.get(k) for k in ("ratio", "ratio_spread") if k in info} or None,
                }
            )
    return {"channels": channels, "species": species_out}


def channel_lines(info: Mapping[str, Any]) -> list[str]:
    """Text lines of :func:`channel_stats` results under ``info["truth"]`` (none for a single channel)."""
    tr = info.get("truth") or {}
    out = []
    for ch in tr.get("channels") or []:
        st = ch.get("photons_per_record") or {}
        wl = f", {ch['wavelength_nm']:g} nm" if isinstance(ch.get("wavelength_nm"), (int, float)) else ""
        out.append(
            f"  channel {ch['name']}{wl}: photons per record median {st.get('median')}, mean {st.get('mean')} "
            f"(min {st.get('min')}, max {st.get('max')}); {ch['records_inside']} records inside"
        )
    for sp in tr.get("species") or []:
        out.append(
            f"  species {sp['name']}: {sp['emitters']} emitters, ratio mean {sp['ratio_mean']}, s.d. {sp['ratio_std']}"
            + (f" (configured {sp['configured']})" if sp.get("configured") else "")
        )
    return out
