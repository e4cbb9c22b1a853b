"""Batches at scale (issue 17): per-job cost from 10³ to 10⁵ tiny jobs, resume, inspect, killed drivers.

For each ``--jobs N``, in a fresh interpreter (so the driver's peak RSS is its own): a batch of N
tiny jobs (8x8 px, 1 frame, 2 emitters) runs with :func:`z2t_dask.run_batch` on a LocalCluster of
``--workers`` processes of one thread each, started before the clock starts. Reported per N:

* ``run_s`` / ``ms_per_job``: wall time of ``run_batch`` (planning, submission in a bounded
  window, every manifest update, the exports at start and end);
* ``resume_s``: a second ``run_batch`` on the finished folder (nothing to do; no cluster started);
* ``inspect_s``: ``z2t inspect <folder> --json`` as a subprocess;
* ``driver_rss_mb``: the driver's peak RSS (``ru_maxrss``; scheduler and workers are other processes);
* ``max_in_flight`` / ``window``: the most jobs submitted and unfinished at once, and the window.

``--kill K``: a batch of ``--kill-jobs`` jobs run by ``z2t batch`` in a subprocess, killed with
SIGKILL (driver and cluster) at K random moments, then run to the end; checks that every job is
done exactly once (every marker written once, no temporaries), and that the store and the markers
agree (key and recorded outputs).

``--job noop``: the jobs write one small file and their marker without simulating (the driver's
own cost per job: planning, submission, the manifest store, Dask's task overhead).

``--synthetic N``: a finished batch of N jobs written without Dask (folders and markers), then
resumed twice (the first adopts every job from its marker) and inspected: the resume and inspect
figures at 10⁵ jobs without running 10⁵ jobs.

Run: ``python -m benchmarks.batch_scale --jobs 1000 10000 [--workers 2] [--job noop] [--synthetic 100000]
[--kill 3 --kill-jobs 2000]`` (``--jobs`` with no value: no run)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {
    "emitters": {"num_emitters": 2, "frames": 1},
    "tiff": {"roi_size": 8},
    "psf": {"patch_size": 7},
    "zernike": {"synthetic_shape": [64, 64]},
}


def tiny_batch(out: Path, n: int, **extra) -> dict:
    """A batch config of ``n`` tiny samples (8x8 px, 1 frame) into ``out``."""
    return {
        "base_output_dir": str(out),
        "seed": 17,
        "retries": 1,
        "base_config": TINY,
        "sample_configs": {"num_samples": n, "frames_per_sample": 1, "sample_naming": "sample_{sample_id:06d}"},
        **extra,
    }


def noop_job(job: dict, out_root: str, **kw) -> dict:
    """A job without simulation (one small file and the marker, as run_job writes them): the driver's cost alone."""
    from z2t_dask.batch.checksums import record_outputs
    from z2t_dask.batch.jobs import JOB_MARKER, finished_marker

    folder = Path(out_root) / job["name"]
    done = finished_marker(folder, job["key"])
    if done is not None:
        return {**done, "reused": True}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.json").write_text(json.dumps({"seed": job["seed"]}))
    info = {"key": job["key"], "outputs": record_outputs(folder, exclude=(JOB_MARKER,)), "finished": time.time()}
    (folder / JOB_MARKER).write_text(json.dumps(info))
    return info


