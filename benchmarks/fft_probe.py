"""Probe: could a compiled 64-point FFT beat ``scipy.fft`` for the exact vectorial PSF's transforms here?

Not part of the model. The exact vectorial PSF spends ~72 % of a W1 job in ``scipy.fft`` (pocketfft):
per emitter, 5 field components x 4 polyphase parts, each a 29 x 29 block zero-padded to 64 x 64, transformed
by rows and then along the strided column axis, then squared and summed. This probe times that work against a
plain radix-2 decimation-in-time FFT compiled by numba, whose butterflies run across the lines (both passes
along axis 0, the second on a transposed copy) and which squares and accumulates in the same pass.

It prints the relative error of ``|DFT|^2`` against a float64 reference and the time per 2-D component
(interleaved rounds, the minimum of each). On the reference 2-core machine (2026-12-01, three runs): error
2.7e-7; scipy 16.0-16.5 us, numba 11.7-13.3 us, i.e. 1.21-1.41x (one non-interleaved run showed 1.76x: this
VM's drift). Skipping the first stage (each line's second half is zero: the same bits) gave nothing more
(1.31-1.33x against 1.36-1.45x in the same runs); radix 4 is not tried. Adopting a compiled FFT
would change every exact vectorial PSF's bytes (another order of float32 operations), so it is a decision,
not a drop-in (see benchmarks/README.md).

Seventh session (2026-12-01): the package now has such a kernel, radix 4 and fused with the polyphase gather
and the squares (``z2t_dask/physics/optics/polyphase_dft.py``); the probe also times it per polyphase part
against the ``scipy.fft`` pipeline it replaced (the model's own scatter and square-accumulate kernels around
two ``scipy.fft`` calls).

Run::

    python -m benchmarks.fft_probe          # needs numba
"""

from __future__ import annotations

import timeit

import numpy as np
import scipy.fft as sfft

N = 64  # transform length (the W1 model's folded intensity grid)
NZ = 29  # non-zero rows and columns of one polyphase part (the pupil rectangle over 2)


def _bit_reversed(n: int) -> np.ndarray:
    bits = int(np.log2(n))
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], np.intp)


