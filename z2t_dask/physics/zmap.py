"""Zmaps: field-dependent Zernike coefficient maps and their per-emitter interpolation.

A Zmap gives, for every camera-chip position, the Zernike phase (and optionally magnitude)
coefficients of the pupil. Every Zmap here returns coefficients in **one** convention: Noll
order (index 0 ↔ j = 1, piston), radians RMS over the unit pupil. Conversions from the source's
convention happen on reading and are explicit:

``legacy21``
    The original tool's 21-index ordering (see :data:`z2t_dask.physics.optics.zernike.LEGACY_21_NM`).
    Its index ``l`` maps to ``(n, m)`` through a home-made rule that yields 8 parity-invalid
    (identically zero) modes; those are dropped with a warning and the 13 valid modes are moved
    to their Noll positions. Values are used as radians (the original applied them as phase in
    radians). The original's basis was normalised over a square, so legacy coefficients only
    approximately keep their meaning on the correct pupil basis.
``noll`` / ``osa``
    Standard orders; units ``rad``, ``waves`` (× 2π) or ``nm`` (× 2π/λ) as declared.

Coordinates: a map pixel ``[mode, r, c]`` is the value at chip position ``(y=r, x=c)``.
Emitter ROI positions are turned into chip positions by adding the ROI's crop offset.
Files are read lazily: only the window around the requested positions is read from HDF5.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from z2t_dask.caching import built_once
from z2t_dask.errors import ZmapError
from z2t_dask.physics.optics.zernike import LEGACY_21_NM, nm_to_noll, osa_to_noll
from z2t_dask.physics.zmap_windows import PhaseMaps, interp_cubic, interp_window, nan_planes

__all__ = ["ZmapError", "Zmap", "H5Zmap", "SyntheticZmap", "read_zmap", "legacy_to_noll", "used_source_modes"]


def legacy_to_noll(coeffs: np.ndarray, n_modes: int = 21, *, warn: bool = True) -> np.ndarray:
    """Reorder legacy 21-index coefficients (…, 21) into Noll order (…, n_modes).

    The 8 parity-invalid legacy modes (whose basis image is identically zero) are dropped; a
    warning lists them when ``warn`` and any of them is non-negligible.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.shape[-1] != len(LEGACY_21_NM):
        raise ZmapError(f"legacy21 coefficients need {len(LEGACY_21_NM)} modes, got {coeffs.shape[-1]}")
    out = np.zeros(coeffs.shape[:-1] + (n_modes,))
    src, dst, dropped = _legacy_moves(n_modes)
    out[..., dst] = coeffs[..., src]
    if warn and dropped.size:
        mag = np.nanmax(np.abs(coeffs[..., dropped])) if coeffs.size else 0.0
        if mag > 1e-6:
            warnings.warn(
                f"legacy21 Zmap: dropped invalid modes {dropped.tolist()} (parity-invalid (n, m), identically "
                f"zero basis), largest |coefficient| {mag:.3g}",
                stacklevel=3,
            )
    return out


