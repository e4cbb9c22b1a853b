"""Worker warm-up: the modules a job imports, loaded once per cluster instead of once per worker.

A job imports the sample, engine, physics and io layers and their libraries (Dask arrays,
SciPy's interpolation, tifffile, h5py): about 2.5 s of CPU on this project's 2-core reference
machine (1.5 s after ``distributed``), paid by every worker on its first job. The private
:class:`~distributed.LocalCluster` of a batch (:func:`~z2t_dask.batch.cluster.resolve_client`)
therefore starts its workers from a *forkserver* that imports them once (this module is its
preload, :data:`z2t_dask.batch.cluster.FORKSERVER_PRELOAD`): each worker is forked with them
already imported.

Importing this module imports :data:`WARM_MODULES` (:func:`warm_imports`; ``dask.array`` without
xarray, :func:`import_dask_array_without_xarray`). It never raises: a
module that fails to import is left to the job that needs it, which reports the real error, so
a failing warm-up never breaks a batch. Imports draw no random numbers and set no state that
reaches a sample's bytes (``tests/test_batch_warm.py`` checks the bytes).
"""

from __future__ import annotations

import importlib
import logging
import sys

__all__ = ["WARM_MODULES", "import_dask_array_without_xarray", "warm_compiled", "warm_imports"]

log = logging.getLogger("z2t_dask.batch")

#: What a job imports lazily, beyond what a Dask worker has (measured: ``sys.modules`` before and
#: after one job in a fresh worker). Order matters only for speed.
WARM_MODULES = (
    "numpy",
    "dask.array",
    "scipy.interpolate",
    "scipy.ndimage",
    "scipy.spatial",
    "scipy.special",
    "h5py",
    "tifffile",
    "imagecodecs",
    "z2t_dask.config",
    "z2t_dask.batch.jobs",
    "z2t_dask.batch.checksums",
    "z2t_dask.physics.truth",
    "z2t_dask.physics.zmap",
    "z2t_dask.physics.camera",
    "z2t_dask.physics.optics.psf",
    "z2t_dask.physics.optics.psf_library",
    "z2t_dask.physics.optics.psf_spectral",
    "z2t_dask.engine.assembly",
    "z2t_dask.engine.render",
    "z2t_dask.engine.streaming",
    "z2t_dask.io.atomic",
    "z2t_dask.io.tiff",
    "z2t_dask.io.hdf5",
    "z2t_dask.io.emitters_h5",
    "z2t_dask.sample",
)


def import_dask_array_without_xarray() -> bool:
    """Import ``dask.array`` without letting it import xarray (and pandas, pyarrow); whether this applied.

    ``dask.array`` imports xarray when it is installed, only to recognise xarray inputs, which a
    job never passes: 0.4-0.5 s of a worker start's 1.5 s of imports on the reference machine.
    xarray is hidden from that one import (``sys.modules["xarray"] = None``) and nothing else:
    ``import xarray`` works afterwards. Left alone when either module is already imported.
    """
    if "xarray" in sys.modules or "dask.array" in sys.modules:
        return False
    sys.modules["xarray"] = None  # type: ignore[assignment]  # dask's optional import: "not installed"
    try:
        importlib.import_module("dask.array")
    except Exception:  # warm_imports reports it
        return False
    finally:
        if "xarray" in sys.modules and sys.modules["xarray"] is None:
            del sys.modules["xarray"]
    return True


def warm_imports(modules: tuple[str, ...] = WARM_MODULES) -> list[str]:
    """Import ``modules``; return those that failed (never raises: a job reports its own import errors).

    Parameters
    ----------
    modules : tuple of str
        Module names (default :data:`WARM_MODULES`).

    Returns
    -------
    list of str
        ``"name: ExceptionType: message"`` for each module that could not be imported.
    """
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a warm-up never breaks a batch: the job meets the error itself
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    if failed:
        log.debug("warm-up imports failed: %s", "; ".join(failed))
    return failed


def warm_compiled() -> int:
    """Load the compiled kernels (:func:`z2t_dask.compiled.warm`; numba's import and machine code, ~0.5 s).

    Returns the number of kernels ready (0 without numba). Never raises.
    """
    try:
        from z2t_dask import compiled

        return compiled.warm()
    except Exception as exc:  # an optimisation only: the job compiles or falls back itself
        log.debug("warming the compiled kernels failed: %s", exc)
        return 0


if __name__ != "__main__":  # imported as the forkserver's preload (or by a test): warm this process
    import_dask_array_without_xarray()
    warm_imports()
    warm_compiled()
