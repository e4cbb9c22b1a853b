"""The workloads of ``python -m benchmarks``; each runs in its own process and prints JSON rows.

``python -m benchmarks.workloads NAME [--repeat R]`` with NAME one of ``w1``, ``w2``, ``psf``,
``camera``.  A row: ``workload``, ``variant``, ``time_s``, ``frames``, ``psfs``, ``peak_mib``,
``naive_s`` (the naive reference's time of the same work, same process, same inputs) and
``note``.  Times are the minimum of ``R`` repeats (the machine is shared: the minimum is the
least disturbed run); z2t runs use the threaded dask scheduler on all cores, the PSF and camera
micro-benchmarks one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

warnings.simplefilter("ignore", UserWarning)  # e.g. the fast library's coverage warning on W2
from typing import Any

import numpy as np

from benchmarks.ceiling import best_time, ceiling_block, ceiling_per_psf
from benchmarks.common import FIXTURES, PeakRSS
from z2t_dask.testing import NaiveOptics, naive_emccd, naive_frames, naive_psf

Row = dict[str, Any]


def _row(
    workload: str,
    variant: str,
    time_s: float,
    *,
    frames: int = 0,
    psfs: int = 0,
    peak_mib: float = float("nan"),
    naive_s: float | None = None,
    note: str = "",
) -> Row:
    return {
        "workload": workload,
        "variant": variant,
        "time_s": time_s,
        "frames": frames,
        "psfs": psfs,
        "peak_mib": peak_mib,
        "naive_s": naive_s,
        "note": note,
    }


# ----------------------------------------------------------------------------- samples
def w1_config(mode: str):
    """W1: the original ``batch_config_100samples_40.json`` (40 x 40, 200 frames, 5000 emitters)."""
    import z2t_dask as z2t

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return z2t.load_config(
            FIXTURES / "batch_config_100samples_40.json",
            overrides={"zmap_path": str(FIXTURES / "result_phase_retrieval.h5"), "psf": {"mode": mode}},
        )


def w2_config(mode: str, frames: int = 20):
    """W2: a 1200 x 1200 EMCCD chip, ~40 emitters per frame (``benchmarks.bench_fullchip``)."""
    import z2t_dask as z2t
    from benchmarks.bench_fullchip import fullchip_config

    over = fullchip_config(frames, "ome-tiff")
    over.pop("output", None)
    over["psf"] = {"mode": mode}
    return z2t.load_config(over)


def _run_sample(cfg, seed: int) -> tuple[float, Any]:
    import z2t_dask as z2t

    t0 = time.perf_counter()
    sample = z2t.simulate(cfg, seed=seed)
    sample.compute(scheduler="threads")
    return time.perf_counter() - t0, sample


def _naive_camera(cfg, photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = cfg.camera
    if c.model == "emccd":
        return naive_emccd(
            photons,
            rng,
            qe=c.qe,
            em_gain=c.em_gain,
            spurious_charge=c.spurious_charge,
            read_noise_e=c.read_noise_e,
            e_per_adu=c.e_per_adu,
            baseline=c.baseline,
            bit_depth=c.bit_depth,
        )
    noise = cfg.tiff.noise_params  # the original float camera
    out = rng.poisson(photons).astype(np.float64) if noise.shot_noise else photons.copy()
    out += rng.normal(0.0, noise.readout_noise, photons.shape)
    return np.maximum(out, 0).astype(np.float32)


def naive_sample_time(cfg, sample, n_records: int, n_camera_frames: int) -> tuple[float, str]:
    """Naive time of a whole sample: ``n_records`` PSFs and ``n_camera_frames`` camera frames timed,
    extrapolated per record and per frame."""
    plan = sample.plan
    o = NaiveOptics.from_model(getattr(plan.psf, "exact", plan.psf))
    n_rec = len(plan.rec_frame)
    h, w = plan.image_shape
    k = min(n_records, n_rec)
    t0 = time.perf_counter()
    sig = naive_frames(
        o,
        (h, w),
        plan.frames,
        plan.rec_frame,
        plan.rec_id,
        plan.rec_phot,
        plan.em_xyz,
        plan.em_phase,
        plan.em_mag,
        limit=k,
    )
    t_psf = (time.perf_counter() - t0) / max(k, 1)
    f = min(n_camera_frames, plan.frames)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(f):
        _naive_camera(cfg, sig[i] + plan.background, rng)
    t_cam = (time.perf_counter() - t0) / f
    total = t_psf * n_rec + t_cam * plan.frames
    note = (
        f"naive: {k} of {n_rec} records timed ({t_psf * 1e3:.1f} ms/PSF), {f} of {plan.frames} camera "
        f"frames ({t_cam * 1e3:.1f} ms/frame), extrapolated"
    )
    return total, note


def _library_note(info: dict, counts: dict) -> str:
    """One line on a fast library: grid, size, coverage, measured error, exact fallbacks."""
    err = info.get("error", {})
    pct = lambda v: "n/a" if v is None else f"{v:.2%}"
    n = counts.get("exact", 0) + counts.get("fast", 0)
    grid = info.get("grid") or f"spectral, ranks {info.get('ranks')}, PSF nodes {info.get('psf_grid')}"
    return (
        f"library grid {grid}, {info.get('z_planes', [0, 0, 0])[2]} planes, "
        f"{info.get('table_mib')} MiB, covers {info.get('coverage', 0):.0%} of the field; measured error "
        f"max {pct(err.get('max'))} p99 {pct(err.get('p99'))}; exact fallbacks {counts.get('exact', 0)} of {n} PSFs"
    )


def _sample_rows(name: str, configs: dict[str, Any], repeat: int, n_naive: int, n_cam: int) -> list[Row]:
    rows = []
    naive = None
    for mode, cfg in configs.items():
        t_cold, sample = _run_sample(cfg, seed=1)  # imports, grids, fast library (cached per process)
        info = sample.psf_info
        times = []
        with PeakRSS() as mem:
            for r in range(repeat):
                t, sample = _run_sample(cfg, seed=1 + r)
                times.append(t)
        n_rec = len(sample.records)
        frames = int(sample.frames.shape[0])
        note = f"first run {t_cold:.2f} s (cold: imports, grids" + (", library build)" if mode == "fast" else ")")
        if mode == "fast":
            note += "; " + _library_note(info, getattr(sample.plan.psf, "__dict__", {}).get("_counts", {}))
        if naive is None:
            naive = naive_sample_time(cfg, sample, n_naive, n_cam)
            rows.append(_row(name, "naive reference", naive[0], frames=frames, psfs=n_rec, note=naive[1]))
        rows.append(
            _row(
                name,
                f"z2t {mode}",
                min(times),
                frames=frames,
                psfs=n_rec,
                peak_mib=mem.peak_mib,
                naive_s=naive[0],
                note=note,
            )
        )
    return rows


def w1(repeat: int) -> list[Row]:
    """W1: simulate + render + camera of one 40 x 40 x 200 sample, in memory (no files)."""
    return _sample_rows("W1 40x40x200", {m: w1_config(m) for m in ("exact", "fast")}, repeat, n_naive=150, n_cam=200)


def w2(repeat: int) -> list[Row]:
    """W2: simulate + render + camera of a 1200 x 1200 x 20 EMCCD stack, in memory."""
    return _sample_rows("W2 1200x1200x20", {m: w2_config(m) for m in ("exact", "fast")}, repeat, n_naive=60, n_cam=2)


# ----------------------------------------------------------------------------- PSF stage
def _field_inputs(n: int, seed: int = 0):
    """Emitters of the default config's field: synthetic Zmap phases, z in +-0.6 um, |d| <= 0.5."""
    import z2t_dask as z2t
    from z2t_dask.engine.assembly import aberration_field

    field = aberration_field(z2t.load_config(None))
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-3, 67, n), rng.uniform(-3, 67, n)
    ph, _ = field.at(x, y)
    return ph, rng.uniform(-0.6, 0.6, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n), field.at


