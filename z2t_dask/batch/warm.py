"""Worker warm-up: what a job loads on its first run, loaded once per cluster instead of once per worker.

A job imports the sample, engine, physics and io layers and their libraries (Dask arrays,
SciPy's interpolation, tifffile, h5py): about 2.5 s of CPU on this project's 2-core reference
machine (1.5 s after ``distributed``), paid by every worker on its first job. Its first run also
loads the batch's fast PSF library (from the on-disk cache, or builds it), the compiled kernels
(numba's import and cache loads) and the modules only a run imports (the writers' codecs): about
1 s more per worker. The private :class:`~distributed.LocalCluster` of a batch
(:func:`~z2t_dask.batch.cluster.resolve_client`) therefore starts its workers from a
*forkserver* that does all of it once (this module is its preload,
:data:`z2t_dask.batch.cluster.FORKSERVER_PRELOAD`): each worker is forked with it done.

Importing this module as that preload (:func:`warm_process`; the forkserver is started with
:data:`~z2t_dask.batch.forkserver.WARM_JOB_ENV` in its environment):

1. imports :data:`WARM_MODULES` (:func:`warm_imports`; ``dask.array`` without xarray,
   :func:`import_dask_array_without_xarray`);
2. warms the compiled kernels (:func:`warm_compiled_kernels`);
3. runs a miniature of the batch's first job (:func:`miniature`, :func:`warm_job`; a server
   started before the job was known reads it from the file the variable names, waiting for it at
   most :data:`WARM_WAIT_S` seconds and only while its parent process lives): its first
   :data:`WARM_FRAMES` frames' worth of emitters, written to a temporary folder that is then
   removed): its PSF library, Zmap, camera tables and lazily imported modules stay in this
   process's memory and are inherited by every worker (the same objects a worker's first job
   would load: same keys, same bytes);
4. freezes this process's heap (:func:`freeze_heap`, :func:`gc.freeze`): the
   workers' garbage collections skip the inherited objects (no copy-on-write of their pages, no
   time spent on them) and the forkserver exits in milliseconds instead of tearing down its heap.

Imported any other way (a test), only step 1 runs. Nothing here raises: a module that fails to
import, or a warm-up job that fails, is left to the job that needs it, which reports the real
error, so a failing warm-up never breaks a batch. The warm-up draws no random numbers from any
stream a sample uses and sets no state that reaches a sample's bytes (``tests/test_batch_warm.py``
compares the bytes).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from z2t_dask.batch.forkserver import WARM_JOB_ENV

__all__ = [
    "WARM_FRAMES",
    "WARM_MODULES",
    "WARM_WAIT_S",
    "freeze_heap",
    "import_dask_array_without_xarray",
    "miniature",
    "warm_compiled_kernels",
    "warm_imports",
    "warm_job",
    "warm_process",
]

log = logging.getLogger("z2t_dask.batch")

#: What a job imports lazily, beyond what a Dask worker has (measured: ``sys.modules`` before and
#: after one job in a fresh worker). Order matters only for speed. SciPy's scattered-data
#: interpolation (``scipy.interpolate``, ``scipy.spatial``: ~0.2-0.4 s) is left to the warm-up job:
#: only a Zmap with bead magnitudes needs it (:data:`z2t_dask.physics.zmap.MAG_ZERO`).
WARM_MODULES = (
    "numpy",
    "dask.array",
    "scipy.ndimage",
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

#: Frames of the warm-up job (:func:`miniature`); its emitters are scaled down with them.
WARM_FRAMES = 2
#: The longest wait (s) of an early forkserver for its warm-up job (it stops waiting when its parent exits).
WARM_WAIT_S = 120.0


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


def warm_compiled_kernels() -> int:
    """Load the package's compiled kernels into this process (numba's import and cache loads); how many.

    The hook for :mod:`z2t_dask.compiled` (optional numba kernels): its ``warm()`` compiles, or
    loads from numba's cache, every kernel imported so far, for the argument types a job uses.
    0 when the module or numba is missing or disabled. Never raises.
    """
    try:
        compiled = importlib.import_module("z2t_dask.compiled")
        return int(compiled.warm())
    except Exception as exc:  # an optimisation only: the job compiles, or uses NumPy, itself
        log.debug("warming the compiled kernels failed: %s", exc)
        return 0


def miniature(job: Mapping[str, Any], frames: int = WARM_FRAMES) -> dict[str, Any] | None:
    """The warm-up version of a job: the same config with ``frames`` frames and as many emitters per frame.

    Everything a PSF library, a Zmap or a camera table depends on is kept (the ROI, optics, PSF
    and camera settings, the Zmap), so the warm-up loads the objects the job itself uses; only
    the movie is shorter. The folder name is ``"warm"``.

    Parameters
    ----------
    job : mapping
        A job (:meth:`~z2t_dask.batch.spec.Job.to_dict`).
    frames : int
        Frames of the miniature (at most the job's).

    Returns
    -------
    dict or None
        The miniature job, or None when the job has no ``emitters.frames`` and ``num_emitters``
        to scale (the warm-up is then skipped rather than running a job of unknown size).
    """
    try:
        config = copy.deepcopy(dict(job["config"]))
        e = config["emitters"]
        total, n = int(e["frames"]), int(e["num_emitters"])
    except (KeyError, TypeError, ValueError):
        return None
    if total < 1:
        return None
    keep = max(1, min(int(frames), total))
    e["frames"] = keep
    e["num_emitters"] = max(1, n * keep // total) if n > 0 else 0
    return {**dict(job), "config": config, "name": "warm"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings and no log records for the ``with`` block (a warm-up speaks only through its job)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def warm_job(job: Mapping[str, Any] | None) -> bool:
    """Run the :func:`miniature` of ``job`` in a temporary folder (then removed); whether it ran to the end.

    What it loads (PSF library, Zmap, camera tables, kernels, modules) stays in this process's
    caches under the keys the job itself uses. Never raises; warnings and log records are
    silenced (the real job meets them).
    """
    mini = miniature(job) if job is not None else None
    if mini is None:
        return False
    from z2t_dask.batch.jobs import run_job

    root = tempfile.mkdtemp(prefix="z2t-warm-")
    try:
        with _quiet():
            run_job(mini, root)
        return True
    except Exception as exc:  # the job meets it again and reports it
        log.debug("warm-up job failed: %s: %s", type(exc).__name__, exc)
        return False
    finally:
        shutil.rmtree(root, ignore_errors=True)


def freeze_heap() -> None:
    """Move every object of this process to the permanent generation (:func:`gc.freeze`).

    Called last in a forkserver: its forked workers' garbage collections never traverse (nor
    write to) the objects they inherit, and the forkserver's own exit skips them. No collection
    first (0.1 s of the start's critical path): what little garbage the imports left stays.
    """
    gc.freeze()


def _parse_job(text: str) -> dict[str, Any] | None:
    """The job of a :data:`WARM_JOB_ENV` value or job file (None: empty, malformed or not an object)."""
    try:
        job = json.loads(text) if text else None
    except ValueError:
        return None
    return job if isinstance(job, dict) else None


def _wait_for_job(path: str, parent: int, timeout: float = WARM_WAIT_S) -> dict[str, Any] | None:
    """The job in the file ``path`` once it exists (then removed); None once ``parent`` is not this
    process's parent (it exited) or after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            if os.getppid() != parent or time.monotonic() > end:
                return None
            time.sleep(0.005)
            continue
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.unlink(path)
        return _parse_job(text)


def warm_process() -> None:
    """Warm this process for jobs (see the module docstring): imports; as a batch's forkserver, the rest."""
    raw = os.environ.pop(WARM_JOB_ENV, None)  # set for a batch's forkserver only; its workers do not see it
    import_dask_array_without_xarray()
    warm_imports()
    if raw is None:
        return
    warm_compiled_kernels()
    if raw.startswith("@"):  # "@<pid>:<path>": the parent writes the job to the file
        pid, _, path = raw[1:].partition(":")
        warm_job(_wait_for_job(path, int(pid)) if pid.isdigit() and path else None)
    else:
        warm_job(_parse_job(raw))
    freeze_heap()


if __name__ != "__main__":  # imported as the forkserver's preload (or by a test): warm this process
    warm_process()
