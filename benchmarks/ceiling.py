"""Hardware ceiling of the exact PSF stage: the pure batched exp + FFT work, nothing else.

For a :class:`~z2t_dask.physics.optics.psf.PupilPSF` the ceiling is the time of exactly the
transcendental and FFT work its ``compute`` cannot avoid, at the same sizes and batch, on
preallocated buffers (no data movement, no phase evaluation, no folding, no normalisation):

* ``exp(i phi)`` as complex64 (``cos`` and ``sin`` into the real and imaginary parts, the
  fastest numpy form; ``numpy.exp`` of a complex array is ~7x slower), or the package's own
  compiled ``phasors`` (:mod:`z2t_dask.physics.optics.fixed_math`, what the model runs) where that
  is faster (~1.6x here), on the pupil samples;
* the inverse FFT along x of the pupil rows (``rows x N``), the inverse FFT along y of the
  full ``N x N`` window (the scalar model); the vectorial model transforms each of its pupil
  fields (5 for a freely rotating emitter) as ``f^2`` polyphase components of ``M x M``
  (``f = N / M``: x on their rows, y on ``M x M``); then the real FFT of the folded ``M x M``
  intensity, the inverse FFT along y of its half spectrum and the inverse real FFT along x of the patch rows.

Where the model has the package's own DFT (``n_int`` a power of two, numba available: the model then
transforms the pupil field's ``f^2`` polyphase parts with it, scalar and vectorial alike), its
transforms are timed with that kernel instead of ``scipy.fft`` (whichever is faster per block: the
kernel is ~1.5-2x faster here, and it includes the polyphase gather and the squares that the ``scipy.fft``
form leaves out, so this ceiling is, if anything, generous to the model).

Timed for several cache block sizes; the ceiling is the fastest.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.fft as sfft

__all__ = ["ceiling_per_psf", "ceiling_block", "best_time"]


def best_time(fn, repeat: int = 5, number: int = 1) -> float:
    """Minimum over ``repeat`` runs of the wall time (s) of ``number`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best


def ceiling_block(model: Any, b: int, workers: int | None) -> tuple[Any, int]:
    """``(run, b)``: ``run()`` does the ceiling work of ``b`` emitters of ``model`` once."""
    g = model._grids
    n, m, p = g.n_fft, g.n_int, model.patch_size
    vectorial = g.comps is not None
    f = n // m
    sub_rows = -(-g.rect[0] // f)
    rng = np.random.default_rng(0)
    phi = rng.uniform(-np.pi, np.pi, (b, g.n_points)).astype(np.float32)
    vals = np.empty((b, g.n_points), np.complex64)
    xbuf = np.zeros((b, g.rect[0], n), np.complex64)
    ybuf = np.zeros((b, n, n), np.complex64)
    pxbuf = np.zeros((b, f * f, sub_rows, m), np.complex64)
    pybuf = np.zeros((b, f * f, m, m), np.complex64)
    inten = rng.random((b, m, m)).astype(np.float32)
    half = np.zeros((b, m, m // 2 + 1), np.complex64)
    rows = np.zeros((b, p, m // 2 + 1), np.complex64)

    exp_i = _numpy_phasors(phi, vals)
    own_exp = _own_phasors(phi, vals)
    if own_exp is not None and best_time(own_exp, repeat=5) < best_time(exp_i, repeat=5):
        exp_i = own_exp
    if vectorial:
        transforms, n_fields = _scipy_polyphase(pxbuf, pybuf, workers), g.comps.shape[0]
    else:
        transforms, n_fields = _scipy_window(xbuf, ybuf, workers), 1
    if g.dft is not None:
        own = _own_polyphase(g, b)
        if own is not None and best_time(own, repeat=5) < best_time(transforms, repeat=5):
            transforms = own

    def run() -> None:
        exp_i()
        for _ in range(n_fields):
            transforms()
        sfft.rfft2(inten, axes=(1, 2), workers=workers)
        sfft.ifft(half, axis=1, workers=workers)
        sfft.irfft(rows, n=m, axis=2, workers=workers)

    return run, b


def _numpy_phasors(phi: np.ndarray, vals: np.ndarray):
    """``exp(i phi)`` into complex64 with NumPy's ``cos`` and ``sin``."""

    def run() -> None:
        np.cos(phi, out=vals.real)
        np.sin(phi, out=vals.imag)

    return run


def _own_phasors(phi: np.ndarray, vals: np.ndarray):
    """``exp(i phi)`` into complex64 with the package's compiled kernel, or None without numba."""
    from z2t_dask.physics.optics.fixed_math import phasors

    kernel = phasors.compiled()
    if kernel is None:
        return None
    out = vals.view(np.float32)

    def run() -> None:
        kernel(out, phi)

    return run


def _scipy_window(xbuf: np.ndarray, ybuf: np.ndarray, workers: int | None):
    """The scalar field's transforms over the whole window with ``scipy.fft`` (pupil rows along x, then y)."""

    def run() -> None:
        sfft.ifft(xbuf, axis=2, norm="ortho", workers=workers)
        sfft.ifft(ybuf, axis=1, norm="ortho", workers=workers)

    return run


def _scipy_polyphase(pxbuf: np.ndarray, pybuf: np.ndarray, workers: int | None):
    """One field component's ``f^2`` polyphase transforms with ``scipy.fft`` (rows, then columns)."""

    def run() -> None:
        sfft.ifft(pxbuf, axis=3, norm="ortho", workers=workers)
        sfft.ifft(pybuf, axis=2, norm="ortho", workers=workers)

    return run


def _own_polyphase(g: Any, b: int):
    """One field's (component's) polyphase DFTs with the package's compiled kernel, or None without numba."""
    from z2t_dask.physics.optics.polyphase_dft import polyphase_dft, scratch

    kernel = polyphase_dft.compiled()
    if kernel is None:
        return None
    f = g.n_fft // g.n_int
    m = g.n_int
    vals = np.zeros((b,) + tuple(g.rect), np.complex64)
    comp = np.zeros((1,) + tuple(g.rect), np.complex64)
    acc = np.zeros((b, m, m), np.float32)
    bufs = scratch(m, g.rect[1], f)
    d = g.dft

    def run() -> None:
        kernel(acc, vals, comp, f, d.perm, d.radix, d.span, d.wr, d.wi, *bufs)

    return run


def ceiling_per_psf(
    model: Any,
    n_psf: int = 256,
    *,
    workers: int | None = 1,
    repeat: int = 5,
    blocks: tuple[int, ...] = (4, 8, 16, 32, 64, 256),
) -> dict[str, float]:
    """Ceiling time per PSF (s) of ``model`` for ``n_psf`` emitters.

    Parameters
    ----------
    model : PupilPSF
        The exact model (its grids give the sizes).
    n_psf : int
        Emitters in the batch.
    workers : int or None
        ``scipy.fft`` threads (same as the model's run).
    repeat : int
        Repeats; the minimum is kept.
    blocks : tuple of int
        Block sizes tried (emitters transformed per call); the fastest is the ceiling.

    Returns
    -------
    dict
        ``per_psf_s`` (the ceiling), ``block`` (its block size) and ``by_block`` (all).
    """
    by_block = {}
    for b in blocks:
        b = min(b, n_psf)
        run, bs = ceiling_block(model, b, workers)
        n_calls = -(-n_psf // bs)
        by_block[b] = best_time(run, repeat=repeat, number=n_calls) / (n_calls * bs)
    best = min(by_block, key=by_block.get)
    return {"per_psf_s": by_block[best], "block": best, "by_block": by_block}
