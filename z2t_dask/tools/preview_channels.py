"""Preview PNG of a multi-channel sample: channels side by side, species-coloured markers, ratio histograms.

Each shown frame is one row with the channels side by side (each with its own contrast); a record
is marked at its position in that channel (``records/xy_ch``), coloured by its emitter's species
(hollow circles inside the channel's image, crosses outside it). The bottom row holds a histogram
of the share of the first channel (``emitters/ratio[:, 0]``) per species and one of the photons per
record in each channel (``records/phot_ch``). Marker convention as in :mod:`z2t_dask.tools.preview`:
pixel ``(r, c)`` centred at ``(y=r, x=c)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.io.blocks import frame_units
from z2t_dask.tools.figures import new_figure, save_figure

__all__ = ["SPECIES_COLOURS", "channel_figure", "channel_preview_files", "preview_channel_sample"]

#: Marker colours of the species, in order (cycled).
SPECIES_COLOURS = ("#00e5ff", "#ffb000", "#ff4fd8", "#7CFC00", "#ffffff", "#ff3b3b")


def _pick(frames: int, rec_frames: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` frames: the busiest ones first (by record count), in frame order."""
    counts = np.bincount(rec_frames.astype(np.int64), minlength=frames)[:frames]
    order = np.argsort(-counts, kind="stable")[: max(1, min(n, frames))]
    return sorted(int(t) for t in order)


