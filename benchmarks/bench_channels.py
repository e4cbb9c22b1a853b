"""Two detection channels vs one: W1 (the original 40x40 config, 5000 emitters, 200 frames) end to end.

Both samples use the W1 settings (``batch_config_100samples_40.json``, the fixture Zmap); the
two-channel one adds ``channels`` (both on the W1 chip window, the second shifted by (1.3, -0.7) px
and rotated 0.5 degrees, its own efficiency and focal offset) and two dye species. Times
``z2t.simulate`` + ``sample.save`` (OME-TIFF + emitters.h5), interleaved single / two-channel runs
after one warm-up of each, best of ``--repeat``, and prints the ratio (target <= 2.2).

Run: ``python -m benchmarks.bench_channels [--repeat 3] [--mode exact|fast] [--scheduler auto|sync]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import FIXTURES, machine


def configs(mode: str):
    """``(single, two-channel)`` W1 configs for ``psf.mode`` ``mode``."""
    import z2t_dask as z2t

    over = {"zmap_path": str(FIXTURES / "result_phase_retrieval.h5"), "psf": {"mode": mode}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = z2t.load_config(FIXTURES / "batch_config_100samples_40.json", overrides=over)
        x0, y0 = single.crop_offset_xy
        two = z2t.load_config(
            single,
            overrides={
                "channels": [
                    {"name": "short", "wavelength_nm": 670.0, "crop_offset": [x0, y0]},
                    {
                        "name": "long",
                        "wavelength_nm": 700.0,
                        "efficiency": 0.9,
                        "z_offset_um": 0.05,
                        "crop_offset": [x0, y0],
                        "transform": {"shift_px": [1.3, -0.7], "rotation_deg": 0.5},
                    },
                ],
                "emitters": {
                    "species": [
                        {"name": "A", "fraction": 0.5, "ratio": [0.7, 0.3], "ratio_spread": 0.08},
                        {"name": "B", "fraction": 0.5, "ratio": [0.45, 0.55], "ratio_spread": 0.08},
                    ]
                },
            },
        )
    return single, two


def run_once(cfg, out: Path, seed: int, scheduler: str = "auto") -> float:
    import z2t_dask as z2t

    t0 = time.perf_counter()
    z2t.simulate(cfg, seed=seed).save(out, scheduler=scheduler)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", choices=("exact", "fast"), default="exact", help="psf.mode")
    ap.add_argument(
        "--scheduler",
        choices=("auto", "sync"),
        default="auto",
        help="auto = threads (two channels give twice the blocks: better use of the cores), sync = one thread",
    )
    args = ap.parse_args(argv)
    single, two = configs(args.mode)
    tmp = Path(tempfile.mkdtemp(prefix="z2t-bench-ch-"))
    try:
        run_once(single, tmp / "w1", 0)
        run_once(two, tmp / "w2", 0)
        times: dict[str, list[float]] = {"single": [], "two": []}
        for i in range(args.repeat):
            times["single"].append(run_once(single, tmp / f"s{i}", i + 1, args.scheduler))
            times["two"].append(run_once(two, tmp / f"t{i}", i + 1, args.scheduler))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s, t = min(times["single"]), min(times["two"])
    print(
        f"W1 40x40x200 ({args.mode} PSFs), simulate + save, {args.scheduler} scheduler, best of {args.repeat}, "
        f"on {machine()}"
    )
    print(f"  one channel:  {s:.2f} s   (runs {', '.join(f'{v:.2f}' for v in times['single'])})")
    print(f"  two channels: {t:.2f} s   (runs {', '.join(f'{v:.2f}' for v in times['two'])})")
    print(f"  ratio two / one: {t / s:.2f} (target <= 2.2)")


if __name__ == "__main__":
    main()
