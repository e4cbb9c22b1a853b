"""Basis of the spectral library: the exact model's band-limited pixel spectra at the PSF nodes and planes.

The spectra (``rfft2`` of the pixel-integrated intensity on the ``n_int`` intensity window,
normalised to photons per camera pixel) are cropped to their band ``|ky| <= Ky``, ``0 <= kx <=
Kx`` (``2 NA / lambda``; the energy outside is recorded as ``band_loss``), weighted so that
their Euclidean norm is the intensity's, and decomposed (method of snapshots: the Gram matrix of
every other plane, its eigenvectors) into an orthonormal basis per z slab (the planes of ~8
consecutive first cubic taps, :func:`slab_starts`); each slab's rank is the smallest whose
largest relative residual over *all* its node spectra is within ``rank_tol``.  A few
neighbouring planes need a lower rank than the whole z range (default chip: 45 / 35 / 34 / 43
in 4 slabs against 83 for one basis), and an emitter's spectrum is summed in its slab's basis
only.  See :mod:`~z2t_dask.physics.optics.psf_spectral`.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from z2t_dask.physics.optics import psf_store
from z2t_dask.physics.optics.psf import PupilPSF

__all__ = ["slab_starts", "spectral_tables", "spectral_transforms", "stored_tables"]

#: First cubic taps per z slab (each slab has its own basis; see :func:`slab_starts`).
_SLAB_TAPS = 8


def _one_blas_thread() -> Any:
    """One BLAS thread for the basis (the same bytes in every process, whatever its threads)."""
    from threadpoolctl import threadpool_limits  # a dependency: no silent multi-threaded fallback

    return threadpool_limits(1, user_api="blas")


def _band(ex: PupilPSF) -> tuple[int, int]:
    """The band ``(Ky, Kx)`` of the pixel spectra (``2 NA / lambda`` on the ``n_int`` window)."""
    s = ex.sampling
    n = ex.intensity_window * s
    kcut2 = 2.0 * float(ex.na) / float(ex.wavelength_nm)
    ky = min(n // 2 - 1, int(math.floor(kcut2 * n * float(ex.pixel_size_nm_y) / s)))
    kx = min(n // 2 - 1, int(math.floor(kcut2 * n * float(ex.pixel_size_nm_x) / s)))
    return ky, kx


def stored_tables(
    ex: PupilPSF, lib_key: str, n_rows: int, max_mib: float | None, build: Any, *, nz: int
) -> SimpleNamespace:
    """The tables of a library from the on-disk cache (:mod:`~z2t_dask.physics.optics.psf_store`), or built.

    Parameters
    ----------
    ex : PupilPSF
        The exact model (its band checks the stored arrays' shapes).
    lib_key : str
        The library's key (everything the tables depend on but ``max_mib``).
    n_rows : int
        Coefficient rows expected (PSF nodes x planes).
    nz : int
        Planes (the z slabs' bounds follow from it).
    max_mib : float or None
        The memory cap the tables were built with (part of the entry's key).
    build : callable
        ``build() -> SimpleNamespace`` (:func:`spectral_tables`) on a miss; its tables are stored.
    """
    key = json.dumps(["spectral-tables", lib_key, max_mib])
    got = psf_store.load("spectral-tables", key)
    ky, kx = _band(ex)
    if got is not None:
        arrays, meta = got
        basis, coef = arrays.get("basis"), arrays.get("coef")
        n_real = 2 * (2 * ky + 1) * (kx + 1)
        starts, ranks = meta.get("starts"), meta.get("ranks")
        if (
            basis is not None
            and coef is not None
            and basis.dtype == np.float32
            and coef.dtype == np.float32
            and basis.ndim == 3
            and basis.shape[1] >= 1
            and basis.shape[2] == n_real
            and coef.shape == (basis.shape[0], n_rows, basis.shape[1])
            and starts == [int(v) for v in slab_starts(nz)]
            and isinstance(ranks, list)
            and len(ranks) == basis.shape[0]
            and all(isinstance(r, int) and 1 <= r <= basis.shape[1] for r in ranks)
            and (meta.get("ky"), meta.get("kx")) == (ky, kx)
            and np.isfinite(basis).all()
            and np.isfinite(coef).all()
        ):
            return spectral_transforms(
                ex, basis=basis, coef=coef, ranks=ranks, starts=np.asarray(starts, np.intp),
                residual=float(meta["residual"]), ky=ky, kx=kx, band_loss=float(meta["band_loss"]),
            )  # fmt: skip
    tab = build()
    meta = {
        "ky": int(tab.ky),
        "kx": int(tab.kx),
        "residual": float(tab.residual),
        "band_loss": float(tab.band_loss),
        "ranks": [int(r) for r in tab.ranks],
        "starts": [int(v) for v in tab.starts],
    }
    psf_store.save("spectral-tables", key, {"basis": tab.basis, "coef": tab.coef}, meta)
    return tab


def spectral_tables(
    ex: PupilPSF,
    psf_nodes: np.ndarray,
    with_mag: bool,
    planes: np.ndarray,
    *,
    rank_tol: float,
    max_rank: int,
    max_mib: float | None = None,
) -> SimpleNamespace:
    """Node spectra -> orthonormal basis (rank by ``rank_tol``) and per node/plane coefficients.

    Parameters
    ----------
    ex : PupilPSF
        The exact model.
    psf_nodes : ndarray (n_nodes, n_vec)
        Aberration vectors of the PSF nodes (``psf_library._stack`` layout).
    with_mag : bool
        Whether the vectors hold amplitude coefficients.
    planes : ndarray
        z planes (um).
    rank_tol, max_rank
        Largest relative residual over the node spectra, and the largest rank.
    max_mib : float, optional
        Memory cap (MiB) of basis + coefficients.

    Returns
    -------
    SimpleNamespace
        ``basis`` (n_slabs, K, n_real) float32 and ``coef`` (n_slabs, n_nodes * planes, K)
        float32 (zero-padded beyond each slab's rank), their per-slab contiguous ``bases`` and
        ``coefs``, ``ranks``, the slabs' ``starts``, ``rank`` (the largest), ``residual``, the band
        ``ky``, ``kx``, the transform matrices ``fy``, ``mmat`` and ``nbytes``.
    """
    k = ex.n_modes
    n_nodes, nz = psf_nodes.shape[0], len(planes)
    n = ex.intensity_window * ex.sampling
    ky, kx = _band(ex)
    row_idx = np.r_[n - ky : n, 0 : ky + 1]  # ky = -Ky .. Ky
    wcol = np.full(kx + 1, 2.0)
    wcol[0] = 1.0
    sq = np.sqrt(wcol)
    n_real = 2 * (2 * ky + 1) * (kx + 1)
    x = np.empty((n_nodes * nz, n_real), np.float64)
    lost = 0.0
    total = 0.0
    for i in range(n_nodes):
        phase = np.zeros((nz, k))
        phase[:, 1:] = psf_nodes[i, : k - 1]
        mag = None
        if with_mag:
            mag = np.zeros((nz, k))
            mag[:, 1:] = psf_nodes[i, k - 1 :]
        otf, norm = ex.pixel_otf(phase, planes, mag)
        o = otf.astype(np.complex128) * (norm / (n * n))[:, None, None]
        full = (np.abs(o) ** 2 * np.r_[1.0, np.full(o.shape[2] - 1, 2.0)]).sum()
        blk = o[:, row_idx, : kx + 1] * sq
        kept = (np.abs(blk) ** 2).sum()
        lost, total = lost + max(full - kept, 0.0), total + full
        x[i * nz : (i + 1) * nz] = blk.view(np.float64).reshape(nz, -1)
    starts = slab_starts(nz)
    n_slabs = len(starts) - 1
    cap_total: int | None = None
    if max_mib is not None:  # every slab's basis + coefficients within the cap
        cap_total = max(1, int(max_mib * 2**20 // (4 * (n_real + n_nodes * nz) * n_slabs)))
    bases, coefs, worst = [], [], []
    for s_ in range(n_slabs):
        planes_s = np.arange(starts[s_], min(nz, starts[s_ + 1] + 3))  # the cubic taps of its emitters
        rows_s = (np.arange(n_nodes)[:, None] * nz + planes_s[None, :]).ravel()
        basis_s, coef_s, worst_s = _basis(x[rows_s], planes_s.size, rank_tol, max_rank, cap_total)
        coef = np.zeros((n_nodes * nz, basis_s.shape[0]), np.float32)
        coef[rows_s] = coef_s
        bases.append(basis_s)
        coefs.append(coef)
        worst.append(worst_s)
    return spectral_transforms(
        ex,
        basis=_stack_slabs(bases),
        coef=_stack_slabs(coefs, axis=1),
        ranks=[b.shape[0] for b in bases],
        starts=starts,
        residual=float(max(worst)),
        ky=ky,
        kx=kx,
        band_loss=lost / max(total, 1e-300),
    )


def slab_starts(nz: int) -> np.ndarray:
    """First cubic tap (plane index) of each z slab, and one past the last: ``(n_slabs + 1,)`` int.

    An emitter whose four cubic taps start at plane ``i0`` uses slab ``s`` with
    ``starts[s] <= i0 < starts[s + 1]``; the slab's basis spans planes ``starts[s] ..
    starts[s + 1] + 2``. About :data:`_SLAB_TAPS` first taps per slab (one slab below ~2x that):
    the spectra of a few neighbouring planes need a lower rank than those of the whole z range
    (default chip, 42 planes: rank 87 for all, ~45 in each of 4 slabs).
    """
    first = max(1, nz - 3)  # first-tap positions i0 = 0 .. nz - 4 (one slab for fewer than 4 planes)
    n_slabs = max(1, first // _SLAB_TAPS)
    return np.round(np.arange(n_slabs + 1) * first / n_slabs).astype(np.intp)


def _basis(
    x: np.ndarray, nz: int, rank_tol: float, max_rank: int, cap: int | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Orthonormal basis ``(K, n_real)`` float32 of the rows ``x`` (nodes x ``nz`` planes, node-major),
    their coefficients ``(rows, K)`` float32 and the largest relative residual.

    Method of snapshots on every other plane and the last (one BLAS thread), rank by ``rank_tol``.
    """
    norms = np.linalg.norm(x, axis=1)
    sub = np.flatnonzero((np.arange(x.shape[0]) % nz) % 2 == 0)
    sub = np.union1d(sub, np.arange(nz - 1, x.shape[0], nz))  # every other plane + the last
    with _one_blas_thread():
        a = x[sub]
        gram = a @ a.T
        lam, vec = np.linalg.eigh(gram)
        order = np.argsort(lam)[::-1]
        lam, vec = lam[order], vec[:, order]
        good = int(np.count_nonzero(lam > lam[0] * 1e-13))
        top = min(max_rank, good) if cap is None else max(1, min(max_rank, good, cap))
        basis = (vec[:, :top].T @ a) / np.sqrt(lam[:top])[:, None]  # (top, n_real) orthonormal rows
        coef = x @ basis.T  # (rows, top)
    res2 = np.maximum(norms[:, None] ** 2 - np.cumsum(coef * coef, axis=1), 0.0)
    rel = np.sqrt(res2) / np.maximum(norms, 1e-300)[:, None]
    worst = rel.max(axis=0)
    ok = np.flatnonzero(worst <= rank_tol)
    rank = int(ok[0]) + 1 if ok.size else top
    return (
        np.ascontiguousarray(basis[:rank], dtype=np.float32),
        np.ascontiguousarray(coef[:, :rank], dtype=np.float32),
        float(worst[rank - 1]),
    )


def _stack_slabs(arrays: list[np.ndarray], axis: int = 0) -> np.ndarray:
    """The slabs' arrays in one zero-padded array with a leading slab axis (their ranks along ``axis``)."""
    top = max(a.shape[axis] for a in arrays)
    out = []
    for a in arrays:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, top - a.shape[axis])
        out.append(np.pad(a, pad))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def spectral_transforms(
    ex: PupilPSF,
    *,
    basis: np.ndarray,
    coef: np.ndarray,
    ranks: list[int],
    starts: np.ndarray,
    residual: float,
    ky: int,
    kx: int,
    band_loss: float,
) -> SimpleNamespace:
    """The tables of :func:`spectral_tables` from its basis and coefficients (adds the transforms).

    Parameters
    ----------
    ex : PupilPSF
        The exact model (patch size, sampling, pixel sizes).
    basis : ndarray (n_slabs, K, n_real) float32
        Orthonormal basis rows of each z slab (zero rows beyond its rank).
    coef : ndarray (n_slabs, n_nodes * planes, K) float32
        Coefficients of the node spectra in each slab's basis (zero outside its planes and rank).
    ranks : list of int
        Each slab's rank.
    starts : ndarray (n_slabs + 1,) int
        The slabs' first cubic taps (:func:`slab_starts`).
    residual, band_loss : float
        Largest relative residual of the basis and the energy fraction outside the band.
    ky, kx : int
        The band (``|ky| <= Ky``, ``0 <= kx <= Kx``).

    Returns
    -------
    SimpleNamespace
        As :func:`spectral_tables`.
    """
    s = ex.sampling
    n = ex.intensity_window * s
    wcol = np.full(kx + 1, 2.0)
    wcol[0] = 1.0
    sq = np.sqrt(wcol)
    c0 = ex.patch_size // 2
    r = np.arange(ex.patch_size) - c0
    kys = np.arange(-ky, ky + 1)
    kxs = np.arange(kx + 1)
    fy = np.exp(2j * np.pi * np.outer(r, kys) * s / n).astype(np.complex64)  # (p, 2Ky+1)
    fxm = np.exp(2j * np.pi * np.outer(kxs, r) * s / n) * sq[:, None]  # (Kx+1, p)
    mmat = np.empty((2 * (kx + 1), ex.patch_size), np.float32)
    mmat[0::2] = fxm.real
    mmat[1::2] = -fxm.imag
    ranks = [int(r) for r in ranks]
    tab = SimpleNamespace(
        basis=basis,
        coef=coef,
        ranks=ranks,
        starts=np.asarray(starts, np.intp),
        # per slab, contiguous: its basis rows and its coefficient columns up to its rank
        bases=[np.ascontiguousarray(basis[i, :r]) for i, r in enumerate(ranks)],
        coefs=[np.ascontiguousarray(coef[i, :, :r]) for i, r in enumerate(ranks)],
        rank=max(ranks),
        residual=float(residual),
        ky=int(ky),
        kx=int(kx),
        kys=kys.astype(np.float64),
        kxs=kxs.astype(np.float64),
        phase_step=2.0 * np.pi * s / n,
        fy=fy,
        mmat=mmat,
        band_loss=float(band_loss),
    )
    tab.nbytes = int(tab.basis.nbytes + tab.coef.nbytes)
    return tab
