"""W2 / W3: full-chip samples (1200x1200 px, EMCCD, ~40 emitters per frame) streamed to disk.

W2  200 frames -> OME-TIFF (zstd). Targets on 2 cores: >= 20 frames/s (the original: 5.5 frames/s),
    peak RSS <= 400 MB.
W3  1,000 and 10,000 frames -> OME-Zarr (v3, zstd). Target: the two peak RSS equal within 15 % and
    <= 1 GB (memory does not grow with the number of frames).

Each measurement runs in a fresh process (``run`` sub-command) so that peak RSS (psutil sampling of
the process and its children every 20 ms, :class:`benchmarks.common.PeakRSS`) is that of one write;
it times ``simulate`` (emitters, records, aberrations) + ``save`` (render, camera, compress, write
stack + emitters.h5) end to end and prints frames/s, MB/s of raw frames and peak RSS.

Run::

    python -m benchmarks.bench_fullchip w2                     # 200 frames -> OME-TIFF
    python -m benchmarks.bench_fullchip w3                     # 1,000 and 10,000 frames -> OME-Zarr
    python -m benchmarks.bench_fullchip w3 --frames 1000 2000  # shorter check
    python -m benchmarks.bench_fullchip run --frames 200 --format ome-zarr   # one measurement
    python -m benchmarks.bench_fullchip profile --frames 20    # where the time goes (cProfile, 1 thread)
    python -m benchmarks.bench_fullchip timeline --frames 10000 --seconds 100 --format ome-zarr
                                                               # RSS max / median per 5-s window

Outputs go to a temporary folder under ``--tmp`` (default: the system's) and are deleted.
Environment variables reach the measured processes, e.g. ``MALLOC_ARENA_MAX=2`` (fewer glibc
malloc arenas: less heap growth over long writes, no measurable speed cost here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, PeakRSS, ensure_bytecode, machine

#: Emitters per movie giving ~40 records per frame with the 'single' model (lifetime 2.5 frames),
#: measured: 2600 emitters over 200 frames -> 41.5 records per frame; scales with T + 6 lifetimes.
EMITTERS_PER_FRAME_SPAN = 2600 / (200 + 15)


def fullchip_config(frames: int, fmt: str, psf_mode: str = "exact") -> dict:
    """The W2/W3 config: 1200x1200 EMCCD, ~40 emitters per frame, synthetic Zmap (``psf.mode``)."""
    return {
        "psf": {"mode": psf_mode},
        "tiff": {"roi_size": 1200, "crop_offset": [0, 0], "compression": "zstd"},
        "emitters": {
            "frames": frames,
            "num_emitters": int(round(EMITTERS_PER_FRAME_SPAN * (frames + 15))),
            "lifetime_avg": 2.5,
            "model": "single",
        },
        "camera": {"model": "emccd"},
        "output": {"format": fmt, "zarr_compression": "zstd"},
    }


def run_one(frames: int, fmt: str, tmp: Path, scheduler: str, psf_mode: str = "exact") -> dict:
    """Simulate and save one full-chip sample; return timings, sizes and peak RSS."""
    ti = time.perf_counter()
    import dask.array  # noqa: F401  (the lazy API's imports: timed apart from the plan)
    import h5py  # noqa: F401
    import imagecodecs  # noqa: F401  (the writers' codecs and the lazily imported writers too)
    import scipy.fft  # noqa: F401
    import scipy.interpolate  # noqa: F401
    import tifffile  # noqa: F401

    import z2t_dask as z2t
    import z2t_dask.engine.assembly  # noqa: F401
    import z2t_dask.engine.render  # noqa: F401
    import z2t_dask.io.emitters_h5  # noqa: F401
    import z2t_dask.io.formats  # noqa: F401
    import z2t_dask.io.tiff  # noqa: F401
    import z2t_dask.physics.optics.psf_spectral  # noqa: F401
    import z2t_dask.sample  # noqa: F401

    cfg = z2t.load_config(fullchip_config(frames, fmt, psf_mode))
    out = tmp / f"w_{fmt}_{frames}"
    imports_s = time.perf_counter() - ti
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        sample = z2t.simulate(cfg, seed=1)
        t1 = time.perf_counter()
        sample.save(out, scheduler=scheduler)
        t2 = time.perf_counter()
    raw = sample.frames.nbytes
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {
        "frames": frames,
        "format": fmt,
        "chunks": [c[0] for c in sample.frames.chunks],
        "records_per_frame": sample.truth.n_records / frames,
        "imports_s": imports_s,
        "plan_s": t1 - t0,
        "save_s": t2 - t1,
        "total_s": t2 - t0,
        "fps": frames / (t2 - t0),
        "mb_s": raw / 1e6 / (t2 - t0),
        "raw_mb": raw / 1e6,
        "disk_mb": disk / 1e6,
        "peak_rss_mib": mem.peak_mib,
        "machine": machine(),
    }


def _report(r: dict) -> str:
    return (
        f"{r['frames']} frames 1200x1200 -> {r['format']} (chunks {r['chunks']}, "
        f"{r['records_per_frame']:.1f} emitters/frame): {r['total_s']:.1f} s "
        f"(plan {r['plan_s']:.1f} s, after {r.get('imports_s', float('nan')):.1f} s of imports) = {r['fps']:.1f} "
        f"frames/s ({r['frames'] / r['save_s']:.1f} for render + write), {r['mb_s']:.0f} MB/s raw "
        f"({r['raw_mb']:.0f} MB raw, {r['disk_mb']:.0f} MB on disk); peak RSS {r['peak_rss_mib']:.0f} MiB"
    )


def _subprocess(frames: int, fmt: str, tmp: str, scheduler: str, psf_mode: str = "exact") -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_fullchip",
        "run",
        "--frames",
        str(frames),
        "--format",
        fmt,
        "--tmp",
        tmp,
        "--scheduler",
        scheduler,
        "--psf-mode",
        psf_mode,
        "--json",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile(frames: int, psf_mode: str = "exact") -> None:
    """cProfile of rendering ``frames`` full-chip frames in this thread (no writer)."""
    import cProfile
    import pstats

    import z2t_dask as z2t

    sample = z2t.simulate(z2t.load_config(fullchip_config(frames, "ome-tiff", psf_mode)), seed=1)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    sample.frames.compute(scheduler="sync")
    prof.disable()
    print(f"render {frames} frames single-threaded: {time.perf_counter() - t0:.2f} s")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def _save_for_timeline(frames: int, fmt: str, out: str) -> None:
    import z2t_dask as z2t

    z2t.simulate(z2t.load_config(fullchip_config(frames, fmt)), seed=1).save(out)


def timeline(frames: int, fmt: str, tmp: Path, seconds: float, window: float = 5.0) -> None:
    """RSS of a fresh process simulating and saving, every 20 ms; max and median per window.

    The write is stopped after ``seconds`` (the process is killed, its output deleted), so the
    first part of a long write can be compared with a short one.
    """
    import multiprocessing

    import numpy as np
    import psutil

    print(f"timeline: {frames} frames 1200x1200 -> {fmt}, first {seconds:.0f} s, on {machine()}")
    child = multiprocessing.get_context("spawn").Process(
        target=_save_for_timeline, args=(frames, fmt, str(tmp / "timeline"))
    )
    child.start()
    proc, t0, samples = psutil.Process(child.pid), time.perf_counter(), []
    try:
        while child.is_alive() and time.perf_counter() - t0 < seconds:
            try:
                samples.append((time.perf_counter() - t0, proc.memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
    finally:
        child.kill()
        child.join()
    a = np.array(samples)
    for k in range(int(a[-1, 0] // window) + 1):
        m = (a[:, 0] >= k * window) & (a[:, 0] < (k + 1) * window)
        if m.any():
            print(
                f"  {k * window:5.0f}-{(k + 1) * window:5.0f} s: RSS max {a[m, 1].max():.0f} MiB, "
                f"median {np.median(a[m, 1]):.0f} MiB"
            )
    print(f"  peak {a[:, 1].max():.0f} MiB at {a[a[:, 1].argmax(), 0]:.1f} s", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["w2", "w3", "run", "profile", "timeline"])
    ap.add_argument("--frames", type=int, nargs="+", default=None)
    ap.add_argument("--format", default=None, choices=["ome-tiff", "ome-zarr", "hdf5"])
    ap.add_argument("--tmp", default=None, help="folder for the outputs (default: system temp)")
    ap.add_argument("--scheduler", default="threads")
    ap.add_argument("--json", action="store_true", help="run: print the result as JSON")
    ap.add_argument("--seconds", type=float, default=100.0, help="timeline: how long to sample")
    ap.add_argument("--psf-mode", default="exact", choices=["exact", "fast"], help="psf.mode of the config")
    args = ap.parse_args(argv)
    print(ensure_bytecode(), file=sys.stderr)
    if args.workload == "profile":
        profile((args.frames or [20])[0], args.psf_mode)
        return
    tmp_root = Path(tempfile.mkdtemp(prefix="z2t-fullchip-", dir=args.tmp))
    try:
        if args.workload == "timeline":
            timeline((args.frames or [10000])[0], args.format or "ome-zarr", tmp_root, args.seconds)
            return
        if args.workload == "run":
            r = run_one((args.frames or [200])[0], args.format or "ome-tiff", tmp_root, args.scheduler, args.psf_mode)
            print(json.dumps(r) if args.json else _report(r))
            return
        fmt = args.format or ("ome-tiff" if args.workload == "w2" else "ome-zarr")
        counts = args.frames or ([200] if args.workload == "w2" else [1000, 10000])
        print(f"{args.workload.upper()} on {machine()}")
        results = []
        for n in counts:
            r = _subprocess(n, fmt, str(tmp_root), args.scheduler, args.psf_mode)
            results.append(r)
            print("  " + _report(r), flush=True)
        if args.workload == "w2":
            r = results[0]
            print(
                f"  targets: >= 20 frames/s -> {'met' if r['fps'] >= 20 else 'MISSED'}; peak RSS <= 400 MB -> "
                f"{'met' if r['peak_rss_mib'] * 2**20 / 1e6 <= 400 else 'MISSED'}; vs the original 5.5 frames/s: "
                f"{r['fps'] / 5.5:.1f}x"
            )
        elif len(results) >= 2:
            lo, hi = results[0]["peak_rss_mib"], results[-1]["peak_rss_mib"]
            growth = hi / lo - 1
            print(
                f"  peak RSS {lo:.0f} MiB at {results[0]['frames']} frames vs {hi:.0f} MiB at "
                f"{results[-1]['frames']} frames: {growth:+.1%} (target within 15 % and <= 1 GB: "
                f"{'met' if abs(growth) <= 0.15 and max(lo, hi) * 2**20 <= 1e9 else 'MISSED'})"
            )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
