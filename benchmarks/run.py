"""The benchmark suite: every workload against the naive reference, printed as one table.

Run from the repository root::

    python -m benchmarks                 # all workloads, 3 repeats (about 6-10 minutes on 2 cores)
    python -m benchmarks --only batch    # the W1 training set: 100 samples through z2t batch, fast and exact
    python -m benchmarks --repeat 5 --only w1 psf
    python -m benchmarks --markdown results.md   # also write the table as Markdown

Each workload runs in a fresh Python process (``benchmarks.workloads``) so its peak RSS is its
own; inside it z2t and the naive reference (``z2t_dask.testing``) run on the same
inputs, and the PSF ceiling right next to the exact model.  Times are minima over repeats.

Columns: ``time`` (s), ``frames/s``, ``PSFs/s`` (W1/W2: records = PSF placements per second;
PSF rows: PSFs computed per second), ``peak RSS`` (MiB, process incl. its children, sampled
every 20 ms), ``vs naive`` (naive time / z2t time, same work).  The load average before and
after each workload is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, ensure_bytecode, machine

ORDER = ("w1", "w2", "psf", "chip", "camera", "batch")


def run_workload(name: str, repeat: int) -> list[dict]:
    """Run one workload in a fresh interpreter and return its rows."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.workloads", name, "--repeat", str(repeat)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"workload {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(rows: list[dict]) -> list[str]:
    """Rows as Markdown table lines."""
    head = ["workload", "variant", "time (s)", "frames/s", "PSFs/s", "peak RSS (MiB)", "vs naive", "notes"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        t = r["time_s"]
        fps = r["frames"] / t if r["frames"] else None
        pps = r["psfs"] / t if r["psfs"] else None
        ratio = f"{r['naive_s'] / t:.0f}x" if r.get("naive_s") else ""
        out.append(
            "| "
            + " | ".join(
                [
                    r["workload"],
                    r["variant"],
                    _fmt(t, ".4g"),
                    _fmt(fps, ".4g"),
                    _fmt(pps, ".4g"),
                    _fmt(r["peak_mib"], ".0f"),
                    ratio,
                    r["note"],
                ]
            )
            + " |"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="repeats per measurement (minimum kept)")
    ap.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER), help="workloads to run")
    ap.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    print(ensure_bytecode(), file=sys.stderr)
    rows, loads = [], []
    for name in [n for n in ORDER if n in args.only]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        got = run_workload(name, args.repeat)
        loads.append(f"{name} {got[0]['load'][0]}->{got[0]['load'][1]}")
        rows += got
    lines = [
        f"Machine: {machine()}; load average (1 min) before->after each workload: {', '.join(loads)}; "
        f"min of {args.repeat} repeats.",
        "",
    ] + table(rows)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
