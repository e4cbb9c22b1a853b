"""GPU check of the CuPy paths (``xp=cupy``) of the PSF and camera models: agreement and speed.

The NumPy paths are what the simulator runs by default; the same functions take ``xp=cupy``.
This script runs each CuPy path on a GPU, compares it with the NumPy result (PSFs: maximum
difference relative to the peak; cameras: mean and variance against the exact chain pmf) and
times both. Needs numpy, scipy and cupy (no dask/zarr)::

    python -m benchmarks.gpu_check [--json OUT.json]

Every check runs even when an earlier one fails; failures print their traceback and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import traceback

import numpy as np


def _timed(fn, sync, repeat: int = 3) -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def check_psf(cp, report: dict) -> None:
    from z2t_dask.config import load_config
    from z2t_dask.engine.assembly import make_psf_model

    psf = make_psf_model(load_config(None))
    rng = np.random.default_rng(0)
    n = 2048
    phase = rng.normal(0.0, 0.3, (n, psf.n_modes)).astype(np.float32)
    z = rng.uniform(-0.6, 0.6, n).astype(np.float32)
    dx, dy = rng.uniform(-0.5, 0.5, (2, n)).astype(np.float32)
    cpu = psf.compute(phase, z, dx, dy, workers=1)
    g_in = [cp.asarray(a) for a in (phase, z, dx, dy)]
    gpu = cp.asnumpy(psf.compute(*g_in, xp=cp))
    rel = float(np.abs(gpu - cpu).max() / cpu.max())
    sums = float(np.abs(gpu.sum((1, 2)) - cpu.sum((1, 2))).max())
    alone = cp.asnumpy(psf.compute(*(a[:37] for a in g_in), xp=cp))
    report["psf"] = {
        "n": n,
        "max_abs_diff_over_peak": rel,
        "max_patch_sum_diff": sums,
        "gpu_batch_invariant": bool(np.array_equal(alone, gpu[:37])),
    }
    sync = cp.cuda.Device().synchronize
    big = 16384
    gb = [cp.asarray(np.resize(a, (big,) + a.shape[1:])) for a in (phase, z, dx, dy)]
    t_gpu = _timed(lambda: psf.compute(*gb, xp=cp, batch_size=1024), sync)
    t_cpu = _timed(lambda: psf.compute(phase[:512], z[:512], dx[:512], dy[:512], workers=1), lambda: None, 2)
    report["psf"].update(
        {"gpu_psfs_per_s": big / t_gpu, "cpu_1thread_psfs_per_s": 512 / t_cpu, "patch_size": psf.patch_size}
    )
    assert rel < 1e-4, rel


def check_cameras(cp, report: dict) -> None:
    from z2t_dask.physics.camera import EMCCD, SCMOS, Ideal
    from z2t_dask.physics.camera.pmf import emccd_adu_pmf, linear_adu_pmf

    sync = cp.cuda.Device().synchronize
    flat = np.full((1200, 1200), 50.0, np.float32)
    cams = {"emccd": EMCCD(), "scmos": SCMOS(), "ideal": Ideal()}
    for name, cam in cams.items():
        out = cam(cp.asarray(flat), np.random.default_rng(1), xp=cp)
        host = cp.asnumpy(out).astype(np.float64)
        if name == "emccd":
            k, p = emccd_adu_pmf(
                50.0 * cam.qe + cam.spurious_charge,
                cam.em_gain,
                cam.read_noise_e,
                cam.e_per_adu,
                cam.baseline,
                cam.max_adu,
            )
        elif name == "scmos":
            k, p = linear_adu_pmf(50.0 * cam.qe, cam.gain, math.sqrt(cam.variance), cam.offset, cam.max_adu)
        else:
            k, p = (
                np.arange(0, 200),
                np.exp(np.arange(200) * math.log(50.0) - 50.0 - np.array([math.lgamma(i + 1) for i in range(200)])),
            )
        mean, var = float((k * p).sum()), float(((k - (k * p).sum()) ** 2 * p).sum())
        t_gpu = _timed(lambda: cam(cp.asarray(flat), np.random.default_rng(1), xp=cp), sync)
        t_cpu = _timed(lambda: cam(flat, np.random.default_rng(1)), lambda: None)
        z_mean = (host.mean() - mean) / math.sqrt(var / host.size)
        report[f"camera_{name}"] = {
            "dtype": str(out.dtype),
            "mean": host.mean(),
            "mean_expected": mean,
            "mean_z": z_mean,
            "var_ratio": host.var() / var,
            "gpu_ms_per_1200sq_frame": 1e3 * t_gpu,
            "cpu_ms_per_1200sq_frame": 1e3 * t_cpu,
        }
        assert str(out.dtype) == str(cam.dtype), (name, out.dtype)
        assert abs(z_mean) < 5 and abs(host.var() / var - 1) < 0.02, report[f"camera_{name}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write the report here")
    args = ap.parse_args(argv)
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    report: dict = {
        "gpu": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
        "cupy": cp.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "failures": [],
    }
    for check in (check_psf, check_cameras):
        try:
            check(cp, report)
        except Exception:  # noqa: BLE001 - report every failure, run every check
            report["failures"].append(f"{check.__name__}: {traceback.format_exc()}")
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