def one(n: int, workers: int, root: Path, shard: bool, job: str = "real") -> dict:
    """Run, resume and inspect one batch of ``n`` jobs (in this process); the figures."""
    from distributed import Client, LocalCluster

    from z2t_dask import run_batch

    out = root / f"b{n}"
    cfg = tiny_batch(out, n, **({"shard_folders": True} if shard else {}))
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl,
        Client(cl) as c,
    ):
        t = time.perf_counter()
        res = run_batch(cfg, c, progress=False, job_fn=noop_job if job == "noop" else None)
        run_s = time.perf_counter() - t
    assert res.exit_code == 0, res.summary()
    t = time.perf_counter()
    again = run_batch(cfg, progress=False)
    resume_s = time.perf_counter() - t
    assert set(again.states()) == {"skipped"}, again.states().keys()
    t = time.perf_counter()
    z2t = os.path.join(os.path.dirname(sys.executable), "z2t")
    subprocess.run([z2t, "inspect", str(out), "--json"], check=True, stdout=subprocess.DEVNULL)
    inspect_s = time.perf_counter() - t
    return {
        "jobs": n,
        "job": job,
        "workers": workers,
        "run_s": round(run_s, 2),
        "ms_per_job": round(1e3 * run_s / n, 2),
        "resume_s": round(resume_s, 2),
        "inspect_s": round(inspect_s, 2),
        "driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "window": res.window,
        "max_in_flight": res.max_in_flight,
    }