def psf(repeat: int, n: int = 512) -> list[Row]:
    """PSF stage alone: ceiling, exact and fast, one thread, for 128 (default), 64 and 32 px windows.

    The scalar model, plus the vectorial model (the default physics) against its ceiling.
    """
    from z2t_dask.physics.optics.psf_library import PSFLibrary

    ph, z, dx, dy, field = _field_inputs(n)
    const = ph[:1]

    def const_field(xx, yy):
        return np.repeat(const, np.size(xx), 0), None

    rows = []
    for window, patch in ((None, 33), (64, 33), (32, 17)):
        model = _bench_model(patch, window)
        label = f"PSF {model.fft_size}^2 window, patch {patch}"
        block, t_ceil, t_ex, mem = _ceiling_and_exact(model, repeat, ph, z, dx, dy)
        o = NaiveOptics.from_model(model)
        k = 16
        t_naive = best_time(lambda: [naive_psf(ph[i], z[i], dx[i], dy[i], o) for i in range(k)], repeat=2) / k
        rows.append(
            _row(
                label,
                "naive reference",
                t_naive * n,
                psfs=n,
                note=f"{k} PSFs timed ({t_naive * 1e3:.2f} ms/PSF), extrapolated",
            )
        )
        rows.append(
            _row(
                label,
                "ceiling (exp + FFTs only)",
                t_ceil * n,
                psfs=n,
                naive_s=t_naive * n,
                note=f"cos/sin of the pupil + the model's transforms (its own DFT or scipy.fft, the faster), "
                f"block {block} (the fastest)",
            )
        )
        rows.append(
            _row(
                label,
                "z2t exact",
                t_ex * n,
                psfs=n,
                peak_mib=mem.peak_mib,
                naive_s=t_naive * n,
                note=f"{t_ex / t_ceil:.2f}x the ceiling",
            )
        )
        libs = {
            "fast, 1 field node (W1-like)": (const_field, (0, 40, 0, 40)),
            "fast, default-config field": (field, (-3, 67, -3, 67)),
        }
        for name, (fn, extent) in libs.items():
            t0 = time.perf_counter()
            lib = PSFLibrary.from_field(model, fn, extent, (-0.6, 0.6), error_samples=128)
            t_build = time.perf_counter() - t0
            phl = ph if fn is field else np.repeat(const, n, 0)
            lib.compute(phl[:4], z[:4], dx[:4], dy[:4])
            t_f = min(best_time(lambda: lib.compute(phl, z, dx, dy, workers=1), repeat=1) for _ in range(repeat)) / n
            err = lib.info["error"]
            rows.append(
                _row(
                    label,
                    f"z2t {name}",
                    t_f * n,
                    psfs=n,
                    naive_s=t_naive * n,
                    note=f"{t_ex / t_f:.1f}x faster than exact; grid {lib.grid}, "
                    f"{lib.table_bytes / 2**20:.0f} MiB, built in {t_build:.2f} s; error max "
                    f"{err['max']:.2%} p99 {err['p99']:.2%}",
                )
            )
    return rows + _vectorial_ceiling_rows(repeat, ph, z, dx, dy)


