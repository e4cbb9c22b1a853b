"""W1: one sample of the original 40x40 config (5000 emitters, 200 frames, ~49 PSFs per frame).

Settings of ``batch_config_100samples_40.json`` with the Zmap replaced by the original fixture
``result_phase_retrieval.h5`` (its absolute ``zmap_path`` points to the original author's disk).
Times ``z2t.simulate`` + ``sample.save`` (OME-TIFF + emitters.h5) end to end, in-process,
after one warm-up run (imports, grids), and reports the best of ``--repeat`` runs.

Run: ``python -m benchmarks.bench_sample [--repeat 3] [--mode exact|fast]`` (``psf.mode``; the fast
library is built in the warm-up run, as it is once per process for a batch of such samples).
The full suite with the naive reference is ``python -m benchmarks``.
The original: ~20 s per sample on this kind of machine (16.9 s render + 2 s binning, measured).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import FIXTURES, PeakRSS, machine


def run_once(cfg, out: Path, seed: int) -> dict:
    import z2t_dask as z2t

    t0 = time.perf_counter()
    sample = z2t.simulate(cfg, seed=seed)
    t1 = time.perf_counter()
    sample.save(out / f"sample_{seed:03d}")
    t2 = time.perf_counter()
    return {
        "plan_s": t1 - t0,
        "render_write_s": t2 - t1,
        "total_s": t2 - t0,
        "records": sample.truth.n_records,
        "frames": sample.frames.shape[0],
    }


def main(argv=None) -> None:
    import z2t_dask as z2t

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", choices=("exact", "fast"), default="exact", help="psf.mode")
    args = ap.parse_args(argv)
    cfg = z2t.load_config(
        FIXTURES / "batch_config_100samples_40.json",
        overrides={"zmap_path": str(FIXTURES / "result_phase_retrieval.h5"), "psf": {"mode": args.mode}},
    )
    tmp = Path(tempfile.mkdtemp(prefix="z2t-bench-"))
    try:
        run_once(cfg, tmp / "warm", 0)
        runs = []
        with PeakRSS() as mem:
            for i in range(args.repeat):
                runs.append(run_once(cfg, tmp / f"r{i}", i + 1))
        best = min(runs, key=lambda r: r["total_s"])
        print(
            f"W1 ({args.mode} PSFs) 40x40 x {best['frames']} frames, {best['records']} records "
            f"({best['records'] / best['frames']:.1f} PSFs/frame) on {machine()}"
        )
        print(
            f"  best of {args.repeat}: total {best['total_s']:.2f} s (plan {best['plan_s']:.2f} s, render+write "
            f"{best['render_write_s']:.2f} s); all: {', '.join(format(r['total_s'], '.2f') for r in runs)} s"
        )
        print(
            f"  {best['frames'] / best['total_s']:.0f} frames/s; speed-up vs the original's ~20 s: "
            f"{20.0 / best['total_s']:.0f}x; peak RSS {mem.peak_mib:.0f} MiB"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
