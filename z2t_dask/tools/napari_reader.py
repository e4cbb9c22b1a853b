"""napari reader: a sample's frames with their physical pixel size and its ground truth as points.

Installed with the package (``pip install "z2t-dask[napari]"``), the npe2 manifest
``z2t_dask/napari.yaml`` (entry point ``napari.manifest``) makes napari offer "z2t-dask" for a
sample folder, its ``<name>.ome.tiff`` / ``.ome.tif`` or its ``<name>.ome.zarr``::

    napari output/sample_000                      # then choose "z2t-dask" (napari asks once)
    viewer.open("output/sample_000", plugin="z2t-dask")

What opens (napari's built-in TIFF reader shows the same frames in pixels, without the OME pixel
size, and no ground truth):

- the frames, lazily (the dask array of :func:`z2t_dask.open_sample`, read frame by frame as
  napari shows them), one image layer per channel, with ``scale = (1, y, x)``: t in frames, y and x
  in µm from the stack's pixel size (``PhysicalSizeY/X``; the stored config's
  ``optical.pixel_size_nm_y/_x`` when the stack declares none);
- the ground truth (``emitters.h5`` records) as a Points layer ``(t, y, x)`` in the image's world
  coordinates: point data are ``(frame_ix, y px, x px)`` with the image's scale, so pixel
  ``(r, c)``, centred at ``(y=r, x=c)``, and a record at ``(x, y)`` px land on the same world
  point ``(y * pixel_size_y, x * pixel_size_x)`` µm. Features: ``id``, ``frame``, ``x_px``,
  ``y_px``, ``z_um`` (0 = focal plane), ``photons`` and ``inside``. Styles as ``z2t preview``:
  emitters inside the image are cyan circles (layer ``<name> truth``, one point per record inside
  the image); emitters outside it that light its edge (``inside`` false, drawn in
  ``emitters.margin_px``) are red crosses in a second layer ``<name> truth (edge)``
  (``edge="merge"``: one layer with both, ``edge="exclude"``: none).

A stack opened on its own gets the ground truth of its folder only when it is that folder's stack
(:func:`z2t_dask.tools.results.find_stack`); any other OME-TIFF / OME-Zarr opens as frames with
their pixel size. Several channels (a 4-D stack ``(T, C, Y, X)``, axes read from the file) give one
image layer each (additive colormaps); records with a ``channel`` column are split the same way.
napari is imported by napari itself; this module imports nothing from it, so its functions are
tested without napari (they return napari's "layer data tuples").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from z2t_dask.errors import FormatError
from z2t_dask.tools.preview import EDGE_STYLE, INSIDE_STYLE
from z2t_dask.tools.results import SampleFolder, find_stack, open_sample, stack_format

__all__ = ["STACK_SUFFIXES", "EdgeMode", "napari_get_reader", "read_sample", "sample_layers"]

#: Stack files (or ``.ome.zarr`` folders) the reader accepts besides a sample folder (the manifest's patterns).
STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr")

#: What becomes of the records outside the image: a second layer, the same layer, or nothing.
EdgeMode = Literal["separate", "merge", "exclude"]

#: One napari layer: ``(data, keyword arguments of viewer.add_<type>, type)``.
LayerData = tuple[Any, dict[str, Any], str]

#: Colormaps of successive channels when there are several (one channel: grey).
CHANNEL_COLORMAPS = ("green", "magenta", "cyan", "yellow", "red", "blue")

#: RGBA of the points: the colours of ``z2t preview`` (:data:`~z2t_dask.tools.preview.INSIDE_STYLE`, ``EDGE_STYLE``).
INSIDE_RGBA = tuple(int(str(INSIDE_STYLE["edgecolors"])[i : i + 2], 16) / 255 for i in (1, 3, 5)) + (1.0,)
EDGE_RGBA = tuple(int(str(EDGE_STYLE["color"])[i : i + 2], 16) / 255 for i in (1, 3, 5)) + (1.0,)

#: Frames read (from the start) to set the display range of an image layer.
CONTRAST_FRAMES = 16

#: Point diameter in camera pixels (data units; about the PSF's FWHM at 100 nm pixels).
POINT_SIZE_PX = 3.0


def _path_of(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Path | None:
    """The one path napari hands over (a list of one path too), else None."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        return Path(os.fspath(path))  # type: ignore[arg-type]
    except TypeError:
        return None


def _is_stack_path(p: Path) -> bool:
    return p.name.lower().endswith(STACK_SUFFIXES)


def _is_sample_folder(p: Path) -> bool:
    if not p.is_dir() or p.name.lower().endswith(".zarr"):
        return False
    if (p / "emitters.h5").is_file():
        return True
    try:
        return find_stack(p) is not None
    except (OSError, ValueError):
        return False


