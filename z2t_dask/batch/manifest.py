"""The batch manifest ``manifest.json``: the only module that reads or writes it.

The client process (:func:`z2t_dask.batch.run_batch`) owns the manifest of a batch output folder
and rewrites it atomically after every finished job (:class:`Manifest`); workers never touch it.
Its document is a JSON object::

    {"schema": 1,                      # SCHEMA_VERSION of z2t_dask.batch.spec
     "batch": {"description", "source", "seed", "retries"},
     "jobs": {"<job folder>": {"key", "seed", "params", "index", "state", "attempts", "outputs",
                               "seconds" (s), "submitted"/"finished" (Unix time, s), "error",
                               "traceback", "host", "records", "frames"}},
     "runs": [{"started", "finished" (Unix time, s), "jobs", "to_run"}],
     "updated": <Unix time, s>}

A job's ``state`` is one of ``pending``, ``running``, ``done``, ``skipped`` (done in an earlier
run), ``failed``, ``interrupted`` or ``not-in-batch`` (no longer part of the batch config).
Beside it, the original tool's ``batch_status.json`` (``completed_jobs``, ``failed_jobs``,
``start_time``, ``last_update``) is written for existing scripts.

Readers (``z2t inspect``, ``z2t preview``) use :func:`read_manifest` / :func:`read_status`, which
name the file in their error on a malformed or truncated document.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from z2t_dask.errors import FormatError

if TYPE_CHECKING:
    from z2t_dask.batch.spec import BatchSpec

__all__ = ["MANIFEST", "STATUS", "Manifest", "ordered_jobs", "read_manifest", "read_status"]

log = logging.getLogger("z2t_dask.batch")

#: File name of the manifest in a batch output folder.
MANIFEST = "manifest.json"
#: File name of the original tool's status file, written beside the manifest.
STATUS = "batch_status.json"


def _file(folder_or_path: str | os.PathLike, name: str) -> Path:
    p = Path(folder_or_path)
    return p / name if p.is_dir() or p.suffix.lower() != ".json" else p


def _read_object(path: Path, what: str) -> dict[str, Any]:
    """Parse ``path`` as a JSON object; FormatError naming the file when it is not one."""
    text = path.read_text("utf-8")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"{path}: unreadable {what} (malformed or truncated JSON): {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: unreadable {what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def read_manifest(folder_or_path: str | os.PathLike) -> dict[str, Any]:
    """Parse a batch manifest.

    Parameters
    ----------
    folder_or_path
        A batch output folder (its ``manifest.json`` is read) or the manifest file itself.

    Returns
    -------
    dict
        The document (see the module docstring); ``jobs`` is a mapping of job folder -> entry.

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    FormatError
        If the file is not a JSON object with a ``jobs`` mapping (e.g. truncated); the message
        names the file.
    """
    path = _file(folder_or_path, MANIFEST)
    doc = _read_object(path, "batch manifest")
    if not isinstance(doc.get("jobs", {}), dict):
        raise FormatError(
            f"{path}: unreadable batch manifest: 'jobs' must be a mapping of job folder -> entry, "
            f"got {type(doc['jobs']).__name__}"
        )
    return doc


def read_status(folder_or_path: str | os.PathLike) -> dict[str, Any]:
    """Parse the original tool's ``batch_status.json`` (a batch folder or the file itself).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    FormatError
        If it is not a JSON object; the message names the file.
    """
    return _read_object(_file(folder_or_path, STATUS), "batch status file")


def ordered_jobs(manifest: dict[str, Any]) -> list[tuple[str, dict]]:
    """The ``(folder, entry)`` pairs of a manifest's jobs in batch order (``index``, then name)."""
    return sorted(manifest.get("jobs", {}).items(), key=lambda kv: (kv[1].get("index", 0), kv[0]))


class Manifest:
    """The client-owned manifest (``manifest.json``) and the original ``batch_status.json``.

    Parameters
    ----------
    out
        The batch output folder.
    spec
        The batch (its description, source, seed and retries are recorded).
    resume
        Start from the manifest already in ``out`` (when it has this schema); otherwise, or when
        it is unreadable (a warning is logged), start a new one.
    """

    def __init__(self, out: Path, spec: BatchSpec, resume: bool):
        from z2t_dask.batch.spec import SCHEMA_VERSION

        self.out = out
        self.path = out / MANIFEST
        self.data: dict[str, Any] = {"schema": SCHEMA_VERSION, "jobs": {}, "runs": []}
        if resume and self.path.exists():
            try:
                loaded = read_manifest(self.path)
                if loaded.get("schema") == SCHEMA_VERSION:
                    self.data = loaded
            except ValueError:
                log.warning("manifest %s unreadable; starting a new one", self.path)
        self.data["batch"] = {
            "description": spec.description,
            "source": spec.source,
            "seed": spec.seed,
            "retries": spec.retries,
        }
        self.completed_order: list[str] = []
        self.session_start = time.time()

    @property
    def jobs(self) -> dict[str, dict]:
        """Job folder -> manifest entry (a live view: change it, then :meth:`write`)."""
        return self.data["jobs"]

    def write(self) -> None:
        """Write ``manifest.json`` and ``batch_status.json`` atomically."""
        from z2t_dask.io.atomic import atomic_path

        self.data["updated"] = time.time()
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(self.data, indent=1, sort_keys=True, default=str))
        status = {
            "completed_jobs": self.completed_order
            + sorted(
                n for n, j in self.jobs.items() if j["state"] in ("done", "skipped") and n not in self.completed_order
            ),
            "failed_jobs": [
                {
                    "job_id": n,
                    "error": (j.get("error") or "").strip().splitlines()[-1:][0] if j.get("error") else "",
                    "timestamp": j.get("finished"),
                }
                for n, j in sorted(self.jobs.items())
                if j["state"] == "failed"
            ],
            "start_time": self.session_start,
            "last_update": time.time(),
        }
        with atomic_path(self.out / STATUS) as tmp:
            Path(tmp).write_text(json.dumps(status, indent=2))
