"""Reading a Zmap file's phase maps window by window, and interpolating them at emitter positions.

The helpers of :class:`z2t_dask.physics.zmap.H5Zmap`: only the window around the requested chip
positions is read from HDF5 (:func:`phase_window` / :class:`PhaseMaps`); cubic interpolation
(:func:`interp_cubic`) filters a window once per file version and process and then only sums
16 taps per emitter, bit-identical to ``scipy.ndimage.map_coordinates(order=3, mode="nearest")``
per mode (:func:`interp_window`, used for the other orders); :func:`nan_planes` finds the modes
with no finite value. Coordinates: a map pixel ``[mode, r, c]`` is the value at chip ``(y=r, x=c)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from z2t_dask.caching import BuildOnceCache, built_once
from z2t_dask.errors import ZmapError

__all__ = ["SPLINE_MARGIN", "PhaseMaps", "interp_cubic", "interp_window", "nan_planes", "phase_window"]

#: px of map read around the emitters: B-spline prefilter influence < 1e-6.
SPLINE_MARGIN = 12


def interp_window(
    maps_ds, x: np.ndarray, y: np.ndarray, order: int, used: frozenset[int] = frozenset(), name: str = ""
) -> np.ndarray:
    """Read only the window of a (K, H, W) dataset around the points and interpolate each mode.

    NaN pixels of the window are filled with the window's mean of the mode; a mode in ``used`` that
    is NaN in the whole window is a :class:`ZmapError` naming ``name`` (never a silent zero).
    """
    from scipy.ndimage import map_coordinates

    k, h, w = maps_ds.shape
    xc = np.clip(x, 0, w - 1)
    yc = np.clip(y, 0, h - 1)
    if xc.size == 0:
        return np.zeros((0, k))
    m = SPLINE_MARGIN if order > 1 else 2
    x0 = max(int(np.floor(xc.min())) - m, 0)
    x1 = min(int(np.ceil(xc.max())) + m + 1, w)
    y0 = max(int(np.floor(yc.min())) - m, 0)
    y1 = min(int(np.ceil(yc.max())) + m + 1, h)
    win = np.asarray(maps_ds[:, y0:y1, x0:x1], dtype=np.float64)
    out = np.empty((xc.size, k))
    coords = np.stack([yc - y0, xc - x0])
    for j in range(k):
        plane = win[j]
        if not np.all(np.isfinite(plane)):
            finite = np.isfinite(plane)
            if not finite.any() and j in used:
                raise ZmapError(
                    f"Zmap {name}: 'z_maps/phase' mode {j} is NaN everywhere in chip rows {y0}..{y1 - 1}, columns "
                    f"{x0}..{x1 - 1} (the emitters' positions: ROI + tiff.crop_offset); move the ROI to where the "
                    "Zmap is defined"
                )
            plane = np.where(finite, plane, np.nanmean(plane) if finite.any() else 0.0)
        out[:, j] = map_coordinates(plane, coords, order=order, mode="nearest")
    return out


#: B-spline (order 3) weights and the interpolation sum below repeat scipy's ``map_coordinates(plane,
#: coords, order=3, mode="nearest")`` (``ni_splines.c`` / ``ni_interpolation.c``) operation by operation,
#: so the coefficients are bit-identical to it; the padding is scipy's ``mode="nearest"`` pre-pad.
_CUBIC_PAD = 12


def _cubic_weights(c: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """First tap (index into the padded window) and the 4 cubic B-spline weights at window coordinates ``c``."""
    cc = c + float(_CUBIC_PAD)
    fl = np.floor(cc)
    x = cc - fl
    z = 1.0 - x
    w1 = (x * x * (x - 2.0) * 3.0 + 4.0) / 6.0
    w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
    w0 = z * z * z / 6.0
    w3 = 1.0 - w0 - w1 - w2
    return fl.astype(np.intp) - 1, (w0, w1, w2, w3)


@dataclass(frozen=True)
class _CubicWindow:
    """A window's NaN-filled planes, padded and B-spline prefiltered as scipy's ``map_coordinates`` does.

    ``coeffs`` is ``(K, (rows + 24) * (cols + 24))`` float64 (read-only); ``empty`` the modes with
    no finite pixel in the window (filled with 0); ``peak`` the largest ``|coeffs|`` per mode, a
    bound on any value interpolated from it (the weights are >= 0 and sum to 1).
    """

    coeffs: np.ndarray
    width: int
    empty: tuple[int, ...]
    peak: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes held (for the cache's accounting)."""
        return int(self.coeffs.nbytes)


#: Prefiltered windows kept per process: a few ROIs' worth, and at most 512 MiB (a whole-chip window of
#: 21 modes is ~250 MB; the newest window always stays).
_CUBIC_WINDOWS: BuildOnceCache[_CubicWindow] = BuildOnceCache(8, max_bytes=512 << 20)


def _cubic_window(path: str, size: int, mtime_ns: int, y0: int, y1: int, x0: int, x1: int) -> _CubicWindow:
    """The prefiltered window ``z_maps/phase[:, y0:y1, x0:x1]`` of a Zmap file version (a batch's samples of
    one ROI filter it once; each sample then only interpolates)."""
    key = (path, size, mtime_ns, y0, y1, x0, x1)
    return _CUBIC_WINDOWS.get(key, lambda: _filter_window(path, y0, y1, x0, x1))