def synthetic(n: int, root: Path) -> dict:
    """A finished batch of ``n`` jobs written without Dask (folders and markers), then resumed and inspected.

    The first ``run_batch`` adopts every job from its marker (no cluster is started: nothing to
    run); the second is the resume of a finished batch. ``decide_s`` is the time until the runner
    logged how many jobs it has to run (0), ``resume_s`` the whole call (with the JSON exports).
    """
    import logging

    from z2t_dask import run_batch
    from z2t_dask.batch import BatchJobs, load_batch_config

    out = root / f"synthetic{n}"
    cfg = tiny_batch(out, n)
    out.mkdir(parents=True)
    t = time.perf_counter()
    for job in BatchJobs(load_batch_config(cfg)):
        noop_job({"name": job.name, "key": job.key, "seed": job.seed}, str(out))
    write_s = time.perf_counter() - t
    decided: list[float] = []

    class _Clock(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "to run, output" in record.getMessage():
                decided.append(time.perf_counter())

    logging.getLogger("z2t_dask.batch").addHandler(_Clock())
    t = time.perf_counter()
    first = run_batch(cfg, progress=False)
    adopt_s = time.perf_counter() - t
    assert set(first.states()) == {"skipped"} and len(first.jobs) == n
    del first  # as a fresh `z2t batch` would: no 10⁵ entries of an earlier result alive (the GC walks them)
    gc.collect()
    t = time.perf_counter()
    again = run_batch(cfg, progress=False)
    resume_s = time.perf_counter() - t
    assert set(again.states()) == {"skipped"}
    decide_s = decided[-1] - t
    z2t = os.path.join(os.path.dirname(sys.executable), "z2t")
    t = time.perf_counter()
    subprocess.run([z2t, "inspect", str(out), "--json"], check=True, stdout=subprocess.DEVNULL)
    inspect_s = time.perf_counter() - t
    return {
        "jobs": n,
        "job": "synthetic (finished batch written without Dask)",
        "write_s": round(write_s, 1),
        "first_resume_adopting_markers_s": round(adopt_s, 1),
        "resume_decide_s": round(decide_s, 1),
        "resume_s": round(resume_s, 1),
        "inspect_s": round(inspect_s, 1),
        "driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def kill_test(n: int, kills: int, workers: int, root: Path, seed: int = 0) -> dict:
    """Kill a ``z2t batch`` of ``n`` jobs ``kills`` times at random moments, then finish it; check it."""
    from z2t_dask.batch import JOB_MARKER, read_manifest

    rng = random.Random(seed)
    out = root / "killed"
    cfgp = root / "killed.json"
    cfgp.write_text(json.dumps(tiny_batch(out, n)))
    z2t = os.path.join(os.path.dirname(sys.executable), "z2t")
    cmd = [z2t, "batch", "--config", str(cfgp), "--max-workers", str(workers), "--no-progress"]
    done_at_kill: list[int] = []
    marker_times: dict[str, int] = {}
    for _ in range(kills):
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = done_at_kill[-1] if done_at_kill else 0
        target = before + rng.uniform(0.1, 0.3) * (n - before)  # kill once this many jobs are recorded done
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            try:
                doc = read_manifest(out)
                n_done = sum(j["state"] in ("done", "skipped") for j in doc["jobs"].values())
            except (OSError, ValueError):
                n_done = 0
            if n_done >= target:
                break
            time.sleep(rng.uniform(0.2, 1.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        doc = read_manifest(out)
        done = [k for k, j in doc["jobs"].items() if j["state"] in ("done", "skipped")]
        done_at_kill.append(len(done))
        for name in done:
            marker_times.setdefault(name, (out / name / JOB_MARKER).stat().st_mtime_ns)
    t = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    final_s = time.perf_counter() - t
    doc = read_manifest(out)
    states = {j["state"] for j in doc["jobs"].values()}
    problems = []
    if rc != 0 or len(doc["jobs"]) != n or not states <= {"done", "skipped"}:
        problems.append(f"rc {rc}, {len(doc['jobs'])} jobs recorded, states {sorted(states)}")
    for name, entry in doc["jobs"].items():
        marker = json.loads((out / name / JOB_MARKER).read_text())
        if marker["key"] != entry["key"] or marker["outputs"] != entry["outputs"]:
            problems.append(f"{name}: the store and the marker disagree")
        if name in marker_times and (out / name / JOB_MARKER).stat().st_mtime_ns != marker_times[name]:
            problems.append(f"{name}: done twice (its marker was rewritten)")
    temps = list(out.rglob(".*.tmp-*"))
    if temps:
        problems.append(f"{len(temps)} temporaries left")
    folders = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(folders) != n:
        problems.append(f"{len(folders)} job folders, expected {n}")
    return {
        "jobs": n,
        "kills": kills,
        "done_at_each_kill": done_at_kill,
        "final_run_s": round(final_s, 1),
        "ok": not problems,
        "problems": problems[:10],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, nargs="*", default=[1000, 10000], help="batch sizes (default 1000 10000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard", action="store_true", help="shard_folders: true")
    ap.add_argument(
        "--job", choices=("real", "noop"), default="real", help="real tiny samples, or no simulation (the driver alone)"
    )
    ap.add_argument("--synthetic", type=int, default=0, help="resume + inspect of a finished batch of this many jobs")
    ap.add_argument("--kill", type=int, default=0, help="driver kills of the crash test (0: no crash test)")
    ap.add_argument("--kill-jobs", type=int, default=2000)
    ap.add_argument("--keep", help="keep the batch folders under this folder")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size here, print JSON
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--synthetic-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.synthetic_one:
        print(json.dumps(synthetic(args.synthetic_one, Path(args.root))))
        return
    if args.one:
        print(json.dumps(one(args.one, args.workers, Path(args.root), args.shard, args.job)))
        return
    root = Path(args.keep or tempfile.mkdtemp(prefix="z2t-batch-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.jobs:
            cmd = [sys.executable, "-m", "benchmarks.batch_scale", "--one", str(n), "--workers", str(args.workers)]
            cmd += ["--root", str(root), "--job", args.job] + (["--shard"] if args.shard else [])
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        if len(rows) >= 2:
            print(
                f"per-job time ratio {rows[-1]['jobs']} vs {rows[0]['jobs']} jobs: "
                f"{rows[-1]['ms_per_job'] / rows[0]['ms_per_job']:.2f}"
            )
        if args.synthetic:
            cmd = [sys.executable, "-m", "benchmarks.batch_scale", "--synthetic-one", str(args.synthetic)]
            res = subprocess.run(cmd + ["--root", str(root)], check=True, capture_output=True, text=True)
            print(res.stdout.strip().splitlines()[-1], flush=True)
        if args.kill:
            print(json.dumps(kill_test(args.kill_jobs, args.kill, args.workers, root)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
