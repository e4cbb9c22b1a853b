"""Where a batch runs: "a Client, an address, or nothing", and SLURM through dask-jobqueue.

:func:`resolve_client` mirrors ``distributed.Client(address)``: a :class:`distributed.Client` is
used as is; a scheduler address (``"tcp://host:8786"``) or a ``Cluster`` object is connected to;
``None`` reuses a client the user already made (notebooks) or starts a private
:class:`~distributed.LocalCluster`, closed at the end. Only what this function created is closed.

SLURM: :func:`slurm_cluster` builds a ``dask_jobqueue.SLURMCluster`` from a plain mapping (a YAML
file's content) — ``queue``, ``account``, ``cores``, ``processes``, ``memory``, ``walltime``,
``job_extra_directives``, ``job_script_prologue``, ``python``, ``local_directory``, plus
``jobs`` (how many SLURM jobs to ask for). Keys left out fall back to dask-jobqueue's own
configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__SLURM__*``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from z2t_dask.errors import ClusterError

__all__ = ["SLURM_KEYS", "ClusterError", "load_slurm_spec", "resolve_client", "slurm_cluster"]

SLURM_KEYS = (
    "queue",
    "account",
    "cores",
    "processes",
    "memory",
    "walltime",
    "job_extra_directives",
    "job_script_prologue",
    "python",
    "local_directory",
    "interface",
    "job_name",
    "jobs",
    "worker_extra_args",
    "death_timeout",
)


def load_slurm_spec(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read a SLURM spec (YAML/JSON path or mapping) and check its keys."""
    if isinstance(source, Mapping):
        spec = dict(source)
    else:
        import yaml

        p = Path(source)
        if not p.is_file():
            raise ClusterError(f"SLURM spec not found: {p}")
        spec = yaml.safe_load(p.read_text()) or {}
        if not isinstance(spec, dict):
            raise ClusterError(f"{p}: expected a mapping of SLURM settings")
    if "slurm" in spec and isinstance(spec["slurm"], Mapping):  # jobqueue.yaml style nesting
        spec = dict(spec["slurm"])
    spec = {k.replace("-", "_"): v for k, v in spec.items()}
    unknown = sorted(set(spec) - set(SLURM_KEYS))
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, SLURM_KEYS, 1, cutoff=0.45)
            hints.append(f"{k} (did you mean {close[0]}?)" if close else k)
        raise ClusterError(f"unknown SLURM setting(s): {', '.join(hints)}; known: {', '.join(SLURM_KEYS)}")
    return spec


def slurm_cluster(spec: str | os.PathLike | Mapping[str, Any], *, require_sbatch: bool = True):
    """A ``dask_jobqueue.SLURMCluster`` from a spec (see module doc). Not yet scaled."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the optional extra
        raise ClusterError("SLURM needs dask-jobqueue: pip install 'z2t-dask[slurm]'") from None
    spec = load_slurm_spec(spec)
    spec.pop("jobs", None)
    if require_sbatch and shutil.which("sbatch") is None:
        raise ClusterError("SLURM requested but 'sbatch' is not on PATH: run on a SLURM login node")
    return SLURMCluster(**spec)


@contextlib.contextmanager
def resolve_client(
    client: Any = None,
    *,
    max_workers: int | None = None,
    threads_per_worker: int = 1,
    dashboard: bool = False,
    slurm: Any = None,
    memory_limit: str | None = None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (see module doc); close only what was created here.

    Parameters
    ----------
    client
        A Client, a scheduler address, a Cluster object, or ``None``.
    max_workers
        Workers of a private LocalCluster (default: all cores).
    dashboard
        Start the Dask dashboard (needs bokeh) on a free port.
    slurm
        A SLURM spec (path or mapping): start a SLURMCluster and scale it to ``jobs`` (default 1).
    """
    from distributed import Client, LocalCluster, get_client

    owned: list[Any] = []
    try:
        if slurm is not None:
            spec = load_slurm_spec(slurm)
            cluster = slurm_cluster(spec)
            owned.append(cluster)
            cluster.scale(jobs=int(spec.get("jobs", 1)))
            c = Client(cluster, set_as_default=False)
            owned.append(c)
        elif isinstance(client, Client):
            c = client
        elif isinstance(client, str) or hasattr(client, "scheduler_address"):
            try:
                c = Client(client, set_as_default=False, timeout="10s")
            except OSError as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {client}: {exc}") from None
            owned.append(c)
        elif client is None:
            try:
                c = get_client()
            except ValueError:
                n = max_workers or os.cpu_count() or 1
                kwargs: dict[str, Any] = {
                    "n_workers": n,
                    "threads_per_worker": threads_per_worker,
                    "processes": True,
                    "dashboard_address": ":0" if dashboard else None,
                }
                if memory_limit:
                    kwargs["memory_limit"] = memory_limit
                if dashboard:
                    try:
                        import bokeh  # noqa: F401
                    except ImportError:
                        raise ClusterError("the dashboard needs bokeh: pip install 'z2t-dask[dashboard]'") from None
                cluster = LocalCluster(**kwargs)
                owned.append(cluster)
                c = Client(cluster, set_as_default=False)
                owned.append(c)
        else:
            raise TypeError(f"client must be a Client, an address, a Cluster or None, not {type(client).__name__}")
        yield c
    finally:
        for obj in reversed(owned):
            with contextlib.suppress(Exception):
                obj.close()
