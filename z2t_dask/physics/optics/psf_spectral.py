"""Fast PSF mode for whole chips: a low-rank spectral library ("EigenPSF") of the exact model.

Why this representation
-----------------------
The table library (:mod:`~z2t_dask.physics.optics.psf_library`) stores, per field node and z
plane, ``(S + 1)^2`` sub-pixel shifted patches (28.9 MiB per node for the default 33-px patch):
a whole chip with a varying field needs hundreds of nodes and does not fit its memory cap.
Measured on the default 1200^2 synthetic field (vectorial model, 9 x 9 field nodes x 41 planes):

* **sub-pixel**: the pixel-integrated intensity is band limited, so its spectrum on the
  ``n_int`` intensity window is zero beyond ``2 NA / lambda`` (outside energy ~1e-14): a
  ``(2 Ky + 1) x (Kx + 1)`` block of the half spectrum (55 x 28 complex by default, 12 KiB)
  holds the PSF at *every* sub-pixel offset, and the offset is an exact phase ramp (the exact
  model's own shift): no sub-pixel table and no sub-pixel error;
* **z and field**: tensor cubic (Lagrange) interpolation between planes 0.05 um apart and field
  nodes up to 4 ``span_rad`` apart costs ~0.01 % and ~0.2 % (linear interpolation: 2.4 % at
  0.1 um, 1.7 % at a 304-px spacing);
* **rank**: the spectra of all field positions and planes lie close to a low-dimensional
  space: the best rank-100 basis leaves a max relative residual of 0.19 % (rank 60: 1.4 %);
  those of a few neighbouring planes, closer still (rank ~45 for ~11 planes at 0.3 %).

So the library stores, per z slab (:func:`~z2t_dask.physics.optics.psf_basis.slab_starts`), an
orthonormal basis of ``K_s`` spectra (a fixed size: it depends on the optics and the aberration
*range*, not on the area) and, per field node and plane of the slab, the ``K_s`` coefficients of
the exact PSF (``K_s`` floats instead of a table).  An emitter's PSF, in the slab of its first
cubic z tap, is::

    spectrum = sum_k c_k(x, y, z) B_k          (c: tricubic in the node grid and the planes)
    patch    = Re(F_y diag(e^{-2 pi i ky dy}) spectrum diag(w e^{-2 pi i kx dx}) F_x^T)

Its field position comes from its aberrations (:mod:`~z2t_dask.physics.optics.psf_lookup`, a
lookup grid with cells of ``span_rad / 2``).  An emitter farther than ``tol_rad`` (RMS
wavefront) from the field, or outside the planes, or a fixed dipole, is computed exactly.

Determinism: the basis is computed under one BLAS thread (``threadpoolctl``) from matrix
products and a symmetric eigen-decomposition; each emitter's weights are element-wise float64
steps and its sums its own fixed-shape products (NumPy's stacked ``matmul``, one small BLAS call
per emitter): its bytes do not depend on the other emitters of the call (tested). Large calls
run in blocks (lookups of ~76 emitters, residuals of 32, renders of 128 in groups of 32), so
that the temporaries alive at once stay below ~1 MiB and are reused from the allocator's heap:
whole-call temporaries came as fresh pages in some processes, whose page faults cost a third of
the PSF time (31 against 24 us per PSF on the default chip).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from z2t_dask.caching import BuildOnceCache
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.psf_basis import spectral_tables, stored_tables
from z2t_dask.physics.optics.psf_library import FieldFunction, PSFLibrary, _fit, _stack
from z2t_dask.physics.optics.psf_lookup import TriangleLookup

__all__ = ["SpectralLibrary", "clear_spectral_cache"]

_CACHE: BuildOnceCache[SimpleNamespace] = BuildOnceCache(4)
_GROUP = 32  # emitters evaluated together (gathers, spectra in cache; per PSF 16: +1 us, 64: +5 us)
_BLOCK = 128  # emitters whose interpolation taps are computed together ((128, 64) arrays: 64 KiB)
_RESIDUAL_ROWS = 32  # emitters per block of node_residual ((32, 16, n_vec) float64 temporaries)
_PSF_SPAN = 4.0  # PSF node cells span up to this many span_rad (cubic interpolation)
_LOOK_SPAN = 0.5  # lookup cells span up to this many span_rad (linear, residual check)
_MAX_LOOK_NODES = 65_536
_MAX_PSF_NODES = 144  # at most 144 x planes exact PSFs to build


def clear_spectral_cache() -> None:
    """Drop this process's spectral tables (as in a fresh worker process)."""
    _CACHE.clear()


