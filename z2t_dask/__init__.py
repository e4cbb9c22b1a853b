"""z2t-dask: scalable, reproducible SMLM movie simulation on Dask.

>>> import z2t_dask as z2t
>>> cfg = z2t.load_config(None)          # built-in default (or a path / dict)
>>> sample = z2t.simulate(cfg, seed=1)   # lazy frames + ground truth

Public names are imported lazily (PEP 562), so ``import z2t_dask`` stays cheap in every worker.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    **{name: "errors" for name in ("Z2TError", "Z2TWarning", "ConfigError", "BatchConfigError", "LegacyKeyWarning",
                                   "ZmapError", "FormatError", "NGFFError", "MemoryBudgetError", "ClusterError",
                                   "InspectError", "PreviewError")},
    "SimulationConfig": "config",
    "default_config": "config", "load_config": "config",
    "Sample": "sample", "simulate": "sample", "render_emitters": "sample", "load_sample_h5": "sample",
    "read_zmap": "physics.zmap", "SyntheticZmap": "physics.zmap",
    "run_batch": "batch.runner", "load_batch_config": "batch.runner", "expand_jobs": "batch.runner",
    "open_sample": "tools.results", "open_stack": "tools.results", "summarize": "tools.summary",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'z2t_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
