"""Bounded memory: peak RSS of streaming writes does not grow with the number of frames;
non-streaming writes beyond the memory budget are refused with the memory they would need."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import z2t_dask as z2t
from z2t_dask.engine.streaming import MemoryBudgetError, compute_in_memory
from z2t_dask.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]

# 192x192 float32 frames (144 KiB): 2,000 frames are 281 MiB, so a writer that held the stack (or
# a growing part of it) would show at once. A few emitters per frame.
CHILD = textwrap.dedent("""
    import json, resource, sys
    import z2t_dask as z2t

    frames, fmt, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = {"tiff": {"roi_size": 192}, "camera": {"model": "none"}, "psf": {"patch_size": 9},
           "emitters": {"frames": frames, "num_emitters": int(3 * (frames + 15)), "lifetime_avg": 1.0}}
    sample = z2t.simulate(cfg, seed=1)
    sample.save(out, format=fmt)
    try:  # this process's own high-water mark (ru_maxrss after exec also counts the parent's peak)
        with open("/proc/self/status") as f:
            peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": peak_kib / 1024,
                      "nbytes_mib": sample.frames.nbytes / 2**20}))
""")


def peak_rss(frames: int, fmt: str, out: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(frames), fmt, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_peak_memory_does_not_grow_with_frames(tmp_path, fmt):
    small = peak_rss(200, fmt, tmp_path / "s200")
    large = peak_rss(2000, fmt, tmp_path / "s2000")
    assert large["nbytes_mib"] == pytest.approx(281.25)
    growth = large["peak_mib"] - small["peak_mib"]
    # the ground truth grows (a few records per frame), the frames must not: far below the 253 MiB added
    assert growth < 30, (small, large)
    assert large["peak_mib"] < 400, large


def test_no_streaming_refused_beyond_the_budget(tmp_path):
    # 40 x 64 x 64 uint16 = 0.31 MiB; in memory it needs ~2x that: over a 0.25 MiB budget
    s = z2t.simulate(
        {
            "tiff": {"roi_size": 64},
            "emitters": {"frames": 40, "num_emitters": 20},
            "render": {"memory_budget_mb": 0.25},
        },
        seed=0,
    )
    for fmt in ("ome-tiff", "ome-zarr", "hdf5"):
        with pytest.raises(
            MemoryBudgetError, match=r"needs about 1 MiB \(2 x 0 MiB .* render.memory_budget_mb is 0 MiB"
        ):
            s.save(tmp_path / fmt, format=fmt, streaming=False)
    assert list(tmp_path.iterdir()) == []
    # without a configured budget the available memory is the limit: a 61 TiB stack is refused before computing
    with pytest.raises(MemoryBudgetError, match=r"needs about 128,000,000 MiB .* the available memory"):
        compute_in_memory(_huge())


def _huge():
    """A lazy stack far larger than any machine's memory (never computed)."""
    import dask.array as da

    return da.zeros((2 * 10**6, 4096, 4096), dtype=np.uint16, chunks=(1, 4096, 4096))


def test_no_streaming_within_budget_equals_streaming(tmp_path):
    s = z2t.simulate(
        {
            "tiff": {"roi_size": 32},
            "emitters": {"frames": 12, "num_emitters": 20},
            "render": {"memory_budget_mb": 64.0},
        },
        seed=0,
    )
    for fmt in ("ome-tiff", "ome-zarr", "hdf5"):
        a = s.save(tmp_path / f"a_{fmt}", format=fmt)
        b = s.save(tmp_path / f"b_{fmt}", format=fmt, streaming=False)
        from z2t_dask.io.formats import iter_stack_blocks, stack_filename

        got = [np.concatenate(list(iter_stack_blocks(p / stack_filename(p.name, fmt), fmt))) for p in (a, b)]
        assert np.array_equal(got[0], got[1]) and np.array_equal(got[0], s.frames.compute())


def test_cli_no_streaming_refusal_names_the_memory_needed(tmp_path, capsys, original):
    cfgp = tmp_path / "c.json"
    cfgp.write_text(
        json.dumps({"tiff": {"roi_size": 40}, "emitters": {"frames": 200}, "render": {"memory_budget_mb": 0.5}})
    )
    out = tmp_path / "r.ome.tiff"
    rc = main(
        [
            "render",
            "--h5",
            str(original("emitters_40.h5")),
            "--output",
            str(out),
            "--config",
            str(cfgp),
            "--no-streaming",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "needs about 1 MiB" in err and "render.memory_budget_mb" in err and "streaming" in err
    assert not out.exists()
    rc = main(["simulate", "--config", str(cfgp), "--output-dir", str(tmp_path), "--no-streaming"])
    assert rc == 2 and "needs about" in capsys.readouterr().err