def _bench_model(patch: int, window: int | None, *, vectorial: bool = False):
    """The PSF workload's exact model: W1's optics, a ``window``-px amplitude window (None: automatic)."""
    from z2t_dask.physics.optics.psf import PupilPSF

    return PupilPSF(
        wavelength_nm=660.0,
        na=1.4,
        pixel_size_nm_x=101.11,
        pixel_size_nm_y=98.83,
        patch_size=patch,
        window_px=window,
        vectorial=vectorial,
    )


def _ceiling_and_exact(model, repeat: int, ph, z, dx, dy):
    """The ceiling's best block and the per-PSF times of the ceiling and the exact model (s), interleaved.

    One thread; each is the minimum over ``max(3 repeat, 15)`` rounds, one sample of each per round (this
    VM's speed moves by 10-30 % from second to second: more rounds, steadier minima).
    Returns ``(block, t_ceil, t_exact, PeakRSS of the exact model's runs)``.
    """
    n = ph.shape[0]
    model.compute(ph[:4], z[:4])
    block = ceiling_per_psf(model, n, workers=1, repeat=3)["block"]  # the ceiling's best block
    ceil_run, bs = ceiling_block(model, block, 1)
    t_ex, t_ceil = math.inf, math.inf
    with PeakRSS() as mem:
        for _ in range(max(3 * repeat, 15)):
            t_ceil = min(t_ceil, best_time(ceil_run, repeat=1, number=n // bs) / (n // bs * bs))
            t_ex = min(t_ex, best_time(lambda: model.compute(ph, z, dx, dy, workers=1, batch_size=256), repeat=1) / n)
    return block, t_ceil, t_ex, mem


def _vectorial_ceiling_rows(repeat: int, ph, z, dx, dy, n: int = 128) -> list[Row]:
    """The vectorial model (the default physics) against its own ceiling: 128 and 64 px windows, one thread."""
    rows = []
    ph, z, dx, dy = ph[:n], z[:n], dx[:n], dy[:n]
    for window in (None, 64):
        model = _bench_model(33, window, vectorial=True)
        label = f"PSF vectorial {model.fft_size}^2 window, patch 33"
        block, t_ceil, t_ex, mem = _ceiling_and_exact(model, repeat, ph, z, dx, dy)
        note = "cos/sin of the pupil + the FFTs of its 5 field components (polyphase), block"
        rows.append(_row(label, "ceiling (exp + FFTs only)", t_ceil * n, psfs=n, note=f"{note} {block}"))
        rows.append(
            _row(label, "z2t exact", t_ex * n, psfs=n, peak_mib=mem.peak_mib, note=f"{t_ex / t_ceil:.2f}x the ceiling")
        )
    return rows


# ----------------------------------------------------------------------------- vectorial, whole chip
def chip(repeat: int, n: int = 512) -> list[Row]:
    """Vectorial PSF stage (the default model), one thread: exact vs fast on the whole 1200^2 chip and W1-like.

    The whole-chip fast model is what ``make_psf_model`` gives for the default config with a
    1200 x 1200 ROI (the default varying synthetic field): the low-rank spectral library.  Its
    error is measured here again on ``n`` held-out emitters (uniform over the chip, z in +-1 um,
    sub-pixel offsets in +-0.5 px) against the exact model.
    """
    import z2t_dask as z2t
    from z2t_dask.engine.assembly import aberration_field, make_psf_model
    from z2t_dask.physics.optics.psf_library import PSFLibrary

    cfg = z2t.load_config({"tiff": {"roi_size": 1200, "crop_offset": [0, 0]}, "psf": {"mode": "fast"}})
    t0 = time.perf_counter()
    lib = make_psf_model(cfg)
    t_build = time.perf_counter() - t0
    model = lib.exact
    info = lib.describe()
    x0, x1, y0, y1 = info["field_extent_px"]
    rng = np.random.default_rng(0)
    ph, _ = aberration_field(cfg).at(rng.uniform(x0, x1, n), rng.uniform(y0, y1, n))
    z, dx, dy = rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    model.compute(ph[:4], z[:4], workers=1)
    lib.compute(ph[:4], z[:4], dx[:4], dy[:4])
    t_ex, t_f = math.inf, math.inf
    with PeakRSS() as mem:
        for _ in range(max(repeat, 3)):  # interleaved, one sample each per round
            t_ex = min(t_ex, best_time(lambda: model.compute(ph, z, dx, dy, workers=1, batch_size=256), repeat=1) / n)
            t_f = min(t_f, best_time(lambda: lib.compute(ph, z, dx, dy, workers=1), repeat=1) / n)
    ref = model.compute(ph, z, dx, dy, workers=1).astype(np.float64).reshape(n, -1)
    got = lib.compute(ph, z, dx, dy).astype(np.float64).reshape(n, -1)
    err = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    within = float(np.mean(err <= 0.01))
    label = "PSF vectorial (default model), whole chip 1200^2"
    rows = [
        _row(label, "z2t exact", t_ex * n, psfs=n, peak_mib=mem.peak_mib, note=f"{model.fft_size}^2 window"),
        _row(
            label,
            "z2t fast (spectral library)",
            t_f * n,
            psfs=n,
            note=f"{t_ex / t_f:.1f}x faster than exact; {type(lib).__name__}, ranks {info.get('ranks')}, PSF nodes "
            f"{info.get('psf_grid')}, {info['z_planes'][2]} planes, {info['table_mib']} MiB, built in {t_build:.1f} s; "
            f"{within:.1%} of {n} held-out PSFs within 1 % (max {err.max():.2%}, p99 {np.quantile(err, 0.99):.2%}); "
            f"build-time measurement max {info['error']['max']:.2%}; coverage {info['coverage']:.0%}",
        ),
    ]
    # W1-like: one field node, the table library of the vectorial model
    const = ph[:1]
    t0 = time.perf_counter()
    tab = PSFLibrary.from_field(
        model, lambda xx, yy: (np.repeat(const, np.size(xx), 0), None), (0, 40, 0, 40), (-1.0, 1.0), error_samples=128
    )
    t_tab_build = time.perf_counter() - t0
    phc = np.repeat(const, n, 0)
    tab.compute(phc[:4], z[:4], dx[:4], dy[:4])
    t_t = min(best_time(lambda: tab.compute(phc, z, dx, dy, workers=1), repeat=1) for _ in range(max(repeat, 3))) / n
    t_exc = best_time(lambda: model.compute(phc, z, dx, dy, workers=1, batch_size=256), repeat=1) / n
    e = tab.info["error"]
    rows.append(
        _row(
            "PSF vectorial (default model), 1 field node (W1-like)",
            "z2t fast (table library)",
            t_t * n,
            psfs=n,
            note=f"{t_exc / t_t:.1f}x faster than exact; grid {tab.grid}, {tab.table_bytes / 2**20:.0f} MiB, built in "
            f"{t_tab_build:.1f} s; error max {e['max']:.2%} p99 {e['p99']:.2%}",
        )
    )
    return rows


# ----------------------------------------------------------------------------- camera
def camera(repeat: int) -> list[Row]:
    """Camera chain alone on a realistic 1200 x 1200 frame (background + ~40 emitters), one thread."""
    import z2t_dask as z2t
    from z2t_dask.engine.render import expected_signal
    from z2t_dask.physics.camera import EMCCD, SCMOS, Ideal

    cfg = w2_config("exact")
    sample = z2t.simulate(cfg, seed=1)
    plan = sample.plan
    photons = expected_signal(plan, 0, 1)[0] + np.float32(plan.background)
    c = cfg.camera
    emccd = EMCCD(
        qe=c.qe,
        em_gain=c.em_gain,
        spurious_charge=c.spurious_charge,
        read_noise_e=c.read_noise_e,
        e_per_adu=c.e_per_adu,
        baseline=c.baseline,
        bit_depth=c.bit_depth,
    )
    g = np.random.default_rng(0)
    lam = photons.astype(np.float64) * c.qe + c.spurious_charge
    counts = g.poisson(lam).astype(np.float32)

    def floor() -> None:  # the draws alone, with numpy's generators
        g.poisson(lam)
        g.standard_gamma(counts, dtype=np.float32)
        g.standard_normal(photons.shape, dtype=np.float32)

    t_floor = best_time(floor, repeat=repeat)
    t_naive = best_time(lambda: _naive_camera(cfg, photons, g), repeat=repeat)
    rows = [
        _row(
            "camera 1200x1200",
            "numpy draws only (Poisson+Gamma+Normal)",
            t_floor,
            frames=1,
            note="what numpy's generators cost for this frame",
        )
    ]
    for name, model in (("EMCCD", emccd), ("sCMOS", SCMOS()), ("ideal (Poisson)", Ideal())):
        with PeakRSS() as mem:
            t = best_time(lambda: model(photons, np.random.default_rng(1)), repeat=repeat)
        rows.append(
            _row(
                "camera 1200x1200",
                f"z2t {name}",
                t,
                frames=1,
                peak_mib=mem.peak_mib,
                naive_s=t_naive if name == "EMCCD" else None,
                note=f"{t / t_floor:.2f}x numpy's EMCCD draws" if name == "EMCCD" else "",
            )
        )
    return rows


def batch(repeat: int, samples: int = 100) -> list[Row]:
    """W1 training set: ``samples`` W1 samples through ``z2t batch`` on 2 workers (files written), fast and exact.

    One run per mode (a batch is long; ``repeat`` is not used): wall time end to end including the
    cluster start, with the on-disk PSF library cache as found (the note says so).
    """
    from benchmarks.bench_batch import measure

    rows = []
    for mode in ("fast", "exact"):
        r = measure(samples, 2, mode)
        rows.append(
            _row(
                f"W1 batch {samples} samples",
                f"z2t batch, psf.mode {mode}",
                r["wall_s"],
                frames=samples * 200,
                peak_mib=r["peak_mib"],
                naive_s=1980.0,  # the original batch generator on this machine (about 33 min, see bench_batch)
                note=(
                    f"2 workers, end to end incl. cluster start; {r['done']} done; "
                    f"median job {r['median_job_s']:.2f} s; "
                    f"CPU {r['cpu_s']:.0f} s; load {r['load'][0]:.1f}->{r['load'][1]:.1f}; PSF cache {r['cache']}; "
                    "'vs naive' = vs the original tool (~1980 s)"
                ),
            )
        )
    return rows


WORKLOADS = {"w1": w1, "w2": w2, "psf": psf, "chip": chip, "camera": camera, "batch": batch}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", choices=sorted(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    rows = WORKLOADS[args.name](args.repeat)
    load1 = os.getloadavg()[0]
    for r in rows:
        r["load"] = [round(load0, 2), round(load1, 2)]
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
