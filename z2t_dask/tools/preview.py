"""Preview PNGs: frames with ground-truth markers, photon histograms, Zmap coefficient maps, PSFs.

>>> sample = z2t.simulate(None, seed=1)          # doctest: +SKIP
>>> sample.preview("p.png")                      # renders only the frames shown   # doctest: +SKIP

``z2t preview PATH`` accepts a sample folder, a batch folder (its first finished job), a Zmap
file, an ``emitters.h5`` (with the stack beside it), a frame stack, or a config file / the word
``default`` (that config's Zmap and PSFs).

Markers: pixel ``(r, c)`` has its centre at ``(y=r, x=c)``, which is also where matplotlib's
``imshow`` puts it, so a record at ``(x, y)`` px is drawn at ``(x, y)``. Emitters inside the
image are cyan circles; emitters outside it (``records/inside`` false: drawn in
``emitters.margin_px``) that still light its edge are red crosses, drawn beyond the dashed
image border. Needs matplotlib (``pip install "z2t-dask[plot]"``); figures are drawn with the
Agg canvas (headless, the global pyplot backend is not touched).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.errors import PreviewError
from z2t_dask.io.blocks import frame_units
from z2t_dask.tools.figures import new_figure, save_figure
from z2t_dask.tools.preview_zmap import preview_zmap, zmap_figure

__all__ = [
    "PreviewError",
    "INSIDE_STYLE",
    "EDGE_STYLE",
    "frame_markers",
    "pick_frames",
    "sample_figure",
    "zmap_figure",
    "preview_sample",
    "preview_zmap",
    "preview",
    "save_figure",
]

#: Marker style of emitters inside the image (circles).
INSIDE_STYLE = {"marker": "o", "facecolors": "none", "edgecolors": "#00e5ff", "linewidths": 1.2}
#: Marker style of emitters outside the image that light its edge (crosses).
EDGE_STYLE = {"marker": "x", "color": "#ff3b3b", "linewidths": 1.4}


# --------------------------------------------------------------------------------------------
# frames + ground truth
# --------------------------------------------------------------------------------------------


def frame_markers(
    xyz: np.ndarray, frame_ix: np.ndarray, inside: np.ndarray, frame: int
) -> tuple[np.ndarray, np.ndarray]:
    """Marker coordinates of one frame's ground truth, in image (= matplotlib ``imshow``) coordinates.

    Parameters
    ----------
    xyz : (M, 3)
        Record positions: x (column), y (row) in px, z in µm.
    frame_ix : (M,)
        Frame of each record.
    inside : (M,) bool
        Whether the emitter centre is inside the image.
    frame : int
        The frame.

    Returns
    -------
    inside_xy, edge_xy : (k, 2), (m, 2) float64
        ``(x, y)`` px of the emitters inside the image (circles) and of those outside it that
        light its edge (crosses).
    """
    sel = np.asarray(frame_ix) == int(frame)
    xy = np.asarray(xyz, np.float64)[sel, :2].reshape(-1, 2)
    ins = np.asarray(inside, bool)[sel]
    return xy[ins], xy[~ins]


def pick_frames(frame_ix: np.ndarray, frames: int, n: int = 6) -> list[int]:
    """``n`` frames spread over the movie: in each of ``n`` equal segments, the one with most records."""
    n = max(1, min(int(n), int(frames)))
    counts = np.bincount(np.asarray(frame_ix, np.int64), minlength=frames)[:frames]
    edges = np.linspace(0, frames, n + 1).round().astype(int)
    return [int(a + np.argmax(counts[a:b])) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _records(obj: Any) -> dict[str, np.ndarray]:
    if isinstance(obj, Mapping):
        return {k: np.asarray(v) for k, v in obj.items()}
    return {k: np.asarray(getattr(obj, k)) for k in ("xyz", "phot", "frame_ix", "id", "inside")}


def sample_figure(
    get_frames: Callable[[list[int], int, int], np.ndarray],
    records: Any,
    image_shape: tuple[int, int],
    frames: int,
    *,
    title: str = "",
    n_frames: int = 6,
    crop: int = 192,
    units: str = "ADU",
) -> Any:
    """Montage of frames with ground-truth markers, photon histogram, emitters per frame, pixel histogram.

    Parameters
    ----------
    get_frames
        ``get_frames(indices, rows, cols)`` → ``(len(indices), rows, cols)`` array: the first
        ``rows`` x ``cols`` px of those frames (lazy stacks compute only these).
    records
        :class:`~z2t_dask.physics.emitters.Records` or a mapping with ``xyz``, ``phot``, ``frame_ix``, ``inside``.
    image_shape
        ``(height, width)`` px.
    frames
        Frames in the movie.
    n_frames
        Frames shown.
    crop
        Images larger than this (px) are shown as their top-left ``crop`` x ``crop`` corner (which
        includes two image edges, where the outside emitters' crosses are).
    units
        Pixel unit for the labels (ADU for camera models, photons otherwise).
    """
    rec = _records(records)
    h, w = image_shape
    rows, cols = min(h, crop), min(w, crop)
    idx = pick_frames(rec["frame_ix"], frames, n_frames)
    imgs = np.asarray(get_frames(idx, rows, cols), np.float64)
    ncols = min(3, len(idx))
    nrows = math.ceil(len(idx) / ncols)
    fig = new_figure((3.3 * ncols, 3.3 * nrows + 2.6))
    gs = fig.add_gridspec(nrows + 1, ncols, height_ratios=[1.0] * nrows + [0.75])
    lo, hi = np.percentile(imgs, [0.5, 99.8])
    xy = rec["xyz"][:, :2].astype(np.float64).reshape(-1, 2)
    beyond = np.concatenate([-0.5 - xy[:, 0], xy[:, 0] - (w - 0.5), -0.5 - xy[:, 1], xy[:, 1] - (h - 0.5)])
    margin = max(2.0, float(beyond.max(initial=0.0)) + 1.5)  # px shown around the image border
    pt_per_px = 3.3 * 72 * 0.8 / (max(rows, cols) + 2 * margin)
    size = (2 * 2.2 * pt_per_px) ** 2  # circles of 2.2 px radius
    inside_all = rec["inside"].astype(bool)
    for k, t in enumerate(idx):
        ax = fig.add_subplot(gs[k // ncols, k % ncols])
        ax.imshow(imgs[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ins, edge = frame_markers(rec["xyz"], rec["frame_ix"], inside_all, t)
        keep = lambda a: a[(a[:, 0] < cols - 0.5 + margin) & (a[:, 1] < rows - 0.5 + margin)]  # noqa: E731
        ins, edge = keep(ins), keep(edge)
        ax.scatter(ins[:, 0], ins[:, 1], s=size, label="emitter inside the image", **INSIDE_STYLE)
        ax.scatter(edge[:, 0], edge[:, 1], s=size * 0.6, label="emitter outside (lights the edge)", **EDGE_STYLE)
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ls="--", lw=0.8, ec="white"))
        ax.set_xlim(-0.5 - margin, cols - 0.5 + (margin if cols == w else 0))
        ax.set_ylim(rows - 0.5 + (margin if rows == h else 0), -0.5 - margin)
        ax.set_facecolor("#202020")
        ax.set_title(f"frame {t}: {len(ins)} inside, {len(edge)} outside", fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            fig.legend(
                *ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8, facecolor="#cccccc"
            )
    phot, fix = rec["phot"].astype(np.float64), rec["frame_ix"].astype(np.int64)
    ax = fig.add_subplot(gs[nrows, 0])
    bins = np.linspace(0, max(float(phot.max(initial=1.0)), 1.0), 40)
    ax.hist(
        [phot[inside_all], phot[~inside_all]],
        bins=bins,
        stacked=True,
        color=["#1f9fbf", "#e04040"],
        label=["inside", "outside (edge)"],
    )
    ax.set_xlabel("photons per record (in its frame)", fontsize=8)
    ax.set_ylabel("records", fontsize=8)
    ax.set_title("photon histogram", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    if ncols > 1:
        ax = fig.add_subplot(gs[nrows, 1])
        per_frame = np.bincount(fix[inside_all], minlength=frames)[:frames]
        ax.plot(np.arange(frames), per_frame, lw=0.8, color="#1f77b4")
        ax.plot(idx, per_frame[idx], "o", ms=4, color="#ff7f0e", label="shown")
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("emitters inside", fontsize=8)
        ax.set_title(f"emitters per frame (mean {per_frame.mean():.1f})", fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    if ncols > 2:
        ax = fig.add_subplot(gs[nrows, 2])
        ax.hist(imgs.ravel(), bins=60, color="#555555", log=True)
        ax.set_xlabel(f"pixel value ({units})", fontsize=8)
        ax.set_title("pixels of the shown frames", fontsize=9)
        ax.tick_params(labelsize=7)
    cropped = f"; top-left {rows}x{cols} px shown" if (rows, cols) != (h, w) else ""
    fig.suptitle(f"{title}{cropped}", fontsize=10)
    return fig


def _sample_title(name: str, shape: Sequence[int], dtype: Any, rec: Mapping[str, np.ndarray], seed: Any) -> str:
    t, h, w = shape
    inside = int(np.asarray(rec["inside"], bool).sum())
    s = f"{name}: {t} frames {h}x{w} px {dtype}, {len(rec['frame_ix'])} records ({inside} inside)"
    return s + (f", seed {seed}" if seed is not None else "")


def preview_sample(sample: Any, path: str | os.PathLike, *, n_frames: int = 6, crop: int = 192, dpi: int = 90) -> Path:
    """PNG preview of a :class:`~z2t_dask.sample.Sample` (only the shown frames are rendered)."""
    frames = sample.frames
    if frames.ndim == 4:  # several detection channels: side by side (z2t_dask.tools.preview_channels)
        from z2t_dask.tools.preview_channels import preview_channel_sample

        return preview_channel_sample(sample, path, n_frames=min(n_frames, 3), crop=crop, dpi=dpi)
    rec = _records(sample.records)

    def get(idx: list[int], rows: int, cols: int) -> np.ndarray:
        return np.asarray(frames[idx, :rows, :cols].compute())

    title = _sample_title("sample", frames.shape, frames.dtype, rec, sample.seed)
    fig = sample_figure(
        get,
        rec,
        tuple(frames.shape[1:]),
        int(frames.shape[0]),
        title=title,
        n_frames=n_frames,
        crop=crop,
        units=frame_units(frames.dtype),
    )
    return save_figure(fig, path, dpi)


def _preview_files(
    stack: Path, truth_h5: Path | None, name: str, path: Path, n_frames: int, crop: int, dpi: int
) -> Path:
    """Preview of a frame stack with (optionally) the ground truth of an ``emitters.h5``."""
    from z2t_dask.io.emitters_h5 import read_emitters_h5
    from z2t_dask.physics.emitters import Records
    from z2t_dask.tools.results import open_stack

    frames = open_stack(stack)
    if truth_h5 is not None:  # a multi-channel sample: channels side by side (z2t_dask.tools.preview_channels)
        from z2t_dask.tools.preview_channels import channel_preview_files

        shown = channel_preview_files(frames, truth_h5, name, path, n_frames, crop, dpi)
        if shown is not None:
            return shown
    t, h, w = (int(v) for v in frames.shape)
    seed = None
    if truth_h5 is None:
        rec = {
            "xyz": np.zeros((0, 3)),
            "phot": np.zeros(0),
            "frame_ix": np.zeros(0, np.int64),
            "inside": np.zeros(0, bool),
        }
    else:
        truth = read_emitters_h5(truth_h5)
        rec = Records.from_mapping(truth.records, (h, w)).as_dict()  # inside computed where missing
        seed = truth.attrs.get("seed")
        if rec["frame_ix"].size and rec["frame_ix"].max() >= t:
            warnings.warn(
                f"{truth_h5}: records reach frame {rec['frame_ix'].max()} but {stack.name} has {t} "
                "frames (the original tool dropped empty frames, D12); those records are not shown",
                stacklevel=3,
            )
            keep = rec["frame_ix"] < t
            rec = {k: v[keep] for k, v in rec.items()}

    def get(idx: list[int], rows: int, cols: int) -> np.ndarray:
        return np.asarray(frames[idx, :rows, :cols].compute())

    title = _sample_title(name, frames.shape, frames.dtype, rec, seed)
    fig = sample_figure(get, rec, (h, w), t, title=title, n_frames=n_frames, crop=crop, units=frame_units(frames.dtype))
    return save_figure(fig, path, dpi)


# --------------------------------------------------------------------------------------------
# Zmap + PSFs
# --------------------------------------------------------------------------------------------
# dispatcher (z2t preview)
# --------------------------------------------------------------------------------------------


def _first_job(batch: Path) -> Path:
    from z2t_dask.batch.manifest import MANIFEST, ordered_jobs, read_manifest, read_status

    names: list[str] = []
    if (batch / MANIFEST).is_file():
        names = [n for n, j in ordered_jobs(read_manifest(batch)) if j.get("state") in ("done", "skipped")]
    else:
        names = sorted(read_status(batch).get("completed_jobs", []))
    for n in names:
        if (batch / n).is_dir():
            return batch / n
    raise PreviewError(f"{batch}: no finished job folder to preview")


def default_output(path: str | os.PathLike) -> Path:
    """Default PNG name of ``z2t preview PATH``: ``<name>_preview.png`` in the current folder."""
    name = Path(path).name or "preview"
    for suffix in (".ome.tiff", ".ome.zarr", ".h5", ".json", ".yaml", ".yml", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(f"{name}_preview.png")


def preview(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    n_frames: int = 6,
    config: Any = None,
    crop: int = 192,
    dpi: int | None = None,
    compare_scalar: bool = False,
) -> Path:
    """Write the preview PNG of a sample / batch folder, Zmap, emitters.h5, stack, or config.

    Parameters
    ----------
    path
        What to preview (see the module docstring); ``"default"`` = the built-in config's Zmap.
    out
        PNG path (default :func:`default_output`).
    n_frames
        Frames in the montage.
    config
        Config for the optics of a Zmap preview (default: the built-in default).
    compare_scalar
        Zmap and config previews: the scalar and vectorial PSF models through focus side by side
        (:func:`~z2t_dask.tools.preview_zmap.zmap_figure`); an error for other kinds.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    PreviewError
        If matplotlib is missing or there is nothing to show.
    """
    from z2t_dask.tools.summary import InspectError, detect_kind

    p = Path(path)
    out_path = Path(out) if out is not None else default_output(p)
    if str(path) == "default" and not p.exists():
        return preview_zmap(None, out_path, config=None, dpi=dpi or 80, compare_scalar=compare_scalar)
    if p.is_file() and p.suffix.lower() in (".json", ".yaml", ".yml"):
        return preview_zmap(None, out_path, config=p, dpi=dpi or 80, compare_scalar=compare_scalar)
    try:
        kind = detect_kind(p)
    except InspectError as exc:
        raise PreviewError(str(exc)) from None
    if kind == "zmap":
        return preview_zmap(p, out_path, config=config, dpi=dpi or 80, compare_scalar=compare_scalar)
    if compare_scalar:
        raise PreviewError(f"{p}: compare_scalar (--compare-scalar) applies to Zmap and config previews, not a {kind}")
    from z2t_dask.tools.results import find_stack

    if kind == "batch":
        p = _first_job(p)
        kind = "sample"
    stack: Path | None
    if kind == "stack":
        stack, truth = p, p.parent / "emitters.h5"
    elif kind == "emitters":
        stack, truth = find_stack(p.parent), p
    else:
        stack, truth = find_stack(p), p / "emitters.h5"
    if stack is None:
        raise PreviewError(f"{p}: no frame stack (.ome.tiff, .ome.zarr or .h5 with 'frames') to show")
    name = p.name if kind == "sample" else stack.parent.name or stack.name
    return _preview_files(stack, truth if truth.is_file() else None, name, out_path, n_frames, crop, dpi or 90)
