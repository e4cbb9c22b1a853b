"""Fast PSF mode: a library of exact PSFs over field position, z and sub-pixel phase, interpolated.

This table library suits small fields (a node holds ``planes * (S + 1)^2`` patches).  A field
it does not cover within its memory cap (a whole chip with a varying Zmap) gets the low-rank
spectral library of :mod:`~z2t_dask.physics.optics.psf_spectral` instead
(:func:`z2t_dask.engine.assembly.make_psf_model` chooses, with ``plan_only``).

Model
-----
The exact model (:class:`~z2t_dask.physics.optics.psf.PupilPSF`) is tabulated once per Zmap and optics:

* **field**: aberration vectors ``c`` (Zernike phase, and amplitude if the Zmap has one; rad
  RMS, Noll) of a regular grid of field nodes over the area where emitters are drawn.  The grid
  is fine enough that the aberration changes by at most ``span_rad`` (RMS wavefront) across a
  cell, and a single node is used when the whole field is within ``tol_rad`` of its centre;
* **z**: planes every ``dz_um`` (or a little less) over ``[z_min, z_max]``;
* **sub-pixel phase**: offsets ``dx, dy = i / S - 1/2``, ``i = 0..S`` (camera pixels), computed
  together from one pupil transform per (node, plane): the pixel-integrated intensity is band
  limited, so its spectrum zero-padded ``S``-fold gives the exact samples on the sub-pixel grid.

An emitter's PSF is the interpolation of that table:

* **field**: its aberration vector is written as a convex combination ``sum_v lambda_v c_v``
  of the nodes of a field triangle (a segment on a one-row grid; the node itself with one node)
  that contains it *in aberration space*: the nearest node in RMS wavefront distance, then the
  triangle around that node with the smallest least-squares residual (ridge-regularised,
  barycentric weights ``>= -0.1``).  The compute interface receives aberrations, not
  positions: this is what makes a lookup by aberration equivalent to a lookup by field
  position, whatever the Zmap.  The PSF is then ``sum_v lambda_v PSF(c_v)`` (first order in
  the aberration: the error is second order in the cell span);
* **z**: linear between the two neighbouring planes;
* **sub-pixel**: bilinear between the four neighbouring sub-pixel offsets.

An emitter whose residual exceeds ``tol_rad`` (its aberrations are not those of this Zmap,
e.g. another Zmap or ``zernike.scale``), whose ``z`` is outside the table or whose ``|dx|`` or
``|dy|`` exceeds 1/2 is computed with the exact model: the stated error bound holds for every
PSF the library returns.

Error
-----
:meth:`PSFLibrary.measure_error` draws emitters uniformly over the field, the z range and the
sub-pixel offsets, evaluates their aberrations with the same field function, and reports the
relative L2 error ``||fast - exact||_2 / ||exact||_2`` of each PSF (max, 99th percentile,
mean).  The result is part of :meth:`PSFLibrary.describe` and so of every output's metadata.
With the defaults (``dz_um = 0.025``, ``subpixel = 8``, ``span_rad = 0.05``,
``tol_rad = 0.002``) the worst case is below 1 % (the contributions: z ~0.2 %, sub-pixel
~0.3 %, field ~0.1 %, residual <= 0.3 %).

Determinism
-----------
The tables are a pure function of the parameters (the exact model's computation plus FFTs),
built identically in every process.  An emitter's weights and table rows depend only on its
own inputs (element-wise float64 steps), and its taps are summed in float64 in tap order by
:data:`~z2t_dask.physics.optics.table_sum.weighted_rows` (no BLAS: exact products, a fixed
order): its PSF is bit-identical whatever other emitters share the call, on any CPU, with or
without numba (fallback emitters inherit the exact model's guarantee).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.fft as sfft

from z2t_dask.caching import BuildOnceCache
from z2t_dask.physics.optics import psf_store
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.table_sum import weighted_rows

__all__ = ["PSFLibrary", "FieldFunction", "cached_library", "clear_cache"]

#: ``(x, y) -> (phase (N, K) rad, mag (N, K) or None)`` at ROI positions (camera pixels).
FieldFunction = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]

#: Per-process caches (least recently used dropped first): tables by library key, libraries by
#: the caller's key (optics + Zmap + options).
_MAX_TABLES = 4
_TABLE_BUDGET = 512 * 2**20  # bytes of tables kept per process
_TABLES: BuildOnceCache[np.ndarray] = BuildOnceCache(_MAX_TABLES, _TABLE_BUDGET)
_LIBRARIES: BuildOnceCache[PSFLibrary] = BuildOnceCache(_MAX_TABLES)
_RIDGE = 1e-10  # rad^2: regularises the barycentric fit of nearly coincident nodes
_INSIDE = -0.1  # smallest barycentric weight accepted (mild extrapolation at cell edges)


def cached_library(key: str, build: Callable[[], PSFLibrary]) -> PSFLibrary:
    """The library of ``key`` built once per process (``build()`` on a miss; LRU of 4).

    Parameters
    ----------
    key : str
        Everything the library depends on (optics, field function source, ranges, options).
    build : callable
        Zero-argument builder, e.g. ``lambda: PSFLibrary.from_field(...)``.

    Returns
    -------
    PSFLibrary
    """
    return _LIBRARIES.get(key, build)


def clear_cache() -> None:
    """Drop this process's cached libraries and tables (as in a fresh worker process)."""
    from z2t_dask.physics.optics.psf_spectral import clear_spectral_cache

    _LIBRARIES.clear()
    _TABLES.clear()
    clear_spectral_cache()