def _twiddles(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-transform twiddles per radix-2 stage, float32 ``(stages, n // 2)`` real and imaginary parts."""
    stages = int(np.log2(n))
    wr = np.zeros((stages, n // 2), np.float32)
    wi = np.zeros((stages, n // 2), np.float32)
    m = 2
    for s in range(stages):
        w = np.exp(2j * np.pi * np.arange(m // 2) / m)
        wr[s, : m // 2], wi[s, : m // 2] = w.real, w.imag
        m *= 2
    return wr, wi


def _compiled() -> object:
    import numba as nb

    @nb.njit(nogil=True, boundscheck=False, inline="always")
    def fft_axis0(re: np.ndarray, im: np.ndarray, twr: np.ndarray, twi: np.ndarray, cols: int) -> None:
        half, st = 1, 0
        while half < re.shape[0]:
            m = half * 2
            for k0 in range(0, re.shape[0], m):
                for j in range(half):
                    wr, wi = twr[st, j], twi[st, j]
                    p, q = k0 + j, k0 + j + half
                    for c in range(cols):  # across lines: SIMD
                        br, bi = re[q, c], im[q, c]
                        tr = wr * br - wi * bi
                        ti = wr * bi + wi * br
                        ar, ai = re[p, c], im[p, c]
                        re[p, c], im[p, c] = ar + tr, ai + ti
                        re[q, c], im[q, c] = ar - tr, ai - ti
            half, st = m, st + 1

    @nb.njit(nogil=True, boundscheck=False)
    def intensity(xr, xi, rev, twr, twi, acc, r1, i1, r2, i2):  # type: ignore[no-untyped-def]
        """``acc[b, l, k] += |DFT2(x[b] zero-padded to N x N)|^2`` (transposed layout)."""
        n = r2.shape[0]
        nz = xr.shape[1]
        for b in range(xr.shape[0]):
            for r in range(n):  # pass 1: the block's columns, rows in bit-reversed order
                s = rev[r]
                if s < nz:
                    for c in range(nz):
                        r1[r, c] = xr[b, s, c]
                        i1[r, c] = xi[b, s, c]
                else:
                    for c in range(nz):
                        r1[r, c] = 0.0
                        i1[r, c] = 0.0
            fft_axis0(r1, i1, twr, twi, nz)
            for r in range(n):  # pass 2: transposed, the block's (transformed) rows as columns
                s = rev[r]
                if s < nz:
                    for k in range(n):
                        r2[r, k] = r1[k, s]
                        i2[r, k] = i1[k, s]
                else:
                    for k in range(n):
                        r2[r, k] = 0.0
                        i2[r, k] = 0.0
            fft_axis0(r2, i2, twr, twi, n)
            for row in range(n):
                for k in range(n):
                    acc[b, row, k] += r2[row, k] * r2[row, k] + i2[row, k] * i2[row, k]

    return intensity


def _package_kernel_vs_scipy_passes(x: np.ndarray) -> tuple[float, float]:
    """Per-part time (s) of the package's polyphase DFT and of the scipy.fft pipeline it replaced.

    Both form the same pupil field, ``vals * comp`` (``x`` spread over a ``2 NZ``-sided rectangle, times
    a field component), and transform its ``f = 2`` polyphase parts; the old way with NumPy's complex
    multiply, the package's kernel in its gather.
    """
    from z2t_dask.physics.optics import polyphase
    from z2t_dask.physics.optics.polyphase_dft import dft_plan, polyphase_dft, scratch

    b = x.shape[0]
    field = np.zeros((b, 2 * NZ - 1, 2 * NZ - 1), np.complex64)
    field[:, ::2, ::2] = x
    field[:, 1::2, 1::2] = x[:, : NZ - 1, : NZ - 1]
    vals = field.copy()
    comp = np.exp(1j * np.linspace(0, 1, field[0].size)).astype(np.complex64).reshape((1,) + field.shape[1:])
    plan, f, sr = dft_plan(N), 2, NZ
    acc = np.zeros((b, N, N), np.float32)
    bufs = scratch(N, field.shape[2], f)
    kernel = polyphase_dft.compiled()
    pb = np.zeros((b, f * f, N, N), np.complex64)
    acc2 = np.zeros((b, N, 2 * N), np.float32)
    inten = np.zeros((b, N, N), np.float32)

    def pkg() -> None:
        kernel(acc, vals, comp, f, plan.perm, plan.radix, plan.span, plan.wr, plan.wi, *bufs)

    def old() -> None:
        np.multiply(vals, comp, out=field)
        polyphase.polyphase_scatter(pb, field, sr)
        rows = pb[:, :, :sr, :]
        sfft.ifft(rows, axis=3, norm="ortho", overwrite_x=True)
        hv = sfft.ifft(pb, axis=2, norm="ortho").view(np.float32)
        polyphase.square_accumulate(acc2, hv, True, inten, False)

    pkg()
    old()
    n, t_pkg, t_old = 20, np.inf, np.inf
    for _ in range(7):  # interleaved rounds, the minimum of each
        t_pkg = min(t_pkg, timeit.timeit(pkg, number=n) / n / (b * f * f))
        t_old = min(t_old, timeit.timeit(old, number=n) / n / (b * f * f))
    return t_pkg, t_old


def main() -> None:
    intensity = _compiled()
    rev, (twr, twi) = _bit_reversed(N), _twiddles(N)
    b = 16
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((b, NZ, NZ)) + 1j * rng.standard_normal((b, NZ, NZ))).astype(np.complex64)
    xr, xi = np.ascontiguousarray(x.real), np.ascontiguousarray(x.imag)
    acc = np.zeros((b, N, N), np.float32)
    bufs = tuple(np.empty(shape, np.float32) for shape in ((N, NZ), (N, NZ), (N, N), (N, N)))
    intensity(xr, xi, rev, twr, twi, acc, *bufs)  # compile
    full = np.zeros((b, N, N), np.complex128)
    full[:, :NZ, :NZ] = x
    ref = np.abs(np.fft.ifft2(full) * N * N) ** 2
    err = float(np.abs(acc.transpose(0, 2, 1) - ref).max() / ref.max())

    pb = np.zeros((b, 1, N, N), np.complex64)
    pb[:, 0, :NZ, :NZ] = x

    def scipy_way() -> None:  # the model's two passes (rows in place, then the strided column axis)
        rows = pb[:, :, :NZ, :]
        rows[...] = sfft.ifft(rows, axis=3, norm="ortho", overwrite_x=True)
        sfft.ifft(pb, axis=2, norm="ortho")

    n, t_scipy, t_numba = 50, np.inf, np.inf
    for _ in range(9):  # interleaved rounds, the minimum of each (this VM's speed drifts)
        t_scipy = min(t_scipy, timeit.timeit(scipy_way, number=n) / n / b)
        t_numba = min(t_numba, timeit.timeit(lambda: intensity(xr, xi, rev, twr, twi, acc, *bufs), number=n) / n / b)
    t_pkg, t_old = _package_kernel_vs_scipy_passes(x)
    print(f"|DFT|^2 max relative error vs float64: {err:.2g}")
    print(
        f"the package's kernel (z2t_dask.physics.optics.polyphase_dft: field, gather, DFTs, squares) "
        f"{t_pkg * 1e6:.1f} us per part vs NumPy multiply + scipy.fft + polyphase_scatter + square_accumulate "
        f"{t_old * 1e6:.1f} us: {t_old / t_pkg:.2f}x"
    )
    print(
        f"per 2-D component ({NZ}x{NZ} block -> {N}x{N}): scipy.fft {t_scipy * 1e6:.1f} us (FFTs only); "
        f"numba radix-2 {t_numba * 1e6:.1f} us (FFTs + square-accumulate): {t_scipy / t_numba:.2f}x"
    )


if __name__ == "__main__":
    main()