def _filter_window(path: str, y0: int, y1: int, x0: int, x1: int) -> _CubicWindow:
    """Read (a chunk's depth of modes at a time) and prefilter a window: see :class:`_CubicWindow`."""
    import h5py
    from scipy.ndimage import spline_filter

    pad = _CUBIC_PAD
    with h5py.File(path, "r") as f:
        ds = f["z_maps/phase"]
        k = ds.shape[0]
        h, w = y1 - y0, x1 - x0  # inside the map (interp_cubic clips them)
        depth = ds.chunks[0] if ds.chunks else 1
        out = np.empty((k, (h + 2 * pad) * (w + 2 * pad)))
        empty = []
        for j0 in range(0, k, depth):
            block = ds[j0 : j0 + depth, y0:y1, x0:x1]
            for i in range(block.shape[0]):
                plane = np.asarray(block[i], dtype=np.float64)
                finite = np.isfinite(plane)
                if not finite.all():
                    if not finite.any():
                        empty.append(j0 + i)
                    plane = np.where(finite, plane, np.nanmean(plane) if finite.any() else 0.0)
                padded = np.pad(plane, pad, mode="edge")
                out[j0 + i] = spline_filter(padded, 3, output=np.float64, mode="nearest").reshape(-1)
    out.flags.writeable = False
    peak = np.abs(out).max(axis=1) if out.size else np.zeros(k)
    return _CubicWindow(out, w + 2 * pad, tuple(empty), peak)


def interp_cubic(
    maps: PhaseMaps, x: np.ndarray, y: np.ndarray, used: frozenset[int], warned: frozenset[int], name: str
) -> np.ndarray:
    """``interp_window(maps, x, y, 3, used, name)`` from a cached prefiltered window, bit for bit.

    Only the modes in ``used`` are interpolated, plus those of ``warned`` (modes whose size a caller
    reports) whose window could give a value above 1e-6 rad; the other columns are 0.
    """
    k, h, w = maps.shape
    xc = np.clip(x, 0, w - 1)
    yc = np.clip(y, 0, h - 1)
    if xc.size == 0:
        return np.zeros((0, k))
    m = SPLINE_MARGIN
    x0 = max(int(np.floor(xc.min())) - m, 0)
    x1 = min(int(np.ceil(xc.max())) + m + 1, w)
    y0 = max(int(np.floor(yc.min())) - m, 0)
    y1 = min(int(np.ceil(yc.max())) + m + 1, h)
    win = _cubic_window(maps.path, maps.size, maps.mtime_ns, y0, y1, x0, x1)
    for j in win.empty:
        if j in used:
            raise ZmapError(
                f"Zmap {name}: 'z_maps/phase' mode {j} is NaN everywhere in chip rows {y0}..{y1 - 1}, columns "
                f"{x0}..{x1 - 1} (the emitters' positions: ROI + tiff.crop_offset); move the ROI to where the "
                "Zmap is defined"
            )
    modes = [j for j in range(k) if j in used or (j in warned and win.peak[j] > 5e-7)]
    coeffs = win.coeffs if len(modes) == k else win.coeffs[modes]
    sy, wy = _cubic_weights(yc - y0)
    sx, wx = _cubic_weights(xc - x0)
    stride = win.width
    first = sy * stride + sx
    total = np.zeros((len(modes), xc.size))
    term = np.empty_like(total)
    for a in range(4):  # scipy's order: rows outer, columns inner; (value * w_row) * w_col; summed from 0.0
        for b in range(4):
            np.take(coeffs, first + (a * stride + b), axis=1, out=term, mode="clip")  # always inside the pad
            term *= wy[a]
            term *= wx[b]
            total += term
    if len(modes) == k:
        return total.T
    out = np.zeros((xc.size, k))
    out[:, modes] = total.T
    return out


@built_once(8)
def phase_window(path: str, size: int, mtime_ns: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``z_maps/phase[:, y0:y1, x0:x1]`` of a Zmap file version as read-only float64 (a batch's samples
    of one ROI read it once)."""
    import h5py

    with h5py.File(path, "r") as f:
        win = np.asarray(f["z_maps/phase"][:, y0:y1, x0:x1], dtype=np.float64)
    win.flags.writeable = False
    return win


@dataclass(frozen=True)
class PhaseMaps:
    """The ``z_maps/phase`` dataset of a file version, read window by window through :func:`phase_window`."""

    path: str
    size: int
    mtime_ns: int
    shape: tuple[int, int, int]

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        _, ys, xs = key
        return phase_window(self.path, self.size, self.mtime_ns, ys.start, ys.stop, xs.start, xs.stop)


@lru_cache(maxsize=16)
def nan_planes(path: str, size: int, mtime_ns: int) -> tuple[int, ...]:
    """Modes of ``z_maps/phase`` with no finite value (cached by file stamp).

    Read tile by tile along the dataset's chunks (one plane at a time when unchunked), and a group
    of planes only until each of them has shown a finite value: a good Zmap costs one chunk row,
    not a decompression of the whole file.
    """
    import h5py

    with h5py.File(path, "r") as f:
        ds = f["z_maps/phase"]
        k, h, w = ds.shape
        ck, ch, cw = ds.chunks if ds.chunks else (1, h, w)
        empty = []
        for j0 in range(0, k, ck):
            j1 = min(j0 + ck, k)
            seen = np.zeros(j1 - j0, bool)
            for r0 in range(0, h, ch):
                for c0 in range(0, w, cw):
                    tile = np.asarray(ds[j0:j1, r0 : r0 + ch, c0 : c0 + cw], np.float64)
                    seen |= np.isfinite(tile).reshape(j1 - j0, -1).any(axis=1)
                    if seen.all():
                        break
                if seen.all():
                    break
            empty += [j0 + int(i) for i in np.flatnonzero(~seen)]
        return tuple(empty)
