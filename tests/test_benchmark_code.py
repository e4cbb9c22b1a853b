"""The benchmarks' own code runs against the package as it is (they are not part of the suite's timing).

``benchmarks/`` is not installed with the package, so its modules are loaded from their files. These
calls are small: they check that the ceiling and the DFT probe still call the package's kernels with
the arguments the kernels take (a changed signature once broke both without any test noticing).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from z2t_dask import compiled
from z2t_dask.physics.optics.psf import PupilPSF

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_OPTICS = {"wavelength_nm": 660.0, "na": 1.4, "pixel_size_nm_x": 101.11, "pixel_size_nm_y": 98.83, "patch_size": 11}


@pytest.mark.parametrize("vectorial, window", [(False, 64), (True, 64), (True, 48)])
def test_the_ceiling_runs_for_the_exact_models(vectorial, window):
    ceiling = _load("ceiling")
    model = PupilPSF(**_OPTICS, vectorial=vectorial, window_px=window)
    run, b = ceiling.ceiling_block(model, 3, 1)
    run()
    assert b == 3
    res = ceiling.ceiling_per_psf(model, n_psf=6, repeat=1, blocks=(3,))
    assert res["block"] == 3 and res["per_psf_s"] > 0


def test_the_dft_probe_times_the_package_kernel():
    if not compiled.present():
        pytest.skip("numba not available: the probe times compiled code")
    probe = _load("fft_probe")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, probe.NZ, probe.NZ)) + 1j * rng.standard_normal((2, probe.NZ, probe.NZ))).astype(
        np.complex64
    )
    t_pkg, t_old = probe._package_kernel_vs_scipy_passes(x)
    assert t_pkg > 0 and t_old > 0