def _cubic(f: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First node and 4 Lagrange weights of cubic interpolation at fractional indices ``f`` (n >= 4)."""
    i0 = np.clip(np.floor(f).astype(np.intp) - 1, 0, n - 4)
    t = f - i0
    w = np.empty((f.size, 4))
    for k in range(4):
        num = np.ones_like(t)
        den = 1.0
        for j in range(4):
            if j != k:
                num = num * (t - j)
                den *= k - j
        w[:, k] = num / den
    return i0, w


def _shift_phasors(dy: np.ndarray, dx: np.ndarray, step: float, ky: int, kx: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel shift ramps ``e^{-i step d k}``: ``(m, 2 ky + 1)`` over [-ky, ky] and ``(m, kx + 1)`` over [0, kx].

    Powers of one phasor per offset (``d`` in px, ``step`` in rad per px and frequency index):
    a running complex128 product, ~k ulp from ``exp`` of each argument, far below the complex64
    the ramps are stored in; negative frequencies are the conjugates. Element-wise per emitter.
    """
    m, top = dy.shape[0], max(ky, kx)
    base = np.exp(-1j * step * np.concatenate([dy, dx]))
    powers = np.empty((2 * m, top + 1), np.complex128)
    powers[:, 0] = 1.0
    np.cumprod(np.broadcast_to(base[:, None], (2 * m, top)), axis=1, out=powers[:, 1:])
    p64 = powers.astype(np.complex64)
    ey = np.empty((m, 2 * ky + 1), np.complex64)
    ey[:, ky:] = p64[:m, : ky + 1]
    ey[:, :ky] = np.conj(p64[:m, ky:0:-1])
    return ey, p64[m:, : kx + 1]


@dataclass(frozen=True, eq=False)
class SpectralLibrary(PSFLibrary):
    """Low-rank spectral library of the exact model over a large field (see the module notes).

    The inherited ``nodes``, ``grid`` and ``node_xy`` are the *lookup* grid (aberration vectors
    of a fine regular grid over the field); ``subpixel`` is unused (sub-pixel shifts are exact).

    Parameters
    ----------
    psf_grid : (int, int)
        ``(rows, cols)`` of the PSF node grid (1 or >= 4 per axis) over the same field extent.
    psf_nodes : ndarray, shape (rows * cols, n_vec)
        Aberration vectors at those nodes (the tables are rebuilt from them in every process).
    rank_tol : float
        Largest relative residual of the basis over the node spectra (sets the rank).
    max_rank : int
        Upper bound of the rank.
    psf_tol_rad : float
        Largest RMS wavefront distance (rad) between an emitter's aberrations and the PSF
        nodes' field interpolation at its position (:meth:`node_residual`); beyond it: exact.
    """

    psf_grid: tuple[int, int] = (1, 1)
    psf_nodes: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))
    rank_tol: float = 0.003
    max_rank: int = 320
    psf_tol_rad: float = 0.005

    def __post_init__(self) -> None:
        super().__post_init__()
        r, c = self.psf_grid
        if r < 1 or c < 1 or r in (2, 3) or c in (2, 3):
            raise ValueError(f"psf_grid must have 1 or >= 4 nodes per axis, got {self.psf_grid}")
        nodes = np.ascontiguousarray(self.psf_nodes, dtype=np.float64)
        if nodes.shape != (r * c, self.nodes.shape[1]):
            raise ValueError(f"psf_nodes must have shape ({r * c}, {self.nodes.shape[1]}), got {nodes.shape}")
        object.__setattr__(self, "psf_nodes", nodes)
        if self.grid[0] * self.grid[1] < 2:
            raise ValueError("the lookup grid needs at least 2 nodes")

    # ------------------------------------------------------------------ sizes
    @property
    def z_planes(self) -> np.ndarray:
        """Axial positions of the planes (um), equispaced, at least four (read-only)."""
        planes = self.__dict__.get("_planes")
        if planes is None:
            span = max(self.z_max_um - self.z_min_um, 1e-3)
            n = max(4, int(math.ceil(span / self.dz_um - 1e-9)) + 1)
            planes = np.linspace(self.z_min_um, self.z_min_um + span, n)
            planes.setflags(write=False)
            self.__dict__["_planes"] = planes
        return planes

    @property
    def key(self) -> str:
        """Hash of everything the tables depend on."""
        h = hashlib.sha256()
        h.update(
            repr(("spectral", super().key, self.psf_grid, self.rank_tol, self.max_rank, self.psf_tol_rad)).encode()
        )
        h.update(self.psf_nodes.tobytes())
        return h.hexdigest()[:20]

    @property
    def table_bytes(self) -> int:
        """Memory of the basis, coefficients and lookup grid (bytes) once built."""
        return int(self._tables().nbytes + self.nodes.nbytes)

    def __repr__(self) -> str:
        return (
            f"SpectralLibrary(key={self.key}, lookup={self.grid}, psf_grid={self.psf_grid}, "
            f"planes={len(self.z_planes)}, tol_rad={self.tol_rad}, exact={self.exact!r})"
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_field(  # type: ignore[override]
        cls,
        exact: PupilPSF,
        field_fn: FieldFunction,
        extent: tuple[float, float, float, float],
        z_range_um: tuple[float, float],
        *,
        dz_um: float = 0.05,
        span_rad: float = 0.05,
        tol_rad: float = 0.002,
        max_mib: float = 256.0,
        error_samples: int = 256,
        seed: int = 0,
        rank_tol: float = 0.003,
    ) -> SpectralLibrary:
        """Build the spectral library of a field (Zmap) and measure its error.

        Parameters
        ----------
        exact, field_fn, extent, z_range_um, tol_rad, error_samples, seed
            As in :meth:`PSFLibrary.from_field`.
        dz_um : float
            Largest plane spacing (um; cubic interpolation).
        span_rad : float
            Field cells: PSF nodes up to ``4 span_rad`` apart (RMS aberration change), lookup
            nodes up to ``span_rad / 2`` apart (refined until the field is covered).
        max_mib : float
            Memory cap (MiB) of basis + coefficients; the rank is lowered to fit (measured error).
        rank_tol : float
            Target relative residual of the basis over the node spectra.
        """
        x0, x1, y0, y1 = (float(v) for v in extent)
        k = exact.n_modes
        n_f = 17
        fx, fy = np.linspace(x0, x1, n_f), np.linspace(y0, y1, n_f)
        gx, gy = np.meshgrid(fx, fy)
        ph, mag = field_fn(gx.ravel(), gy.ravel())
        with_mag = mag is not None
        v = _stack(np.asarray(ph, np.float64), None if mag is None else np.asarray(mag, np.float64), k, with_mag)
        v = v.reshape(n_f, n_f, -1)
        grad_x = float(np.sqrt(((v[:, 1:] - v[:, :-1]) ** 2).sum(-1)).max()) / max(fx[1] - fx[0], 1e-12)
        grad_y = float(np.sqrt(((v[1:] - v[:-1]) ** 2).sum(-1)).max()) / max(fy[1] - fy[0], 1e-12)
        var_x, var_y = grad_x * (x1 - x0) > tol_rad / 2, grad_y * (y1 - y0) > tol_rad / 2

        def cells(span: float, grad: float, width: float) -> int:
            return int(math.ceil(width * grad / span))

        def nodes_at(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
            xs = np.linspace(x0, x1, cols) if cols > 1 else np.array([(x0 + x1) / 2])
            ys = np.linspace(y0, y1, rows) if rows > 1 else np.array([(y0 + y1) / 2])
            ngx, ngy = np.meshgrid(xs, ys)
            xy = np.stack([ngx.ravel(), ngy.ravel()], axis=1)
            nph, nmag = field_fn(xy[:, 0], xy[:, 1])
            vec = _stack(
                np.asarray(nph, np.float64), None if nmag is None else np.asarray(nmag, np.float64), k, with_mag
            )
            return vec, xy

        pr = max(4, 1 + cells(_PSF_SPAN * span_rad, grad_y, y1 - y0)) if var_y else 1
        pc = max(4, 1 + cells(_PSF_SPAN * span_rad, grad_x, x1 - x0)) if var_x else 1
        pr, pc = _fit(pr, pc, _MAX_PSF_NODES)  # bounded build cost; a rougher field falls back to exact
        pr, pc = (pr if pr == 1 else max(pr, 4)), (pc if pc == 1 else max(pc, 4))
        psf_nodes, psf_xy = nodes_at(pr, pc)
        mx, my = np.meshgrid((fx[1:] + fx[:-1]) / 2, (fy[1:] + fy[:-1]) / 2)
        cph, cmag = field_fn(mx.ravel(), my.ravel())
        lr = max(2, 1 + cells(_LOOK_SPAN * span_rad, grad_y, y1 - y0)) if var_y else 1
        lc = max(2, 1 + cells(_LOOK_SPAN * span_rad, grad_x, x1 - x0)) if var_x else 1
        lr, lc = _fit(lr, lc, _MAX_LOOK_NODES)

        def make(shape: tuple[int, int]) -> SpectralLibrary:
            look, look_xy = nodes_at(*shape)
            return cls(
                exact=exact,
                nodes=look,
                grid=shape,
                node_xy=look_xy,
                with_mag=with_mag,
                z_min_um=float(z_range_um[0]),
                z_max_um=float(z_range_um[1]),
                dz_um=dz_um,
                subpixel=2 * exact.sampling,
                tol_rad=tol_rad,
                psf_grid=(pr, pc),
                psf_nodes=psf_nodes,
                rank_tol=rank_tol,
            )

        lib = make((lr, lc))
        lib.__dict__["_max_mib"] = float(max_mib)
        probe_res = lib.field_weights(np.asarray(cph, np.float64), cmag)[2]
        while probe_res.max() > tol_rad / 4:  # refine the lookup while it is coarse for this field
            finer = _fit(2 * lr - 1 if lr > 1 else 1, 2 * lc - 1 if lc > 1 else 1, _MAX_LOOK_NODES)
            if finer == (lr, lc):
                break
            lr, lc = finer
            lib = make(finer)
            lib.__dict__["_max_mib"] = float(max_mib)
            probe_res = lib.field_weights(np.asarray(cph, np.float64), cmag)[2]
        coverage = float(np.mean(lib.serves(np.asarray(cph, np.float64), cmag)))
        tab = lib._tables()
        info = {
            "field_extent_px": [x0, x1, y0, y1],
            "span_rad": span_rad,
            "coverage": coverage,
            "max_mib": float(max_mib),
            "rank": int(tab.rank),
            "ranks": [int(r) for r in tab.ranks],
            "z_slab_starts": [int(v) for v in tab.starts],
            "rank_residual_max": float(tab.residual),
            "band": [int(tab.ky), int(tab.kx)],
            "band_loss": float(tab.band_loss),
        }
        if coverage < 0.99:
            warnings.warn(
                f"psf fast mode: the spectral library serves {coverage:.0%} of the field (tol_rad={tol_rad:g} rad, "
                f"{lib.psf_tol_rad:g} rad from its {pr}x{pc} PSF nodes); the other emitters use the exact model",
                stacklevel=2,
            )
        if error_samples:
            info["error"] = lib.measure_error(field_fn, extent, n=error_samples, seed=seed)
        lib.info.update(info)
        return lib

    # ------------------------------------------------------------------ tables
    def _tables(self) -> SimpleNamespace:  # type: ignore[override]
        tab = self.__dict__.get("_tab")
        if tab is None:
            tab = _CACHE.get((self.key, self.__dict__.get("_max_mib")), self._build)
            self.__dict__["_tab"] = tab
        return tab

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_max_mib": self.__dict__.get("_max_mib")}  # a worker builds the same

    def _build(self) -> SimpleNamespace:
        """The tables: from the on-disk cache (:mod:`~z2t_dask.physics.optics.psf_store`) or built."""
        max_mib = self.__dict__.get("_max_mib")
        return stored_tables(
            self.exact, self.key, len(self.psf_nodes) * len(self.z_planes), max_mib,
            lambda: spectral_tables(
                self.exact, self.psf_nodes, self.with_mag, self.z_planes, rank_tol=self.rank_tol,
                max_rank=self.max_rank, max_mib=max_mib,
            ),
            nz=len(self.z_planes),
        )  # fmt: skip

    # ------------------------------------------------------------------ field lookup
    def field_weights(self, phase: np.ndarray, mag: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lookup nodes, barycentric weights and residuals (as :meth:`PSFLibrary.field_weights`)."""
        v = _stack(
            np.asarray(phase, np.float64), None if mag is None else np.asarray(mag, np.float64), self.exact.n_modes,
            self.with_mag,
        )  # fmt: skip
        extra_sq: Any = 0.0
        if not self.with_mag and mag is not None and np.any(np.asarray(mag)[:, 1:] != 0):
            extra = np.asarray(mag, np.float64)[:, 1:]
            extra_sq = (extra * extra).sum(1)
        look = self.__dict__.get("_lookup")
        if look is None:
            look = self.__dict__["_lookup"] = TriangleLookup(self.nodes, self.grid)
        nodes, weights, res2 = look.locate(v, retry_above=(self.tol_rad / 4) ** 2)
        return nodes, weights, np.sqrt(res2 + extra_sq)

    # ------------------------------------------------------------------ evaluation
    # compute(): PSFLibrary's (same contract as PupilPSF.compute; fixed dipoles and non-numpy back
    # ends exact), with the two hooks below: emitters of the field within the planes are served.
    def _served(
        self, phase: np.ndarray, mag: np.ndarray | None, z64: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Served: found on the lookup and PSF node grids (:meth:`_locate`), z within the planes; their positions."""
        planes = self.z_planes
        served, xy = self._locate(phase, mag)
        return served & (z64 >= planes[0]) & (z64 <= planes[-1]), xy

    def _fast_patches(
        self, out: np.ndarray, idx: np.ndarray, where: Any, z64: np.ndarray, dx: np.ndarray, dy: np.ndarray
    ) -> None:
        """Patches of the served emitters ``idx`` from the spectral basis (``where``: their field positions)."""
        self._render(where[idx], z64[idx], dx[idx].astype(np.float64), dy[idx].astype(np.float64), out, idx)

    def _locate(self, phase: np.ndarray, mag: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Served mask (lookup residual <= tol_rad and node residual <= psf_tol_rad) and field positions."""
        nodes, lam, res = self.field_weights(phase, mag)
        xy = (lam[:, :, None] * self.node_xy[nodes]).sum(1)
        served = res <= self.tol_rad
        cand = np.flatnonzero(served)
        if cand.size:  # the PSF nodes' aberrations must interpolate to the emitter's (a rough Zmap: exact)
            near = self.node_residual(phase[cand], None if mag is None else mag[cand], xy[cand])
            served[cand] = near <= self.psf_tol_rad
        return served, xy

    def serves(self, phase: np.ndarray, mag: np.ndarray | None) -> np.ndarray:
        """Whether the library gives the PSFs of these aberrations (lookup and node residuals)."""
        return self._locate(np.asarray(phase, np.float64), mag)[0]

    def node_residual(self, phase: np.ndarray, mag: np.ndarray | None, xy: np.ndarray) -> np.ndarray:
        """RMS wavefront distance (rad) between aberrations and the PSF nodes' interpolation at ``xy``.

        The PSF of an emitter is the same (field-cubic) combination of the nodes' PSFs: where
        the nodes' aberrations do not combine to the emitter's (a Zmap rougher than the node
        grid), neither do their PSFs, and the emitter is computed exactly.
        """
        v = _stack(
            np.asarray(phase, np.float64), None if mag is None else np.asarray(mag, np.float64), self.exact.n_modes,
            self.with_mag,
        )  # fmt: skip
        x0, x1, y0, y1 = self._bounds
        rows, cols = self.psf_grid
        iy, wy = self._axis(xy[:, 1], y0, y1, rows)
        ix, wx = self._axis(xy[:, 0], x0, x1, cols)
        n = v.shape[0]
        idx = (iy[:, :, None] * cols + ix[:, None, :]).reshape(n, -1)
        w = (wy[:, :, None] * wx[:, None, :]).reshape(n, -1)
        out = np.empty(n)
        for s in range(0, n, _RESIDUAL_ROWS):  # small temporaries (per emitter: the same numbers)
            b = slice(s, s + _RESIDUAL_ROWS)
            d = v[b] - (w[b, :, None] * self.psf_nodes[idx[b]]).sum(1)
            out[b] = np.sqrt((d * d).sum(1))
        return out

    @property
    def _bounds(self) -> tuple[float, float, float, float]:
        xy_n = self.node_xy  # the lookup grid spans the field extent (a constant axis: one PSF node)
        return float(xy_n[:, 0].min()), float(xy_n[:, 0].max()), float(xy_n[:, 1].min()), float(xy_n[:, 1].max())

    def _axis(self, pos: np.ndarray, lo: float, hi: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        if count == 1:
            return np.zeros((pos.size, 1), np.intp), np.ones((pos.size, 1))
        i0, w = _cubic((pos - lo) / (hi - lo) * (count - 1), count)
        return i0[:, None] + np.arange(4)[None, :], w

    def _render(
        self, xy: np.ndarray, z: np.ndarray, dx: np.ndarray, dy: np.ndarray, dest: np.ndarray, rows: np.ndarray
    ) -> None:
        """Write the patches of emitters at field positions ``xy`` (ROI px) into ``dest[rows]``, planes interpolated.

        In blocks of ``_BLOCK`` emitters (their interpolation taps) and groups of ``_GROUP`` (their
        spectra), written straight into ``dest``: the temporaries stay small enough to be reused
        from the allocator's heap instead of freshly mapped pages (page faults), and in cache.
        """
        tab = self._tables()
        x0, x1, y0, y1 = self._bounds
        n_rows, n_cols = self.psf_grid
        planes = self.z_planes
        nz = len(planes)
        ny_b, nx_b = 2 * tab.ky + 1, tab.kx + 1
        for b0 in range(0, xy.shape[0], _BLOCK):
            b = slice(b0, b0 + _BLOCK)
            iy, wy = self._axis(xy[b, 1], y0, y1, n_rows)
            ix, wx = self._axis(xy[b, 0], x0, x1, n_cols)
            iz, wz = self._axis(z[b], planes[0], planes[-1], nz)
            n = iy.shape[0]
            taps = ((iy[:, :, None, None] * n_cols + ix[:, None, :, None]) * nz + iz[:, None, None, :]).reshape(n, -1)
            w = (wy[:, :, None, None] * wx[:, None, :, None] * wz[:, None, None, :]).reshape(n, -1).astype(np.float32)
            # each emitter's z slab (its first cubic tap): the basis its spectrum is summed in
            slab = np.searchsorted(tab.starts[1:-1], iz[:, 0], side="right")
            order = np.argsort(slab, kind="stable")
            bounds = np.searchsorted(slab[order], np.arange(len(tab.ranks) + 1))
            bdx, bdy, brows = dx[b], dy[b], rows[b]
            for s_, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                basis, coefs = tab.bases[s_], tab.coefs[s_]
                for g0 in range(lo, hi, _GROUP):
                    sel = order[g0 : min(g0 + _GROUP, hi)]
                    m = sel.size
                    coef = np.matmul(w[sel, None, :], coefs[taps[sel]])  # (m, 1, K), one product per emitter
                    spec = np.matmul(coef, basis)  # (m, 1, n_real), one product per emitter
                    spec_c = spec.view(np.complex64).reshape(m, ny_b, nx_b)
                    ey, ex = _shift_phasors(bdy[sel], bdx[sel], tab.phase_step, tab.ky, tab.kx)
                    spec_c *= ey[:, :, None]
                    spec_c *= ex[:, None, :]
                    t = np.matmul(tab.fy, spec_c)  # (m, p, nx_b) complex64, one product per emitter
                    dest[brows[sel]] = np.matmul(t.view(np.float32), tab.mmat)

    # ------------------------------------------------------------------ provenance
    def describe(self) -> dict[str, Any]:
        """Provenance of the fast model for the output metadata (deterministic)."""
        planes = self.z_planes
        tab = self._tables()
        return {
            "mode": "fast",
            "model": "low-rank spectral library of exact PSFs (EigenPSF): orthonormal bases of the band-limited "
            "pixel spectra, one per z slab; coefficients tricubic over field nodes x z planes; field position from the "
            "aberrations (barycentric in a lookup grid); sub-pixel shift exact (phase ramp); emitters beyond "
            "tol_rad or the z range use the exact model",
            "exact": self.exact.describe(),
            "psf_grid": list(self.psf_grid),
            "lookup_grid": list(self.grid),
            "z_planes": [float(planes[0]), float(planes[-1]), int(len(planes))],
            "dz_um": float(planes[1] - planes[0]),
            "tol_rad": float(self.tol_rad),
            "rank_tol": float(self.rank_tol),
            "with_mag": bool(self.with_mag),
            "table_mib": round((tab.nbytes + self.nodes.nbytes) / 2**20, 1),
            "key": self.key,
            **self.info,
        }
