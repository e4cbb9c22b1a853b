"""z2t-dask: scalable, reproducible SMLM movie simulation on Dask.

>>> import z2t_dask as z2t
>>> cfg = z2t.load_config(None)          # built-in default (or a path / dict)
>>> sample = z2t.simulate(cfg, seed=1)   # lazy frames + ground truth

Public names are imported lazily (PEP 562), so ``import z2t_dask`` stays cheap in every worker;
the ``TYPE_CHECKING`` block below lets IDEs and type checkers see them. The package's layers
(config -> physics -> engine -> io -> sample -> batch -> tools) are described in
``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = (
    "Z2TError",
    "Z2TWarning",
    "ConfigError",
    "BatchConfigError",
    "LegacyKeyWarning",
    "ZmapError",
    "FormatError",
    "NGFFError",
    "MemoryBudgetError",
    "ClusterError",
    "InspectError",
    "PreviewError",
    "OutputSpaceError",
    "BatchLockError",
    "OutputFolderError",
    "RemoteStoreError",
)

#: public name -> module (relative to the package) that defines it
_EXPORTS = {
    **{name: "errors" for name in _ERRORS},
    "SimulationConfig": "config",
    "default_config": "config",
    "load_config": "config",
    "Sample": "sample",
    "simulate": "sample",
    "render_emitters": "sample",
    "load_sample_h5": "sample",
    "read_zmap": "physics.zmap",
    "SyntheticZmap": "physics.zmap",
    "run_batch": "batch",
    "load_batch_config": "batch",
    "expand_jobs": "batch",
    "open_sample": "tools.results",
    "open_stack": "tools.results",
    "summarize": "tools.summary",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what the lazy __getattr__ returns, for IDEs and type checkers
    from z2t_dask.batch import expand_jobs, load_batch_config, run_batch
    from z2t_dask.config import SimulationConfig, default_config, load_config
    from z2t_dask.errors import (
        BatchConfigError,
        BatchLockError,
        ClusterError,
        ConfigError,
        FormatError,
        InspectError,
        LegacyKeyWarning,
        MemoryBudgetError,
        NGFFError,
        OutputFolderError,
        OutputSpaceError,
        PreviewError,
        RemoteStoreError,
        Z2TError,
        Z2TWarning,
        ZmapError,
    )
    from z2t_dask.physics.zmap import SyntheticZmap, read_zmap
    from z2t_dask.sample import Sample, load_sample_h5, render_emitters, simulate
    from z2t_dask.tools.results import open_sample, open_stack
    from z2t_dask.tools.summary import summarize


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'z2t_dask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
