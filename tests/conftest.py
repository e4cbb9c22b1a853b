"""Shared fixtures: paths to the original tool's files (read-only) and small configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The on-disk PSF library cache (z2t_dask.physics.optics.psf_store) stays off in the tests (and their
# subprocesses): every test builds what it checks; tests of the cache turn it on in a temporary folder.
os.environ.setdefault("Z2T_PSF_CACHE", "off")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "original"

try:  # the property tests (tests/test_properties.py; hypothesis is in the [test] extra)
    from hypothesis import settings as hypothesis_settings
except ImportError:  # pragma: no cover - the other tests run without it
    pass
else:
    # "ci" (default): no deadline (render times vary on shared machines), no example database in
    # the working tree, the same examples on every run. "thorough" (pytest --hypothesis-profile
    # thorough): new examples each run, 10 times as many (the tests scale theirs by max_examples / 100).
    hypothesis_settings.register_profile("ci", deadline=None, database=None, derandomize=True, print_blob=True)
    hypothesis_settings.register_profile("thorough", deadline=None, database=None, max_examples=1000, print_blob=True)
    hypothesis_settings.load_profile("ci")


def fixture_path(name: str) -> Path:
    p = FIXTURES / name
    if not p.exists():  # pragma: no cover - the shared folder is part of every checkout and CI run
        pytest.skip(f"original fixture missing: {p}")
    return p


@pytest.fixture
def original():
    """Callable returning the path of a file in ../shared/fixtures/original/."""
    return fixture_path


def small_config(**over) -> dict:
    """A fast config: 24x20 px, 12 frames, EMCCD."""
    cfg = {
        "emitters": {
            "num_emitters": 40,
            "frames": 12,
            "margin_px": 2.0,
            "intensity_mu": 3000.0,
            "intensity_sigma": 500.0,
            "lifetime_avg": 2.0,
            "z_range_um": 0.5,
        },
        "tiff": {"roi_width": 24, "roi_height": 20, "crop_offset": [100, 50]},
        "psf": {"patch_size": 21},
        "camera": {"model": "emccd"},
        "zernike": {"synthetic_shape": [300, 300]},
    }
    for k, v in over.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def psf_inputs(depth_dependent: bool, n: int, seed: int, *, mag: bool = False, dipole: bool = False) -> tuple:
    """Random exact-PSF inputs ``(phase (n, 11), z (n,), d (2, n), kwargs)`` for ``PupilPSF.compute``.

    z in +-0.8 um (plus 1 um, above the coverslip, for a depth-dependent model), sub-pixel offsets in
    +-0.5 px; ``kwargs`` holds a pupil amplitude (``mag``) and unit dipole vectors (``dipole``) if asked.
    """
    rng = np.random.default_rng(seed)
    phase = rng.normal(0, 0.3, (n, 11)).astype(np.float32)
    z = rng.uniform(-0.8, 0.8, n).astype(np.float32) + (1.0 if depth_dependent else 0.0)
    d = rng.uniform(-0.5, 0.5, (2, n)).astype(np.float32)
    kw: dict[str, Any] = {}
    if mag:
        kw["mag"] = rng.normal(0, 0.1, (n, 6)).astype(np.float32)
    if dipole:
        mu = rng.normal(size=(n, 3))
        kw["dipole"] = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    return phase, z, d, kw