def napari_get_reader(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> Callable[..., list[LayerData]] | None:
    """The npe2 reader command: :func:`read_sample` for a path it can read, else None.

    Parameters
    ----------
    path : path-like or list of one path-like
        A sample folder (``emitters.h5`` and/or a frame stack), a ``*.ome.tiff`` / ``*.ome.tif``
        file or a ``*.ome.zarr`` folder. Lists of several paths (napari's stacks) are not read.

    Returns
    -------
    callable or None
        ``read_sample`` (napari calls it with the path), or None so napari tries another reader.
    """
    p = _path_of(path)
    if p is None or not p.exists():
        return None
    if _is_stack_path(p) or _is_sample_folder(p):
        return read_sample
    return None


def _open(p: Path) -> SampleFolder:
    """The sample of a folder or of a stack (the truth beside a stack only when it is that folder's stack)."""
    if not _is_stack_path(p):
        return open_sample(p)
    folder = p.parent
    own = find_stack(folder)
    if own is not None and own.resolve() == p.resolve():
        return open_sample(folder)
    return SampleFolder(path=folder, stack=p, format=stack_format(p), truth=None)


def _pixel_size_nm(sample: SampleFolder) -> tuple[float, float] | None:
    """``(x, y)`` nm: the stack's, else the stored config's ``optical.pixel_size_nm_x/_y``."""
    if sample.stack is not None and sample.pixel_size_nm is not None:
        x, y = sample.pixel_size_nm
        if np.isfinite(x) and np.isfinite(y) and x > 0 and y > 0:
            return float(x), float(y)
    optical = (sample.config or {}).get("optical") or {}
    cx, cy = optical.get("pixel_size_nm_x"), optical.get("pixel_size_nm_y")
    if isinstance(cx, int | float) and isinstance(cy, int | float) and cx > 0 and cy > 0:
        return float(cx), float(cy)
    return None


def _channel_axis(sample: SampleFolder, ndim: int) -> int | None:
    """The channel axis of a 3-D or 4-D stack (None for ``(T, Y, X)``; 4-D: the file's ``C``, else 1)."""
    if ndim == 3:
        return None
    if ndim == 4:
        info = sample.stack_info
        axes = str((info.extra or {}).get("axes") or "").upper() if info is not None else ""
        return axes.index("C") if len(axes) == 4 and "C" in axes else 1
    raise FormatError(f"{sample.stack}: napari reader expects frames (T, Y, X) or (T, C, Y, X), got {ndim} axes")


def _contrast_limits(frames: Any) -> tuple[float, float]:
    """Display range from the first frames (at most :data:`CONTRAST_FRAMES`): their 0.1 % and 99.95 % quantiles."""
    values = np.asarray(frames[:CONTRAST_FRAMES], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.quantile(values, [0.001, 0.9995]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _image_layers(sample: SampleFolder, scale: tuple[float, float, float], name: str) -> list[LayerData]:
    frames = sample.frames
    axis = _channel_axis(sample, frames.ndim)
    stacks = [frames] if axis is None else [frames[(slice(None),) * axis + (c,)] for c in range(frames.shape[axis])]
    info = sample.stack_info
    meta = {
        "path": str(sample.stack),
        "format": sample.format,
        "pixel_size_nm": (1000.0 * scale[2], 1000.0 * scale[1]),
        "units": None if info is None else info.units,
        "seed": sample.attrs.get("seed"),
    }
    layers: list[LayerData] = []
    from z2t_dask.tools.napari_channels import channel_labels  # a multi-channel sample's channel names

    labels = channel_labels(sample.attrs, len(stacks))
    for c, stack in enumerate(stacks):
        several = len(stacks) > 1
        kwargs: dict[str, Any] = {
            "name": f"{name} [{labels[c]}]" if several else name,
            "scale": scale,
            "axis_labels": ("t", "y", "x"),
            "units": ("dimensionless", "µm", "µm") if scale[1:] != (1.0, 1.0) else None,
            "colormap": CHANNEL_COLORMAPS[c % len(CHANNEL_COLORMAPS)] if several else "gray",
            "blending": "additive" if several else "translucent",
            "contrast_limits": _contrast_limits(stack),
            "multiscale": False,
            "metadata": {**meta, "channel": c if several else None},
        }
        layers.append((stack, {k: v for k, v in kwargs.items() if v is not None}, "image"))
    return layers


def _record_column(records: Any, name: str) -> np.ndarray | None:
    extra = getattr(records, "extra", None) or {}
    value = getattr(records, name, None)
    value = extra.get(name) if value is None else value
    return None if value is None else np.asarray(value)


def _points(
    records: Any, keep: np.ndarray, scale: tuple[float, float, float], name: str, edge_style: np.ndarray
) -> LayerData:
    """A Points layer of the records ``keep``; ``edge_style`` (per kept record) selects the cross style."""
    xyz = np.asarray(records.xyz, dtype=np.float64)[keep]
    frame = np.asarray(records.frame_ix)[keep]
    inside = np.asarray(records.inside, dtype=bool)[keep]
    data = np.column_stack([frame.astype(np.float64), xyz[:, 1], xyz[:, 0]]) if len(xyz) else np.zeros((0, 3))
    cyan, red = np.array(INSIDE_RGBA), np.array(EDGE_RGBA)
    border = np.where(edge_style[:, None], red, cyan) if len(data) else np.zeros((0, 4))
    face = np.where(edge_style[:, None], red, np.zeros(4)) if len(data) else np.zeros((0, 4))
    symbol = np.where(edge_style, "x", "disc") if len(data) else "disc"
    size = np.where(edge_style, 0.6 * POINT_SIZE_PX, POINT_SIZE_PX) if len(data) else POINT_SIZE_PX
    features = {
        "id": np.asarray(records.id)[keep],
        "frame": frame,
        "x_px": xyz[:, 0],
        "y_px": xyz[:, 1],
        "z_um": xyz[:, 2],
        "photons": np.asarray(records.phot, dtype=np.float64)[keep],
        "inside": inside,
    }
    kwargs = {
        "name": name,
        "scale": scale,
        "axis_labels": ("t", "y", "x"),
        "features": features,
        "symbol": symbol,
        "size": size,
        "face_color": face,
        "border_color": border,
        "border_width": 0.15,
        "border_width_is_relative": True,
    }
    if scale[1:] != (1.0, 1.0):
        kwargs["units"] = ("dimensionless", "µm", "µm")
    return data, kwargs, "points"


def _points_layers(sample: SampleFolder, scale: tuple[float, float, float], name: str, edge: str) -> list[LayerData]:
    records = sample.records
    if _record_column(records, "xy_ch") is not None:  # detection channels: truth at each channel's positions
        from z2t_dask.tools.napari_channels import channel_points_layers

        return channel_points_layers(records, sample.attrs, scale, name, edge, _points)
    inside = np.asarray(records.inside, dtype=bool)
    channel = _record_column(records, "channel")
    groups: list[tuple[int | None, np.ndarray]] = [(None, np.ones(len(inside), dtype=bool))]
    if channel is not None and len(np.unique(channel)) > 1:
        groups = [(int(c), channel == c) for c in np.unique(channel)]
    layers: list[LayerData] = []
    for c, in_group in groups:
        base = f"{name} truth" if c is None else f"{name} truth [ch {c}]"
        if edge == "merge":
            keep = in_group
            layers.append(_points(records, keep, scale, base, ~inside[keep]))
            continue
        keep = in_group & inside
        layers.append(_points(records, keep, scale, base, np.zeros(int(keep.sum()), dtype=bool)))
        if edge == "separate":
            keep = in_group & ~inside
            layers.append(_points(records, keep, scale, f"{base} (edge)", np.ones(int(keep.sum()), dtype=bool)))
    return layers


def sample_layers(sample: SampleFolder, *, edge: EdgeMode = "separate") -> list[LayerData]:
    """napari layer data tuples of an opened sample: its image layer(s), then its ground-truth points.

    Parameters
    ----------
    sample : SampleFolder
        From :func:`z2t_dask.open_sample` (a stack, an ``emitters.h5``, or both).
    edge : {"separate", "merge", "exclude"}
        Records outside the image (``inside`` false): a second Points layer ``... (edge)`` of red
        crosses (default), in the same layer as the records inside it, or left out.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``("image")``: the lazy frames ``(T, Y, X)`` per channel, ``scale = (1, y µm, x µm)``;
        ``("points")``: ``(frame, y px, x px)`` per record with the same scale (world = index × scale).
        Without a pixel size anywhere, the scale is ``(1, 1, 1)`` (pixels).
    """
    if edge not in ("separate", "merge", "exclude"):
        raise ValueError(f"edge must be 'separate', 'merge' or 'exclude', got {edge!r}")
    px = _pixel_size_nm(sample)
    scale = (1.0, 1.0, 1.0) if px is None else (1.0, px[1] / 1000.0, px[0] / 1000.0)
    name = sample.path.name if sample.stack is None or sample.truth is not None else sample.stack.name
    layers: list[LayerData] = []
    if sample.stack is not None:
        layers += _image_layers(sample, scale, name)
    if sample.truth is not None:
        layers += _points_layers(sample, scale, name, edge)
    return layers


def read_sample(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, edge: EdgeMode = "separate"
) -> list[LayerData]:
    """Read a sample folder, or its stack, as napari layer data tuples (see :func:`sample_layers`).

    Parameters
    ----------
    path : path-like or list of one path-like
        A sample folder, a ``*.ome.tiff`` / ``*.ome.tif`` file or a ``*.ome.zarr`` folder.
    edge : {"separate", "merge", "exclude"}
        Records outside the image: their own layer, merged with the others, or left out.

    Raises
    ------
    FileNotFoundError
        If the path does not exist or is not a sample folder.
    FormatError
        If the stack is not a readable frame stack (a ValueError too).
    """
    p = _path_of(path)
    if p is None:
        raise FormatError(f"napari reader: one path expected, got {path!r}")
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    return sample_layers(_open(p), edge=edge)