def channel_figure(
    get: Callable[[list[int], int, int], np.ndarray],
    records: Mapping[str, np.ndarray],
    emitters: Mapping[str, np.ndarray],
    image_shape: tuple[int, int],
    frames: int,
    *,
    names: Sequence[str],
    species_names: Sequence[str],
    title: str,
    n_frames: int = 3,
    crop: int = 192,
    units: str = "ADU",
) -> Any:
    """The figure: ``get(idx, rows, cols)`` returns frames ``idx`` as ``(k, C, rows, cols)``."""
    h, w = image_shape
    rows, cols = min(h, crop), min(w, crop)
    n_ch = len(names)
    fix = np.asarray(records["frame_ix"], np.int64)
    idx = _pick(frames, fix, n_frames)
    imgs = np.asarray(get(idx, rows, cols), np.float64)
    ids = np.asarray(records["id"], np.int64)
    species = np.asarray(emitters.get("species", np.zeros(len(emitters["xyz"]))), np.int64)
    rec_species = species[ids] if species.size else np.zeros(len(ids), np.int64)
    xy_ch = np.asarray(records["xy_ch"], np.float64)
    inside_ch = np.asarray(records["inside_ch"], bool)
    fig = new_figure((3.2 * max(n_ch, 2) + 0.5, 3.0 * (len(idx) + 1) + 0.6))
    gs = fig.add_gridspec(len(idx) + 1, max(n_ch, 2))
    for r, t in enumerate(idx):
        on = fix == t
        for c in range(n_ch):
            ax = fig.add_subplot(gs[r, c])
            img = imgs[r, c]
            lo, hi = np.percentile(img, [1, 99.7]) if img.size else (0, 1)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-9), interpolation="nearest")
            for s, sname in enumerate(species_names):
                sel = on & (rec_species == s)
                colour = SPECIES_COLOURS[s % len(SPECIES_COLOURS)]
                ins, out = sel & inside_ch[:, c], sel & ~inside_ch[:, c]
                ax.scatter(
                    xy_ch[ins, c, 0],
                    xy_ch[ins, c, 1],
                    s=40,
                    marker="o",
                    facecolors="none",
                    edgecolors=colour,
                    linewidths=1.2,
                    label=sname if (r == 0 and c == 0) else None,
                )
                ax.scatter(xy_ch[out, c, 0], xy_ch[out, c, 1], s=24, marker="x", color=colour, linewidths=1.2)
            ax.set_xlim(-0.5, cols - 0.5)
            ax.set_ylim(rows - 0.5, -0.5)
            ax.set_title(f"frame {t}, channel {names[c]}", fontsize=9)
            ax.tick_params(labelsize=7)
    if species_names:
        fig.legend(loc="outside lower center", ncols=min(len(species_names), 6), fontsize=8, facecolor="#cccccc")
    ratio = np.asarray(emitters.get("ratio", np.zeros((0, n_ch))), np.float64)
    ax = fig.add_subplot(gs[len(idx), 0])
    bins = np.linspace(0.0, 1.0, 41)
    for s, sname in enumerate(species_names):
        sel = species == s
        if sel.any():
            ax.hist(ratio[sel, 0], bins=bins, alpha=0.6, color=SPECIES_COLOURS[s % len(SPECIES_COLOURS)], label=sname)
    ax.set_xlabel(f"share of the photons in channel {names[0]}", fontsize=8)
    ax.set_ylabel("emitters", fontsize=8)
    ax.set_title("ratio per species", fontsize=9)
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[len(idx), 1])
    phot_ch = np.asarray(records["phot_ch"], np.float64)
    top = max(float(phot_ch.max(initial=1.0)), 1.0)
    for c in range(n_ch):
        ax.hist(phot_ch[:, c], bins=np.linspace(0, top, 40), histtype="step", lw=1.2, label=names[c])
    ax.set_xlabel("photons per record", fontsize=8)
    ax.set_title(f"photons per channel ({units} frames)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _names_from_attrs(attrs: Mapping[str, Any], n: int) -> tuple[list[str], list[str]]:
    def load(key: str) -> Any:
        v = attrs.get(key)
        return json.loads(v) if isinstance(v, (str, bytes)) else v

    table = load("channels") or []
    names = [str(c.get("name", f"ch{i}")) for i, c in enumerate(table)][:n] or [f"ch{i}" for i in range(n)]
    species = [str(s.get("name", f"species{i}")) for i, s in enumerate(load("species") or [])]
    return names, species


def preview_channel_sample(
    sample: Any, path: str | os.PathLike, *, n_frames: int = 3, crop: int = 192, dpi: int = 90
) -> Path:
    """PNG preview of a multi-channel :class:`~z2t_dask.sample.Sample` (only the shown frames are rendered)."""
    frames = sample.frames
    part = sample.truth.materialize()
    attrs = sample.attrs()
    names, species = _names_from_attrs(attrs, int(frames.shape[1]))

    def get(idx: list[int], rows: int, cols: int) -> np.ndarray:
        return np.asarray(frames[idx, :, :rows, :cols].compute())

    t, c, h, w = (int(v) for v in frames.shape)
    fig = channel_figure(
        get,
        part.records.as_dict(),
        part.emitters.as_dict(),
        (h, w),
        t,
        names=names,
        species_names=species,
        title=f"sample: {t} frames x {c} channels {h}x{w} px {frames.dtype}, seed {sample.seed}",
        n_frames=n_frames,
        crop=crop,
        units=frame_units(frames.dtype),
    )
    return save_figure(fig, path, dpi)


def channel_preview_files(
    folder_frames: Any, truth_h5: Path, name: str, path: Path, n_frames: int, crop: int, dpi: int
) -> Path | None:
    """Preview of a multi-channel stack (``(T, C, Y, X)`` or a split-view chip) with its ``emitters.h5``;
    None if the truth is single-channel."""
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    truth = read_emitters_h5(truth_h5)
    if "phot_ch" not in truth.records:
        return None
    if folder_frames.ndim == 3:  # a split-view chip: back to (T, C, Y, X)
        from z2t_dask.sample.channels import split_channels

        folder_frames = split_channels(folder_frames, truth.attrs)
    if folder_frames.ndim != 4:
        return None
    t, c, h, w = (int(v) for v in folder_frames.shape)
    names, species = _names_from_attrs(truth.attrs, c)

    def get(idx: list[int], rows: int, cols: int) -> np.ndarray:
        return np.asarray(folder_frames[idx, :, :rows, :cols].compute())

    keep = truth.records["frame_ix"] < t
    records = {k: np.asarray(v)[keep] for k, v in truth.records.items()}
    fig = channel_figure(
        get,
        records,
        truth.emitters,
        (h, w),
        t,
        names=names,
        species_names=species,
        title=f"{name}: {t} frames x {c} channels {h}x{w} px {folder_frames.dtype}, seed {truth.attrs.get('seed')}",
        n_frames=min(n_frames, 3),
        crop=crop,
        units=frame_units(folder_frames.dtype),
    )
    return save_figure(fig, path, dpi)