@lru_cache(maxsize=8)
def _legacy_moves(n_modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legacy indices kept, their Noll positions (index j - 1) among ``n_modes``, and the dropped legacy indices
    (read-only integer arrays)."""
    src, dst, dropped = [], [], []
    for l, (n, m) in enumerate(LEGACY_21_NM):
        if (n - abs(m)) % 2:
            dropped.append(l)
            continue
        j = nm_to_noll(n, m)
        if j <= n_modes:
            src.append(l)
            dst.append(j - 1)
    out = (np.array(src, np.intp), np.array(dst, np.intp), np.array(dropped, np.intp))
    for a in out:
        a.flags.writeable = False
    return out


def _to_noll(coeffs: np.ndarray, convention: str, n_modes: int) -> np.ndarray:
    if convention == "legacy21":
        return legacy_to_noll(coeffs, n_modes)
    k = coeffs.shape[-1]
    out = np.zeros(coeffs.shape[:-1] + (n_modes,))
    for i in range(k):
        j = i + 1 if convention == "noll" else osa_to_noll(i)
        if j <= n_modes:
            out[..., j - 1] = coeffs[..., i]
    return out


def _unit_factor(units: str, wavelength_nm: float) -> float:
    return {"rad": 1.0, "waves": 2 * math.pi, "nm": 2 * math.pi / wavelength_nm}[units]


class Zmap:
    """Interface: coefficients at chip positions, Noll order, radians RMS."""

    n_modes: int = 21
    shape: tuple[int, int]
    convention: str = "noll"
    units: str = "rad"

    def coefficients(
        self, x: np.ndarray, y: np.ndarray, *, method: str = "cubic"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Phase ``(N, n_modes)`` rad and magnitude ``(N, n_modes)`` (or ``None``) at chip ``(x, y)`` px."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance: source, convention, units, shape."""
        return {
            "kind": type(self).__name__,
            "shape": list(self.shape),
            "order": "noll",
            "normalisation": "rms",
            "unit": "rad",
            "source_convention": self.convention,
            "source_units": self.units,
        }


def used_source_modes(convention: str, n_source: int, n_modes: int) -> frozenset[int]:
    """Indices of the source modes that reach the first ``n_modes`` Noll coefficients.

    ``legacy21`` drops its parity-invalid modes; ``noll``/``osa`` modes beyond ``n_modes`` are unused.
    """
    used = set()
    for i in range(n_source):
        if convention == "legacy21":
            if i >= len(LEGACY_21_NM):
                continue
            n, m = LEGACY_21_NM[i]
            if (n - abs(m)) % 2:
                continue
            j = nm_to_noll(n, m)
        else:
            j = i + 1 if convention == "noll" else osa_to_noll(i)
        if j <= n_modes:
            used.add(i)
    return frozenset(used)


#: Bead magnitude coefficients (Noll order, piston aside) no larger than this are a phase
#: retrieval's numerical zeros (the fixtures' ``result.h5``: at most 7e-16): the Zmap has no
#: amplitude map, and no interpolator is built (nor SciPy's interpolation imported: 0.2-0.4 s of a
#: process's start). Interpolated, such values stay below the 1e-9 under which an interpolated
#: amplitude already counts as none unless the interpolant amplified them a thousandfold.
MAG_ZERO = 1e-12


@built_once(16)
def _no_amplitude(path: str, size: int, mtime_ns: int, convention: str, n_modes: int) -> bool:
    """Whether the file's bead magnitudes, as ``convention`` maps them to ``n_modes`` Noll modes
    (piston aside), are all within :data:`MAG_ZERO` of zero (or missing). Built once per file version."""
    b = H5Zmap.read_beads(path)
    if "coeff_mag" not in b or b["coeff_mag"].shape[0] == 0:
        return True
    return not bool(np.any(np.abs(_amplitude_modes(b["coeff_mag"], convention, n_modes)) > MAG_ZERO))


def _amplitude_modes(values: np.ndarray, convention: str, n_modes: int) -> np.ndarray:
    """Magnitude coefficients ``(N, K)`` of the file's convention as ``(N, n_modes)`` Noll ones, piston
    set to 0 (a uniform scale, removed by normalisation)."""
    if convention == "legacy21":
        mag = legacy_to_noll(values, n_modes, warn=False)
    else:
        mag = _to_noll(values, convention, n_modes)
    mag[:, 0] = 0.0
    return mag


@built_once(16)
def _bead_interpolators(path: str, size: int, mtime_ns: int) -> tuple[Any, ...] | None:
    """Bead points, magnitudes and their (cubic, nearest) interpolators, built once per file version.

    The same interpolators as ``scipy.interpolate.griddata`` builds on every call (its Delaunay
    triangulation dominated a small sample's cost); None when the Zmap has no bead magnitudes.
    """
    b = H5Zmap.read_beads(path)
    if "coeff_mag" not in b or b["coeff_mag"].shape[0] == 0:
        return None
    pts = np.stack([b["x"], b["y"]], axis=1)
    vals = b["coeff_mag"]
    if pts.shape[0] < 4:
        return pts, vals, None, None
    from scipy.interpolate import CloughTocher2DInterpolator, NearestNDInterpolator

    return pts, vals, CloughTocher2DInterpolator(pts, vals), NearestNDInterpolator(pts, vals)


@dataclass
class H5Zmap(Zmap):
    """A Zmap file of the original layout (``result.h5`` / ``patches.h5``), read lazily.

    Datasets: ``z_maps/phase`` (K, H, W) phase maps; ``coords`` (N, 2) bead centres **(y, x)**;
    ``zernike/coeff_mag`` (N, K) scattered magnitude coefficients (optional),
    ``zernike/coeff_phase`` and ``zernike/mean_ncc`` (NaN rows = rejected beads, ignored).
    Root attributes ``convention`` / ``units`` (if present) declare the coefficient convention.
    """

    path: str
    convention: str = "auto"
    units: str = "auto"
    wavelength_nm: float = 660.0
    n_modes: int = 21
    shape: tuple[int, int] = field(default=(0, 0))
    n_source_modes: int = 0
    _used: frozenset[int] = field(default=frozenset(), init=False, repr=False)
    _n_beads: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        import h5py

        p = Path(self.path)
        if not p.is_file():
            raise ZmapError(f"Zmap file not found: {p} (set zmap_path, or leave it null for the synthetic Zmap)")
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise ZmapError(f"cannot open Zmap {p} as HDF5: {exc}") from None
        with f:
            if "z_maps/phase" not in f:
                raise ZmapError(f"Zmap {p}: missing dataset 'z_maps/phase' (expected (modes, H, W) phase maps)")
            ds = f["z_maps/phase"]
            if ds.ndim != 3:
                raise ZmapError(f"Zmap {p}: 'z_maps/phase' must be 3-D (modes, H, W), got shape {ds.shape}")
            k, h, w = ds.shape
            self.shape = (int(h), int(w))
            self.n_source_modes = int(k)
            conv = self.convention
            if conv == "auto":
                attr = f.attrs.get("convention", f["z_maps/phase"].attrs.get("convention"))
                conv = attr.decode() if isinstance(attr, bytes) else attr
                if conv is None:
                    conv = "legacy21" if k == 21 else "noll"
            if conv not in ("legacy21", "noll", "osa"):
                raise ZmapError(f"Zmap {p}: unknown convention {conv!r} (expected legacy21, noll or osa)")
            if conv == "legacy21" and k != 21:
                raise ZmapError(f"Zmap {p}: legacy21 convention needs 21 modes, 'z_maps/phase' has {k}")
            self.convention = conv
            units = self.units
            if units == "auto":
                attr = f.attrs.get("units", f["z_maps/phase"].attrs.get("units"))
                units = (attr.decode() if isinstance(attr, bytes) else attr) or "rad"
            if units not in ("rad", "waves", "nm"):
                raise ZmapError(f"Zmap {p}: unknown units {units!r} (expected rad, waves or nm)")
            self.units = units
            if "coords" in f and (f["coords"].ndim != 2 or f["coords"].shape[-1] != 2):
                raise ZmapError(f"Zmap {p}: 'coords' must be (N, 2) (y, x), got {f['coords'].shape}")
            self._n_beads = int(f["coords"].shape[0]) if "coords" in f else 0
            for name in ("mean_ncc", "coeff_phase", "coeff_mag"):
                key = f"zernike/{name}"
                if "coords" in f and key in f and (f[key].ndim < 1 or f[key].shape[0] != self._n_beads):
                    raise ZmapError(
                        f"Zmap {p}: '{key}' must have one row per bead ({self._n_beads}, like 'coords'), got "
                        f"shape {f[key].shape}"
                    )
            if ds.dtype.kind not in "iuf":
                raise ZmapError(f"Zmap {p}: 'z_maps/phase' must hold real numbers, got dtype {ds.dtype}")
            if h == 0 or w == 0:
                raise ZmapError(f"Zmap {p}: 'z_maps/phase' is empty, shape {ds.shape}")
        self._used = used_source_modes(conv, k, self.n_modes)
        self._check_finite(p)

    def _check_finite(self, p: Path) -> None:
        """Refuse a Zmap whose used modes (or whose beads) hold no finite value (ZmapError naming the file)."""
        st = p.stat()
        nan = sorted(set(nan_planes(str(p.resolve()), st.st_size, st.st_mtime_ns)) & self._used)
        if nan:
            every = "every mode" if len(nan) == len(self._used) else f"mode(s) {nan} (file order, {self.convention})"
            raise ZmapError(
                f"Zmap {p}: 'z_maps/phase' is NaN at every pixel for {every}; a Zmap needs finite coefficients "
                "(NaN pixels mixed with finite ones are allowed)"
            )
        beads = self.beads()
        if beads and beads["x"].size == 0 and self._n_beads:
            raise ZmapError(
                f"Zmap {p}: every one of its {self._n_beads} beads has NaN coefficients or mean_ncc ('zernike/*': all "
                "rejected); a Zmap needs at least one finite bead (NaN beads mixed with good ones are ignored)"
            )

    def beads(self) -> dict[str, np.ndarray]:
        """Bead table with rejected (NaN) beads removed: ``y``, ``x``, ``mean_ncc``, ``coeff_phase``, ``coeff_mag``."""
        return self.read_beads(self.path)

    @staticmethod
    def read_beads(path: str | Path) -> dict[str, np.ndarray]:
        """The bead table of Zmap file ``path`` (see :meth:`beads`)."""
        import h5py

        with h5py.File(path, "r") as f:
            if "coords" not in f:
                return {}
            coords = np.asarray(f["coords"][()], dtype=np.float64)
            out = {"y": coords[:, 0], "x": coords[:, 1]}
            for name in ("mean_ncc", "coeff_phase", "coeff_mag"):
                key = f"zernike/{name}"
                if key in f:
                    out[name] = np.asarray(f[key][()], dtype=np.float64)
        good = np.ones(coords.shape[0], bool)
        for name in ("mean_ncc", "coeff_phase", "coeff_mag"):
            if name in out:
                v = out[name]
                good &= np.all(np.isfinite(v.reshape(v.shape[0], -1)), axis=1)
        return {k: v[good] for k, v in out.items()}

    def coefficients(self, x, y, *, method: str = "cubic"):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        order = {"cubic": 3, "linear": 1, "nearest": 0}[method]
        p = Path(self.path)
        st = p.stat()
        maps = PhaseMaps(str(p.resolve()), st.st_size, st.st_mtime_ns, (self.n_source_modes, *self.shape))
        if order == 3 and np.isfinite(x).all() and np.isfinite(y).all():
            warned = (
                frozenset(range(self.n_source_modes)) - self._used if self.convention == "legacy21" else frozenset()
            )
            raw = interp_cubic(maps, x, y, self._used, warned, str(self.path))
        else:
            raw = interp_window(maps, x, y, order, self._used, str(self.path))
        phase = _to_noll(raw, self.convention, self.n_modes)
        factor = _unit_factor(self.units, self.wavelength_nm)
        if factor != 1.0:
            phase *= factor
        mag = self._magnitude(x, y)
        return phase, mag

    def _magnitude(self, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """Scattered bead magnitudes interpolated at (x, y) with the correct axes; NaN beads ignored."""
        if x.size == 0:
            return None
        p = Path(self.path)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if _no_amplitude(*key, self.convention, self.n_modes):
            return None
        interp = _bead_interpolators(*key)
        if interp is None:
            return None
        pts, vals, cubic, nearest = interp
        q = np.stack([x, y], axis=1)
        if cubic is not None:  # scipy's griddata(method="cubic"), then "nearest" outside the hull
            out = cubic(q)
            miss = ~np.all(np.isfinite(out), axis=1)
            if miss.any():
                out[miss] = nearest(q[miss])
        else:
            d = ((q[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
            out = vals[np.argmin(d, axis=1)]
        mag = _amplitude_modes(out, self.convention, self.n_modes)
        if not np.any(np.abs(mag) > 1e-9):
            return None
        return mag

    def describe(self) -> dict:
        d = super().describe()
        d.update({"path": str(self.path), "source_modes": self.n_source_modes})
        return d


@dataclass
class SyntheticZmap(Zmap):
    """Smooth, realistic field-dependent aberrations for users without a calibration.

    Each mode j >= 5 (astigmatism, coma, trefoil, spherical, ...) varies as a random quadratic
    polynomial over the normalised chip coordinates; low orders dominate (amplitude ∝ 1/n), and
    the whole set is scaled so the RMS pupil phase at the chip centre is about ``rms_rad``.
    Piston, tip, tilt and defocus are zero (they would only shift emitters).
    """

    shape: tuple[int, int] = (1200, 1200)
    rms_rad: float = 0.35
    seed: int = 0
    n_modes: int = 21
    convention: str = "noll"
    units: str = "rad"

    def __post_init__(self) -> None:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0x5A,)))
        k = self.n_modes
        amp = np.zeros(k)
        for j in range(5, k + 1):
            from z2t_dask.physics.optics.zernike import noll_to_nm

            n, _ = noll_to_nm(j)
            amp[j - 1] = 1.0 / n
        # polynomial coefficients for 1, u, v, u², uv, v² per mode
        poly = rng.normal(0.0, 1.0, (k, 6)) * amp[:, None] * np.array([1.0, 0.6, 0.6, 0.3, 0.3, 0.3])
        spherical = 11 - 1
        if k > spherical:
            poly[spherical, 0] = abs(poly[spherical, 0]) + 0.5 * amp[spherical]  # a typical positive offset
        centre = poly[:, 0]
        norm = math.sqrt(float((centre**2).sum())) or 1.0
        self._poly = poly * (self.rms_rad / norm)

    def coefficients(self, x, y, *, method: str = "cubic"):
        h, w = self.shape
        u = (np.asarray(x, np.float64) - (w - 1) / 2) / max(w / 2, 1)
        v = (np.asarray(y, np.float64) - (h - 1) / 2) / max(h / 2, 1)
        terms = (np.ones_like(u), u, v, u * u, u * v, v * v)
        out = np.zeros(u.shape + (self._poly.shape[0],))
        for i, t in enumerate(terms):  # term by term, element-wise: the same bits on any machine (no BLAS)
            out += t[..., None] * self._poly[:, i]
        return out, None

    def maps(
        self, y0: int = 0, x0: int = 0, height: int | None = None, width: int | None = None, step: int = 1
    ) -> np.ndarray:
        """Coefficient maps ``(n_modes, rows, cols)`` of a window (for previews or export)."""
        h = height or self.shape[0]
        w = width or self.shape[1]
        yy, xx = np.mgrid[y0 : y0 + h : step, x0 : x0 + w : step]
        ph, _ = self.coefficients(xx.ravel(), yy.ravel())
        return ph.T.reshape(self.n_modes, *yy.shape)

    def describe(self) -> dict:
        d = super().describe()
        d.update({"rms_rad": self.rms_rad, "seed": self.seed})
        return d


def read_zmap(
    path: str | Path,
    *,
    convention: Literal["auto", "legacy21", "noll", "osa"] = "auto",
    units: Literal["auto", "rad", "waves", "nm"] = "auto",
    wavelength_nm: float = 660.0,
    n_modes: int = 21,
) -> H5Zmap:
    """Open a Zmap file (``result.h5`` / ``patches.h5``) lazily.

    Parameters
    ----------
    path
        HDF5 file with ``z_maps/phase`` (modes, H, W) and optionally ``coords`` (y, x),
        ``zernike/coeff_mag|coeff_phase|mean_ncc``.
    convention
        Mode order of the file; ``auto`` = the file's ``convention`` attribute, else ``legacy21``
        for 21-mode maps (the original tool) and ``noll`` otherwise.
    units
        Coefficient unit of the file (``auto`` = ``units`` attribute, else rad).
    wavelength_nm
        Needed to convert ``nm`` of wavefront into radians.
    n_modes
        Number of Noll modes returned.
    """
    try:
        st = Path(path).stat()
    except OSError:  # missing: H5Zmap raises the ZmapError naming it
        return H5Zmap(str(path), convention=convention, units=units, wavelength_nm=wavelength_nm, n_modes=n_modes)
    return _opened_zmap(str(path), st.st_size, st.st_mtime_ns, convention, units, float(wavelength_nm), int(n_modes))


@built_once(16)
def _opened_zmap(
    path: str, size: int, mtime_ns: int, convention: str, units: str, wavelength_nm: float, n_modes: int
) -> H5Zmap:
    """An opened and checked :class:`H5Zmap`, once per file version and reading options (a batch's
    samples share it; it holds no data, only what the file's checks found)."""
    return H5Zmap(path, convention=convention, units=units, wavelength_nm=wavelength_nm, n_modes=n_modes)
