"""Public helpers for testing code that uses z2t-dask (as :mod:`zarr.testing` is for zarr).

An ordinary package, importable without pytest and cheap to import (the package's heavy modules
are imported when a helper is first called). It holds:

Small configs
    :func:`tiny_config` (a validated :class:`~z2t_dask.config.SimulationConfig`) and
    :func:`tiny_config_dict` (the plain mapping, e.g. to write a JSON file for the CLI): a
    24 × 20 px ROI (non-square, so a swapped x/y shows), 6 frames, 30 emitters, a 15 px PSF patch,
    an EMCCD camera; rendered in well under a second.
A sample from arrays
    :func:`emitter_table` and :func:`sample_from_arrays`: a lazy
    :class:`~z2t_dask.sample.Sample` rendering ground truth you give as arrays (emitters placed
    exactly where a test needs them, e.g. on tile borders) instead of drawing it from the seed.
NGFF validation
    :func:`validate_ngff` (re-exported from :mod:`z2t_dask.io.ngff`): checks an OME-Zarr group's
    multiscales metadata and returns a summary.
The naive reference renderer
    :class:`NaiveOptics`, :func:`naive_psf`, :func:`naive_frames`, :func:`naive_emccd` and
    :func:`naive_expected_photons`: z2t's exact physics written the straightforward way the
    original tool was (one PSF per record, everything rebuilt from scratch in float64, a Python
    loop to place patches). It is the eager oracle the lazy graph is tested against (as
    dask-image tests against scipy) and the baseline ``python -m benchmarks`` times z2t against.

Conventions are the package's: frames ``(T, Y, X)``; x is the column, y the row, both in camera
pixels of the ROI, pixel ``(r, c)`` centred at ``(y=r, x=c)``; z in µm (0 = focal plane, positive
= away from the coverslip); photons per frame; Zernike coefficients in rad RMS, Noll order.

Examples
--------
>>> from z2t_dask.testing import tiny_config, naive_expected_photons
>>> import z2t_dask as z2t
>>> cfg = tiny_config(camera={"model": "none"})             # noise-free: frames are expected photons
>>> sample = z2t.simulate(cfg, seed=3)
>>> bool(abs(sample.compute() - naive_expected_photons(sample)).max() < 1e-3)
True
"""

from __future__ import annotations

from typing import Any

from z2t_dask.testing.naive import NaiveOptics, naive_emccd, naive_expected_photons, naive_frames, naive_psf
from z2t_dask.testing.samples import TINY_CONFIG, emitter_table, sample_from_arrays, tiny_config, tiny_config_dict

__all__ = [
    "TINY_CONFIG",
    "NaiveOptics",
    "emitter_table",
    "naive_emccd",
    "naive_expected_photons",
    "naive_frames",
    "naive_psf",
    "sample_from_arrays",
    "tiny_config",
    "tiny_config_dict",
    "validate_ngff",
]


# --------------------------------------------------------------------------- NGFF (re-export)


def __getattr__(name: str) -> Any:
    if name == "validate_ngff":  # imported on first use: keeps this module cheap to import
        from z2t_dask.io.ngff import validate_ngff

        return validate_ngff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"validate_ngff"})