def _fit(rows: int, cols: int, max_nodes: int) -> tuple[int, int]:
    """Shrink a node grid until it has at most ``max_nodes`` nodes (the longer side first)."""
    rows, cols = max(1, rows), max(1, cols)
    while rows * cols > max_nodes:
        if cols >= rows and cols > 1:
            cols -= 1
        else:
            rows -= 1
    return rows, cols


def _stack(phase: np.ndarray, mag: np.ndarray | None, k: int, with_mag: bool) -> np.ndarray:
    """Aberration vectors ``[phase_2..K, mag_2..K]`` (float64, piston dropped, zero-padded)."""
    n = phase.shape[0]
    out = np.zeros((n, (k - 1) * (2 if with_mag else 1)))
    kp = min(phase.shape[1], k)
    out[:, : kp - 1] = phase[:, 1:kp]
    if with_mag and mag is not None:
        km = min(mag.shape[1], k)
        out[:, k - 1 : k - 1 + km - 1] = mag[:, 1:km]
    return out


def _sq_dist(v: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``||v_i - nodes_j||^2`` (N, n_nodes), accumulated mode by mode (row i depends on v_i only)."""
    if nodes.shape[0] == 1:  # one node (a uniform field): the same sums over contiguous mode rows
        diff = np.subtract(v.T, nodes.T, order="C")  # (K, N)
        np.multiply(diff, diff, out=diff)
        acc = np.zeros(v.shape[0])
        for row in diff:
            acc += row
        return acc[:, None]
    d2 = np.zeros((v.shape[0], nodes.shape[0]))
    for k in range(v.shape[1]):
        d = v[:, k, None] - nodes[None, :, k]
        d2 += d * d
    return d2


def _dots(v: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """``v_i . vecs_j`` (N, M), accumulated mode by mode."""
    out = np.zeros((v.shape[0], vecs.shape[0]))
    for k in range(v.shape[1]):
        out += v[:, k, None] * vecs[None, :, k]
    return out


@dataclass(frozen=True, eq=False)
class PSFLibrary:
    """Interpolated table of exact PSFs over field, z and sub-pixel offset (fast PSF mode).

    Build it with :meth:`from_field`; it is then used like :class:`PupilPSF`
    (:meth:`compute`, :attr:`patch_size`, :meth:`describe`).

    Parameters
    ----------
    exact : PupilPSF
        The model tabulated (and used for fallback emitters).
    nodes : ndarray, shape (n_nodes, n_vec)
        Aberration vectors of the field nodes (see ``_stack``), row-major over ``grid``.
    grid : (int, int)
        ``(rows, cols)`` of the node grid over the field.
    node_xy : ndarray, shape (n_nodes, 2)
        Node positions ``(x, y)`` in ROI pixels (provenance).
    with_mag : bool
        Whether the vectors (and tables) include Zernike amplitude coefficients.
    z_min_um, z_max_um : float
        Axial range of the table (um, same sign convention as the exact model).
    dz_um : float
        Largest plane spacing (um); the planes are equispaced over the range.
    subpixel : int
        Sub-pixel offsets per pixel ``S`` (even, a multiple of the exact model's sampling).
    tol_rad : float
        Largest residual (rad RMS of wavefront) between an emitter's aberrations and their
        field interpolation for the library to be used; above it the exact model is used.
    info : dict
        Provenance of the build (field extent, span, error measurement), see :meth:`describe`.
    """

    exact: PupilPSF
    nodes: np.ndarray
    grid: tuple[int, int]
    node_xy: np.ndarray
    with_mag: bool = False
    z_min_um: float = -1.0
    z_max_um: float = 1.0
    dz_um: float = 0.025
    subpixel: int = 8
    tol_rad: float = 0.002
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.subpixel
        if not isinstance(s, (int, np.integer)) or s < 2 or s % 2 or s % self.exact.sampling:
            raise ValueError(
                f"subpixel must be an even integer >= 2 and a multiple of the model's sampling "
                f"({self.exact.sampling}), got {s!r}"
            )
        if not (math.isfinite(self.z_min_um) and math.isfinite(self.z_max_um)) or self.z_max_um < self.z_min_um:
            raise ValueError(f"need z_min_um <= z_max_um, got {self.z_min_um!r}, {self.z_max_um!r}")
        if not self.dz_um > 0:
            raise ValueError(f"dz_um must be > 0, got {self.dz_um!r}")
        if not self.tol_rad >= 0:
            raise ValueError(f"tol_rad must be >= 0, got {self.tol_rad!r}")
        nodes = np.ascontiguousarray(self.nodes, dtype=np.float64)
        if nodes.ndim != 2 or nodes.shape[0] != self.grid[0] * self.grid[1]:
            raise ValueError(f"nodes must have shape (rows * cols, n_vec) for grid {self.grid}")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "node_xy", np.asarray(self.node_xy, dtype=np.float64))

    # ------------------------------------------------------------------ sizes
    @property
    def patch_size(self) -> int:
        """Side of the output patches (camera pixels), as the exact model."""
        return self.exact.patch_size

    @property
    def n_modes(self) -> int:
        """Zernike modes accepted, as the exact model."""
        return self.exact.n_modes

    @property
    def z_planes(self) -> np.ndarray:
        """Axial positions of the table planes (um), equispaced, at least two (read-only)."""
        planes = self.__dict__.get("_planes")
        if planes is None:
            span = self.z_max_um - self.z_min_um
            n = max(2, int(math.ceil(span / self.dz_um - 1e-9)) + 1)
            planes = np.linspace(self.z_min_um, self.z_min_um + max(span, 1e-6), n)
            planes.setflags(write=False)
            self.__dict__["_planes"] = planes
        return planes

    @property
    def key(self) -> str:
        """Hash of everything the tables depend on (cache key, repr)."""
        h = hashlib.sha256()
        h.update(
            repr(
                (
                    self.exact.__getstate__(),
                    self.grid,
                    self.with_mag,
                    self.z_min_um,
                    self.z_max_um,
                    self.dz_um,
                    self.subpixel,
                )
            ).encode()
        )
        h.update(self.nodes.tobytes())
        return h.hexdigest()[:20]

    @property
    def table_bytes(self) -> int:
        """Memory of the tables (bytes, float32)."""
        return 4 * self.nodes.shape[0] * len(self.z_planes) * (self.subpixel + 1) ** 2 * self.patch_size**2

    def __repr__(self) -> str:
        return (
            f"PSFLibrary(key={self.key}, grid={self.grid}, planes={len(self.z_planes)}, "
            f"subpixel={self.subpixel}, tol_rad={self.tol_rad}, exact={self.exact!r})"
        )

    def __getstate__(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_field(
        cls,
        exact: PupilPSF,
        field_fn: FieldFunction,
        extent: tuple[float, float, float, float],
        z_range_um: tuple[float, float],
        *,
        dz_um: float = 0.025,
        subpixel: int = 8,
        span_rad: float = 0.05,
        tol_rad: float = 0.002,
        max_mib: float = 256.0,
        error_samples: int = 256,
        seed: int = 0,
        plan_only: bool = False,
    ) -> PSFLibrary:
        """Build the library of a field (Zmap) and measure its error.

        Parameters
        ----------
        exact : PupilPSF
            Exact model.
        field_fn : callable
            ``(x, y) -> (phase, mag)``: aberrations at ROI positions (camera pixels), the same
            function that gives the emitters theirs (phase rad RMS Noll ``(N, K)``, mag
            ``(N, K)`` or None).
        extent : (x_min, x_max, y_min, y_max)
            Field area covered (camera pixels of the ROI): where emitters are drawn.
        z_range_um : (z_min, z_max)
            Axial range covered (um).
        dz_um, subpixel, tol_rad
            See the class parameters.
        span_rad : float
            Largest aberration change (rad RMS) across a field cell.
        max_mib : float
            Memory cap of the tables (MiB; a node holds ``planes * (subpixel + 1)^2`` float32
            patches): a field needing more nodes gets coarser cells (larger, measured, error).
        error_samples : int
            Emitters drawn for :meth:`measure_error` (0 = skip).
        seed : int
            Seed of those draws.
        plan_only : bool
            Choose the node grid and measure its coverage (``info["coverage"]``) without building
            tables or measuring the error (cheap: field evaluations only).

        Returns
        -------
        PSFLibrary
            With tables built in this process and ``info`` holding the error measurement.
        """
        x0, x1, y0, y1 = (float(v) for v in extent)
        probe = cls(
            exact=exact,
            nodes=np.zeros((1, 1)),
            grid=(1, 1),
            node_xy=np.zeros((1, 2)),
            z_min_um=float(z_range_um[0]),
            z_max_um=float(z_range_um[1]),
            dz_um=dz_um,
            subpixel=subpixel,
        )
        max_nodes = max(1, int(max_mib * 2**20 // probe.table_bytes))
        n_f = 17
        fx = np.linspace(x0, x1, n_f)
        fy = np.linspace(y0, y1, n_f)
        gx, gy = np.meshgrid(fx, fy)
        ph, mag = field_fn(gx.ravel(), gy.ravel())
        k = exact.n_modes
        with_mag = mag is not None
        v = _stack(
            np.asarray(ph, np.float64), None if mag is None else np.asarray(mag, np.float64), k, with_mag
        ).reshape(n_f, n_f, -1)
        centre = v[n_f // 2, n_f // 2]
        spread = float(np.sqrt(((v - centre) ** 2).sum(-1)).max())
        varies = (False, False)
        if spread <= tol_rad / 2:
            shape = (1, 1)
        else:
            dx_ = max(fx[1] - fx[0], 1e-12)
            dy_ = max(fy[1] - fy[0], 1e-12)
            grad_x = float(np.sqrt(((v[:, 1:] - v[:, :-1]) ** 2).sum(-1)).max()) / dx_
            grad_y = float(np.sqrt(((v[1:] - v[:-1]) ** 2).sum(-1)).max()) / dy_
            varies = (grad_y * (y1 - y0) > tol_rad / 2, grad_x * (x1 - x0) > tol_rad / 2)
            rows = 1 + (int(math.ceil((y1 - y0) * grad_y / span_rad)) if varies[0] else 0)
            cols = 1 + (int(math.ceil((x1 - x0) * grad_x / span_rad)) if varies[1] else 0)
            shape = _fit(rows, cols, max_nodes)
        # field samples between the coarse ones (cell centres) check the coverage
        mx, my = np.meshgrid((fx[1:] + fx[:-1]) / 2, (fy[1:] + fy[:-1]) / 2)
        cph, cmag = field_fn(mx.ravel(), my.ravel())

        def make(grid: tuple[int, int]) -> PSFLibrary:
            nxs = np.linspace(x0, x1, grid[1]) if grid[1] > 1 else np.array([(x0 + x1) / 2])
            nys = np.linspace(y0, y1, grid[0]) if grid[0] > 1 else np.array([(y0 + y1) / 2])
            ngx, ngy = np.meshgrid(nxs, nys)
            node_xy = np.stack([ngx.ravel(), ngy.ravel()], axis=1)
            nph, nmag = field_fn(node_xy[:, 0], node_xy[:, 1])
            nodes = _stack(
                np.asarray(nph, np.float64), None if nmag is None else np.asarray(nmag, np.float64), k, with_mag
            )
            return cls(
                exact=exact,
                nodes=nodes,
                grid=grid,
                node_xy=node_xy,
                with_mag=with_mag,
                z_min_um=float(z_range_um[0]),
                z_max_um=float(z_range_um[1]),
                dz_um=dz_um,
                subpixel=subpixel,
                tol_rad=tol_rad,
            )

        lib = make(shape)
        coverage = float(np.mean(lib.field_weights(np.asarray(cph, np.float64), cmag)[2] <= tol_rad))
        while coverage < 1.0:  # refine the cells while the memory cap allows
            finer = _fit(
                2 * shape[0] - 1 if shape[0] > 1 else 1 + varies[0],
                2 * shape[1] - 1 if shape[1] > 1 else 1 + varies[1],
                max_nodes,
            )
            if finer == shape:
                break
            cand = make(finer)
            cov = float(np.mean(cand.field_weights(np.asarray(cph, np.float64), cmag)[2] <= tol_rad))
            if cov <= coverage:
                break
            lib, shape, coverage = cand, finer, cov
        if plan_only:
            lib.info.update({"coverage": coverage, "max_nodes": max_nodes})
            return lib
        if coverage < 0.99:
            warnings.warn(
                f"psf fast mode: the library ({shape[0]}x{shape[1]} field nodes, {max_mib:g} MiB cap) "
                f"serves {coverage:.0%} of the field within tol_rad={tol_rad:g} rad; the other emitters "
                "use the exact model (raise psf.fast_max_mib or psf.fast_tol_rad, or use the exact mode)",
                stacklevel=2,
            )
        if coverage > 0:
            lib._tables()  # build now (cached per process)
        info = {
            "field_extent_px": [x0, x1, y0, y1],
            "field_spread_rad": spread,
            "span_rad": span_rad,
            "max_nodes": max_nodes,
            "max_mib": float(max_mib),
            "coverage": coverage,
        }
        if error_samples:
            info["error"] = lib.measure_error(field_fn, extent, n=error_samples, seed=seed)
        lib.info.update(info)
        return lib

    # ------------------------------------------------------------------ tables
    def _tables(self) -> np.ndarray:
        """Tables ``(n_nodes * planes * (S+1)^2, p * p)`` float32, built once per process."""
        s1, p = self.subpixel + 1, self.patch_size
        shape = (self.nodes.shape[0] * len(self.z_planes) * s1 * s1, p * p)
        return _TABLES.get(
            self.key, lambda: psf_store.stored_array("psf-tables", self.key, shape, np.float32, self._build_tables)
        )

    def _build_tables(self) -> np.ndarray:
        ex = self.exact
        k = ex.n_modes
        planes = self.z_planes
        n_nodes, n_z, s1, p = self.nodes.shape[0], len(planes), self.subpixel + 1, self.patch_size
        out = np.empty((n_nodes, n_z, s1, s1, p, p), np.float32)
        phase = np.zeros((n_nodes, k))
        phase[:, 1:] = self.nodes[:, : k - 1]
        mag = None
        if self.with_mag:
            mag = np.zeros((n_nodes, k))
            mag[:, 1:] = self.nodes[:, k - 1 :]
        step = 16
        for n in range(n_nodes):
            for z0 in range(0, n_z, step):
                zs = planes[z0 : z0 + step]
                otf, norm = ex.pixel_otf(
                    np.repeat(phase[n : n + 1], len(zs), 0),
                    zs,
                    None if mag is None else np.repeat(mag[n : n + 1], len(zs), 0),
                )
                out[n, z0 : z0 + len(zs)] = self._subpixel_patches(otf, norm)
        return out.reshape(-1, p * p)

    def _subpixel_patches(self, otf: np.ndarray, norm: np.ndarray) -> np.ndarray:
        """Patches ``(B, S+1, S+1, p, p)`` at offsets ``i / S - 1/2`` from pixel spectra.

        Zero-pads the spectrum ``S / sampling``-fold (exact band-limited interpolation), inverse
        transforms only the rows and columns the patches need.
        """
        ex = self.exact
        s_up = self.subpixel // ex.sampling
        b, n, nh = otf.shape  # n = n_int fine samples, nh = n // 2 + 1
        big = n * s_up  # = intensity_window * subpixel samples
        half = n // 2
        spec = np.zeros((b, big, nh), np.complex64)
        spec[:, :half] = otf[:, :half]
        spec[:, big - (n - half) :] = otf[:, half:]
        if n % 2 == 0:  # split the Nyquist row between +n/2 and -n/2
            spec[:, half] = 0.5 * otf[:, half]
            spec[:, big - half] = 0.5 * otf[:, half]
        col = sfft.ifft(spec, axis=1, overwrite_x=True)
        s, p = self.subpixel, self.patch_size
        c0 = p // 2
        need = (np.arange(p * s + 1) - c0 * s - s // 2) % big  # fine index of r*S + S - i
        col = col[:, need]
        wide = np.zeros((b, p * s + 1, big // 2 + 1), np.complex64)
        wide[:, :, :nh] = col
        if n % 2 == 0:
            wide[:, :, n // 2] *= 0.5  # the Nyquist column becomes an interior frequency
        fine = sfft.irfft(wide, n=big, axis=2, overwrite_x=True)[:, :, need]
        fine *= (norm * float(s_up) ** 2).astype(np.float32)[:, None, None]
        r = np.arange(p)[:, None] * s + s - np.arange(s + 1)[None, :]  # (p, S+1): fine row of (r, i)
        # patches[b, iy, ix, r, c] = fine[b, r*S + S - iy, c*S + S - ix]
        rows = fine[:, r.T]  # (b, S+1, p, p*S+1)
        return rows[:, :, :, r.T].transpose(0, 1, 3, 2, 4)

    # ------------------------------------------------------------------ field interpolation
    @property
    def _simplices(self) -> SimpleNamespace:
        cache = self.__dict__.get("_simplex_cache")
        if cache is not None:
            return cache
        rows, cols = self.grid
        idx = np.arange(rows * cols).reshape(rows, cols)
        simp = []
        if rows > 1 and cols > 1:
            for i in range(rows - 1):
                for j in range(cols - 1):
                    a, b, c, d = idx[i, j], idx[i, j + 1], idx[i + 1, j], idx[i + 1, j + 1]
                    simp += [(a, b, d), (a, c, d)]
        elif rows * cols > 1:
            line = idx.ravel()
            simp = [(line[i], line[i + 1], line[i + 1]) for i in range(len(line) - 1)]
        simp_arr = np.array(simp, dtype=np.intp).reshape(-1, 3)
        nodes = self.nodes
        e1 = nodes[simp_arr[:, 1]] - nodes[simp_arr[:, 0]]
        e2 = nodes[simp_arr[:, 2]] - nodes[simp_arr[:, 0]]
        seg = simp_arr[:, 1] == simp_arr[:, 2]
        e2[seg] = 0.0
        g11 = (e1 * e1).sum(1) + _RIDGE
        g22 = (e2 * e2).sum(1) + _RIDGE
        g12 = (e1 * e2).sum(1)
        det = g11 * g22 - g12 * g12
        # simplices around each node (padded with -1)
        around: list[list[int]] = [[] for _ in range(rows * cols)]
        for t, tri in enumerate(simp_arr):
            for v in set(tri.tolist()):
                around[v].append(t)
        width = max([len(a) for a in around] + [1])
        around_arr = np.full((rows * cols, width), -1, np.intp)
        for v, a in enumerate(around):
            around_arr[v, : len(a)] = a
        cache = SimpleNamespace(
            simp=simp_arr,
            e1=e1,
            e2=e2,
            g11=g11,
            g22=g22,
            g12=g12,
            det=det,
            seg=seg,
            around=around_arr,
            e1_dot_n0=(e1 * nodes[simp_arr[:, 0]]).sum(1),
            e2_dot_n0=(e2 * nodes[simp_arr[:, 0]]).sum(1),
        )
        self.__dict__["_simplex_cache"] = cache
        return cache

    def field_weights(self, phase: np.ndarray, mag: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Field nodes, barycentric weights and residuals of emitters' aberrations.

        Parameters
        ----------
        phase : ndarray (N, K)
            Zernike phase (rad RMS, Noll).
        mag : ndarray (N, K2) or None
            Zernike amplitude coefficients.

        Returns
        -------
        nodes : ndarray (N, 3) int
            Node indices (a repeated index carries weight 0).
        weights : ndarray (N, 3) float64
            Barycentric weights (sum 1).
        residual : ndarray (N,) float64
            RMS wavefront distance (rad) between the emitter's aberrations and their field
            interpolation ``sum_v weight_v c_v``.
        """
        k = self.exact.n_modes
        v = _stack(
            np.asarray(phase, np.float64), None if mag is None else np.asarray(mag, np.float64), k, self.with_mag
        )
        if not self.with_mag and mag is not None and np.any(np.asarray(mag)[:, 1:] != 0):
            # amplitude aberrations the library does not have: their size counts as residual
            extra = np.asarray(mag, np.float64)[:, 1:]
            extra_sq = (extra * extra).sum(1)
        else:
            extra_sq = 0.0
        n = v.shape[0]
        d2 = _sq_dist(v, self.nodes)
        near = np.argmin(d2, axis=1)
        rows = np.arange(n)
        nodes = np.repeat(near[:, None], 3, axis=1)
        weights = np.zeros((n, 3))
        weights[:, 0] = 1.0
        res2 = d2[rows, near]
        if self.nodes.shape[0] > 1:
            sx = self._simplices
            cand = sx.around[near]  # (N, W)
            valid = cand >= 0
            c = np.where(valid, cand, 0)
            r1 = _dots(v, sx.e1)[rows[:, None], c] - sx.e1_dot_n0[c]  # e1 . (v - n0)
            r2 = _dots(v, sx.e2)[rows[:, None], c] - sx.e2_dot_n0[c]
            l1 = (sx.g22[c] * r1 - sx.g12[c] * r2) / sx.det[c]
            l2 = (sx.g11[c] * r2 - sx.g12[c] * r1) / sx.det[c]
            l2 = np.where(sx.seg[c], 0.0, l2)
            l1 = np.where(sx.seg[c], r1 / sx.g11[c], l1)
            l0 = 1.0 - l1 - l2
            n0 = sx.simp[c, 0]
            w2 = d2[rows[:, None], n0]  # ||v - n0||^2
            g11 = sx.g11[c] - _RIDGE
            g22 = sx.g22[c] - _RIDGE
            cand_res = w2 - 2 * (l1 * r1 + l2 * r2) + l1 * l1 * g11 + l2 * l2 * g22 + 2 * l1 * l2 * sx.g12[c]
            cand_res = np.maximum(cand_res, 0.0)
            ok = valid & (np.minimum(np.minimum(l0, l1), l2) >= _INSIDE)
            score = np.where(ok, cand_res, np.inf)
            best = np.argmin(score, axis=1)
            use = np.isfinite(score[rows, best]) & (score[rows, best] < res2)
            t = c[rows, best]
            nodes = np.where(use[:, None], sx.simp[t], nodes)
            weights = np.where(use[:, None], np.stack([l0[rows, best], l1[rows, best], l2[rows, best]], 1), weights)
            res2 = np.where(use, score[rows, best], res2)
        return nodes, weights, np.sqrt(res2 + extra_sq)

    def serves(self, phase: np.ndarray, mag: np.ndarray | None) -> np.ndarray:
        """Whether the library (not the exact model) gives the PSFs of these aberrations (within z and offsets).

        Parameters
        ----------
        phase, mag
            As in :meth:`field_weights`.

        Returns
        -------
        ndarray (N,) bool
        """
        return self.field_weights(phase, mag)[2] <= self.tol_rad

    # ------------------------------------------------------------------ main entry point
    def compute(
        self,
        phase: Any,
        z_um: Any,
        dx: Any = None,
        dy: Any = None,
        mag: Any = None,
        *,
        dipole: Any = None,
        xp: Any = np,
        workers: int | None = None,
        batch_size: int = 64,
    ) -> Any:
        """Pixel-integrated PSF patches of many emitters (same contract as :meth:`PupilPSF.compute`).

        Emitters within the library (see the module notes) are interpolated; the others are
        computed exactly. Subclasses (the spectral library) keep this routing and the counts and
        supply :meth:`_served` and :meth:`_fast_patches`. The library tabulates freely rotating
        (isotropic) emitters: fixed dipoles (``dipole``, unit vectors ``(N, 3)``) are all computed
        with the exact model and counted as its emitters. Non-numpy ``xp`` uses the exact model.

        Returns
        -------
        ndarray, shape (N, patch_size, patch_size), float32
            Fraction of each emitter's photons per camera pixel of its patch.
        """
        counts = self.__dict__.setdefault("_counts", {"fast": 0, "exact": 0})
        if xp is not np or dipole is not None:
            kw = {} if dipole is None else {"dipole": dipole}
            out = self.exact.compute(phase, z_um, dx, dy, mag, xp=xp, workers=workers, batch_size=batch_size, **kw)
            counts["exact"] += int(out.shape[0])
            return out
        phase, z_um, dx, dy, mag = self.exact.check_inputs(phase, z_um, dx, dy, mag)
        n = phase.shape[0]
        p = self.patch_size
        out = np.empty((n, p, p), np.float32)
        if n == 0:
            return out
        z64 = z_um.astype(np.float64)
        fast, where = self._served(phase, mag, z64, dx, dy)
        slow = np.flatnonzero(~fast)
        if slow.size:
            out[slow] = self.exact.compute(
                phase[slow],
                z_um[slow],
                dx[slow],
                dy[slow],
                None if mag is None else mag[slow],
                workers=workers,
                batch_size=batch_size,
            )
        idx = np.flatnonzero(fast)
        if idx.size:
            self._fast_patches(out, idx, where, z64, dx, dy)
        counts["fast"] += int(idx.size)
        counts["exact"] += int(slow.size)
        return out

    def _served(
        self, phase: np.ndarray, mag: np.ndarray | None, z64: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Which emitters the library serves (bool ``(N,)``) and what :meth:`_fast_patches` needs of them.

        Here: field residual within ``tol_rad``, z within the planes, offsets within half a pixel;
        the emitters' field nodes and weights.
        """
        nodes, lam, res = self.field_weights(phase, mag)
        planes = self.z_planes
        fast = (
            (res <= self.tol_rad) & (z64 >= planes[0]) & (z64 <= planes[-1]) & (np.abs(dx) <= 0.5) & (np.abs(dy) <= 0.5)
        )
        return fast, (nodes, lam)

    def _fast_patches(
        self, out: np.ndarray, idx: np.ndarray, where: Any, z64: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> None:
        """Write the interpolated patches of the served emitters ``idx`` into ``out`` (``where``: :meth:`_served`'s)."""
        nodes, lam = where
        n, p = out.shape[0], self.patch_size
        rows, w = self._taps(nodes[idx], lam[idx], z64[idx], dx[idx].astype(np.float64), dy[idx].astype(np.float64))
        order = np.argsort(rows[:, 0], kind="stable")  # neighbours in the table share rows: cache reuse
        weighted_rows(out.reshape(n, p * p), idx[order], rows[order], w[order], self._tables())

    def _taps(
        self, nodes: np.ndarray, lam: np.ndarray, z: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Table rows ``(N, taps)`` and float32 weights of the field x z x sub-pixel stencil."""
        planes = self.z_planes
        n_z = len(planes)
        s = self.subpixel
        fz = (z - planes[0]) / (planes[1] - planes[0])
        iz = np.clip(np.floor(fz), 0, n_z - 2).astype(np.intp)
        wz = fz - iz
        fx = (dx + 0.5) * s
        ix = np.clip(np.floor(fx), 0, s - 1).astype(np.intp)
        wx = fx - ix
        fy = (dy + 0.5) * s
        iy = np.clip(np.floor(fy), 0, s - 1).astype(np.intp)
        wy = fy - iy
        # sub-pixel stencil: the triangle of the (S+1)^2 offset grid that holds (dx, dy)
        # (barycentric, 3 taps): (0, 0), (1, 1) and (0, 1) or (1, 0) as (row, col) steps.
        # Taps in (field node v, z plane a, corner t) order, computed tap-major (rows of N emitters:
        # ~30 NumPy calls instead of ~150); weight (v, a, t) = (lam_v * wz_a) * w_t in float64.
        n = z.shape[0]
        nf = 1 if self.nodes.shape[0] == 1 else 3
        # row of tap (v, a, t): ((node_v * n_z + iz + a) * (S + 1) + iy + b_t) * (S + 1) + ix + c_t
        base = (nodes[:, :nf].T * n_z + iz) * (s + 1) + iy  # (F, N)
        za = (base[:, None, :] + np.array([0, s + 1])[:, None]) * (s + 1) + ix  # (F, 2, N)
        step = np.empty((3, n), np.intp)  # b_t * (S + 1) + c_t
        step[0] = 0
        np.multiply(wx < wy, s, out=step[1])  # (1, 0) below the diagonal, else (0, 1)
        step[1] += 1
        step[2] = s + 2
        rows = za[:, :, None, :] + step  # (F, 2, 3, N)
        wsub = np.empty((3, n))
        np.subtract(1.0, np.maximum(wx, wy), out=wsub[0])
        np.abs(wx - wy, out=wsub[1])
        np.minimum(wx, wy, out=wsub[2])
        wa = np.stack([1.0 - wz, wz])  # (2, N)
        w = (lam[:, :nf].T[:, None, :] * wa)[:, :, None, :] * wsub  # (F, 2, 3, N)
        return np.ascontiguousarray(rows.reshape(nf * 6, n).T), w.reshape(nf * 6, n).T.astype(np.float32, order="C")

    # ------------------------------------------------------------------ error and provenance
    def measure_error(
        self, field_fn: FieldFunction, extent: tuple[float, float, float, float], *, n: int = 256, seed: int = 0
    ) -> dict[str, Any]:
        """Relative L2 error of the library against the exact model over field, z and offsets.

        Parameters
        ----------
        field_fn, extent
            As in :meth:`from_field`.
        n : int
            Emitters drawn uniformly over the field extent, ``[z_min, z_max]`` and
            ``dx, dy`` in ``[-1/2, 1/2]``.
        seed : int
            Seed of the draws (the measurement is deterministic).

        Returns
        -------
        dict
            ``metric``, ``samples``, ``max``, ``p99``, ``mean`` (fractions, over the emitters
            the library serves; None if it serves none) and ``exact_fraction`` (emitters served
            by the exact model).
        """
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xFA57,)))
        x0, x1, y0, y1 = extent
        x = rng.uniform(x0, x1, n)
        y = rng.uniform(y0, y1, n)
        z = rng.uniform(self.z_min_um, self.z_max_um, n)
        dx = rng.uniform(-0.5, 0.5, n)
        dy = rng.uniform(-0.5, 0.5, n)
        ph, mag = field_fn(x, y)
        served = self.serves(np.asarray(ph, np.float64), mag)
        fast = self.compute(ph, z, dx, dy, mag).astype(np.float64)
        ref = self.exact.compute(ph, z, dx, dy, mag).astype(np.float64)
        err = np.linalg.norm((fast - ref).reshape(n, -1), axis=1) / np.maximum(
            np.linalg.norm(ref.reshape(n, -1), axis=1), 1e-300
        )
        e = err[served]
        stat = (lambda f: float(f(e))) if e.size else (lambda f: None)
        return {
            "metric": "relative L2 per PSF, ||fast - exact||_2 / ||exact||_2 over the patch",
            "samples": int(n),
            "draws": "x, y uniform over the field extent; z uniform over the table; dx, dy uniform in [-0.5, 0.5] px",
            "max": stat(np.max),
            "p99": stat(lambda a: np.quantile(a, 0.99)),
            "mean": stat(np.mean),
            "exact_fraction": float(1.0 - served.mean()),
        }

    def describe(self) -> dict[str, Any]:
        """Provenance of the fast model for the output metadata (deterministic).

        Returns
        -------
        dict
            ``mode = "fast"``, the interpolation scheme, table sizes, the exact model's
            description and the measured error (see :meth:`measure_error`).
        """
        planes = self.z_planes
        return {
            "mode": "fast",
            "model": "library of exact PSFs; field: barycentric in aberration space over a node "
            "grid; z: linear; sub-pixel: bilinear; emitters beyond tol_rad, the z range "
            "or |d| > 0.5 px use the exact model",
            "exact": self.exact.describe(),
            "grid": list(self.grid),
            "node_xy_px": self.node_xy.round(3).tolist(),
            "z_planes": [float(planes[0]), float(planes[-1]), int(len(planes))],
            "dz_um": float(planes[1] - planes[0]),
            "subpixel": int(self.subpixel),
            "tol_rad": float(self.tol_rad),
            "with_mag": bool(self.with_mag),
            "table_mib": round(self.table_bytes / 2**20, 1) if self.info.get("coverage", 1.0) > 0 else 0.0,
            "key": self.key,
            **self.info,
        }
