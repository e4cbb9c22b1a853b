"""W1 batch: 100 samples x 200 frames x 40x40 with the original 40x40 settings through ``z2t batch``.

Runs ``z2t batch --config batch_config_100samples_40.json --zmap result_phase_retrieval.h5`` (the
original fixtures; its absolute zmap_path is overridden) as a subprocess into a temporary folder,
on a LocalCluster of ``--max-workers`` processes, and reports the wall time, the peak RSS and the
CPU seconds of the whole process tree (driver, scheduler, forkserver, workers), sampled every 50 ms
with psutil, and the load average (other processes' share of the cores). ``--cold-cache`` runs
with an empty on-disk PSF library cache (the first run on a machine); by default the user's cache
is used, so a second run loads the fast library instead of building it.

Run: ``python -m benchmarks.bench_batch [--max-workers 2] [--samples 100] [--psf-mode fast] [--cold-cache]``
The original: 563 s for this batch with 4 workers on a Xeon 8358P; ≈ 33 min on this 2-core machine.
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

from benchmarks.common import FIXTURES, ensure_bytecode, machine


def tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_cpu(proc, seen: dict[int, float], names: dict[int, str] | None = None) -> None:
    """Record the CPU seconds (user + system) of ``proc`` and its descendants in ``seen`` (pid -> seconds).

    ``names`` (pid -> a short role read from the command line) is filled for processes seen the first time.
    """
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        seen[p.pid] = t.user + t.system
        if names is not None and p.pid not in names:
            names[p.pid] = _role(p, proc)


def _role(p, root) -> str:
    """``driver`` for the root, else the distinguishing part of a child's command line."""
    import psutil

    if p.pid == root.pid:
        return "driver"
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if "resource_tracker" in cmd:
        return "resource_tracker"
    if "forkserver" in cmd:  # the forkserver, or a worker it forked (same command line)
        try:
            parent = " ".join(p.parent().cmdline())
        except (psutil.Error, AttributeError):
            parent = ""
        return "worker" if "forkserver" in parent else "forkserver"
    return "worker" if "multiprocessing" in cmd else cmd[-40:] or p.name()


def measure(samples: int = 100, max_workers: int = 2, psf_mode: str | None = None, cold_cache: bool = False) -> dict:
    """Run the W1 batch once through ``z2t batch`` (a subprocess) and return its figures.

    Returns
    -------
    dict
        ``wall_s``, ``rc``, ``done``, ``median_job_s``, ``peak_mib`` (process tree), ``cpu_s`` (process tree),
        ``processes``, ``load`` (before, after), ``output`` (the command's stdout), ``cmd``.
    """
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="z2t-batch-bench-"))
    env = dict(os.environ)
    if cold_cache:
        env["Z2T_PSF_CACHE"] = str(tmp / "psf-cache")
    try:
        cfg = json.loads((FIXTURES / "batch_config_100samples_40.json").read_text())
        cfg["sample_configs"]["num_samples"] = samples
        if psf_mode:
            cfg["base_config"].setdefault("psf", {})["mode"] = psf_mode
        cfgp = tmp / "batch.json"
        cfgp.write_text(json.dumps(cfg))
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "z2t"),
            "batch",
            "--config",
            str(cfgp),
            "--zmap",
            str(FIXTURES / "result_phase_retrieval.h5"),
            "--output-dir",
            str(tmp / "out"),
            "--max-workers",
            str(max_workers),
            "--no-progress",
        ]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        ps = psutil.Process(proc.pid)
        peak = 0
        cpu: dict[int, float] = {}
        names: dict[int, str] = {}
        while proc.poll() is None:
            peak = max(peak, tree_rss(ps))
            tree_cpu(ps, cpu, names)
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        out = proc.stdout.read() if proc.stdout else ""
        manifest = json.loads((tmp / "out" / "manifest.json").read_text())
        states = [j["state"] for j in manifest["jobs"].values()]
        secs = sorted(j["seconds"] for j in manifest["jobs"].values() if j.get("seconds"))
        return {
            "wall_s": wall,
            "rc": proc.returncode,
            "done": states.count("done"),
            "median_job_s": secs[len(secs) // 2] if secs else float("nan"),
            "peak_mib": peak / 2**20,
            "cpu_s": sum(cpu.values()),
            "processes": len(cpu),
            "cpu_by_role": {
                role: round(sum(c for pid, c in cpu.items() if names.get(pid) == role), 1)
                for role in sorted(set(names.values()))
            },
            "load": (load, os.getloadavg()[0]),
            "output": out.strip(),
            "cmd": " ".join(cmd),
            "cache": "cold (built)" if cold_cache else "as found (" + env.get("Z2T_PSF_CACHE", "default") + ")",
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--psf-mode", default=None, choices=["exact", "fast"], help="psf.mode (default: the config's)")
    ap.add_argument(
        "--cold-cache",
        action="store_true",
        help="an empty on-disk PSF library cache for this run ($Z2T_PSF_CACHE): the fast library is built, not loaded",
    )
    args = ap.parse_args(argv)
    print(ensure_bytecode(), file=sys.stderr)
    r = measure(args.samples, args.max_workers, args.psf_mode, args.cold_cache)
    print(r["output"])
    mode = args.psf_mode or "config default"
    print(
        f"W1 batch: {args.samples} samples x 200 frames x 40x40, psf.mode {mode}, {args.max_workers} workers, "
        f"on {machine()}"
    )
    print(
        f"  wall {r['wall_s']:.1f} s (rc {r['rc']}), {r['done']} done; per job median "
        f"{r['median_job_s']:.2f} s; {args.samples * 200 / r['wall_s']:.0f} frames/s; "
        f"peak RSS (driver+scheduler+workers) {r['peak_mib']:.0f} MiB"
    )
    print(
        f"  CPU of the process tree (sampled every 50 ms): {r['cpu_s']:.1f} s in {r['processes']} processes; "
        f"load average before {r['load'][0]:.2f}, after {r['load'][1]:.2f}; PSF cache {r['cache']}"
    )
    print("  CPU by process role:", ", ".join(f"{k} {v:.1f} s" for k, v in r["cpu_by_role"].items()))
    print(f"  vs the original's ~33 min on 2 cores: {1980 / r['wall_s']:.0f}x")
    print("  command:", r["cmd"])


if __name__ == "__main__":
    main()
