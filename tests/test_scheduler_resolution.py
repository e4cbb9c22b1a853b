"""Block computes resolve local schedulers as dask does, without importing ``distributed``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
import numpy as np
import pytest

from z2t_dask.engine.streaming import compute_in_memory, dask_get, iter_frame_blocks


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("threads", dask.threaded.get),
        ("threading", dask.threaded.get),
        ("THREADS", dask.threaded.get),
        ("sync", dask.local.get_sync),
        ("synchronous", dask.local.get_sync),
        ("single-threaded", dask.local.get_sync),
        ("processes", dask.multiprocessing.get),
    ],
)
def test_named_schedulers_are_dasks_own_functions(name, expected):
    assert dask_get(name) is expected


def test_other_schedulers_pass_through():
    def get(*args, **kwargs):  # pragma: no cover - never called
        return None

    assert dask_get(get) is get
    assert dask_get("distributed") == "distributed"  # dask's resolution (a Client must be active)
    with dask.config.set(scheduler="sync"):  # a configured default: dask's own resolution
        assert dask_get(None) is None


def test_blocks_equal_with_named_and_resolved_schedulers():
    import dask.array as da

    a = da.from_array(np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3), chunks=(2, 4, 3))
    for name in ("threads", "sync", None):
        assert np.array_equal(compute_in_memory(a, scheduler=name), a.compute(scheduler="sync"))
        blocks = list(iter_frame_blocks(a, prefetch=1, scheduler=name))
        assert [b.shape[0] for b in blocks] == [2, 2, 2]
        assert np.array_equal(np.concatenate(blocks), a.compute(scheduler="sync"))


def test_saving_a_sample_does_not_import_distributed(tmp_path):
    """A sample written by a process that never uses a cluster does not pay for importing one (~0.5 s)."""
    code = textwrap.dedent(
        f"""
        import sys
        import z2t_dask as z2t
        cfg = z2t.load_config({{"emitters": {{"frames": 3, "num_emitters": 20}}, "tiff": {{"roi_size": 24}}}})
        s = z2t.simulate(cfg, seed=3)
        s.save({str(tmp_path / "s")!r})
        s.save({str(tmp_path / "z")!r}, format="ome-zarr")
        assert s.compute().shape == (3, 24, 24)
        print("distributed" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
