"""The PSF validation table of the README: our PSFs against psfmodels (``pip install psfmodels``).

Run: ``python -m benchmarks.psf_validation``.  Prints, as markdown, the relative L2 error, peak
error and FWHM of our scalar and vectorial models against psfmodels' (index-matched oil and
water at depth, NA 1.4), and the best-focus stage position of an emitter in water.  The same
cases are asserted by ``tests/test_psf_vectorial.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_psf_vectorial import _best_focus, model, reference, rel_l2  # noqa: E402


def fwhm_nm(img: np.ndarray, px_nm: float = 100.0) -> float:
    """Full width at half maximum (nm) of the row through the patch centre (linear interpolation)."""
    c = img.shape[0] // 2
    row = img[c] / img[c].max()
    r = c
    while r < row.size - 1 and row[r + 1] >= 0.5:
        r += 1
    xr = r + (row[r] - 0.5) / (row[r] - row[r + 1])
    left = c
    while left > 0 and row[left - 1] >= 0.5:
        left -= 1
    xl = left - (row[left] - 0.5) / (row[left] - row[left - 1])
    return float((xr - xl) * px_nm)


def main() -> None:
    one = np.zeros((1, 1))
    print("| model | medium | case | rel. L2 | peak | FWHM ours (nm) | FWHM psfmodels (nm) |")
    print("|---|---|---|---|---|---|---|")

    def row(kind: str, medium: str, case: str, ours: np.ndarray, ref: np.ndarray) -> None:
        e, p = rel_l2(ours, ref)
        print(f"| {kind} | {medium} | {case} | {e * 100:.2f} % | {p * 100:+.2f} % | {fwhm_nm(ours):.0f} | "
              f"{fwhm_nm(ref):.0f} |")  # fmt: skip

    for kind in ("scalar", "vectorial"):
        vec = kind == "vectorial"
        for z in (0.0, 0.4, -0.4):
            ours = model(vectorial=vec).compute(one, np.array([z]))[0]
            row(kind, "oil NA1.4 matched", f"z={z:+.1f}", ours, reference(kind, [-z], 0.0)[0])
        for d in (0.5, 1.0, 3.0):
            ours = model(vectorial=vec, n_medium=1.33, focus_depth_um=d).compute(one, np.zeros(1))[0]
            row(kind, "water n1.33", f"depth {d} um, focus {d}", ours, reference(kind, [d], d, ns=1.33)[0])
    ours = model().compute(one, np.zeros(1))[0]
    row("scalar vs psfmodels vectorial", "oil NA1.4 matched", "z=0", ours, reference("vectorial", [0.0], 0.0)[0])
    print()
    print("| model | emitter | best-focus stage, ours | psfmodels | difference |")
    print("|---|---|---|---|---|")
    for kind in ("scalar", "vectorial"):
        for d in (0.5, 1.0, 3.0):
            focus = np.round(np.arange(d - 0.4, d + 1.0, 0.02), 6)
            peaks = []
            for f in focus:
                img = model(vectorial=kind == "vectorial", n_medium=1.33, focus_depth_um=float(f)).compute(
                    one, np.array([d - f])
                )[0]
                peaks.append(img.max() / img.sum())
            ref = reference(kind, focus, d, ns=1.33)
            a = _best_focus(np.array(peaks), focus)
            b = _best_focus(ref.max(axis=(1, 2)) / ref.sum(axis=(1, 2)), focus)
            print(f"| {kind} | water, {d} um deep | {a:.3f} um | {b:.3f} um | {(a - b) * 1000:+.0f} nm |")


if __name__ == "__main__":
    main()
