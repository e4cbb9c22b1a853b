"""A batch folder on disk: :func:`folder_sizes` in one walk, and :func:`batch_summary` (``z2t inspect``).

Asking every job folder for its size (``rglob`` per folder, then again for the whole batch) costs
several filesystem passes per job; :func:`folder_sizes` walks the batch folder once with
``os.scandir`` and returns the bytes under every folder, so a job folder's size (and whether it
exists) is a lookup, for the flat layout, grid sub-folders and shard folders alike.
:func:`batch_summary` is ``z2t inspect`` of a batch folder: every job's state from the manifest
(the store while a batch runs, else ``manifest.json``, else the original ``batch_status.json``)
with its folder's size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from z2t_dask.errors import FormatError, InspectError

__all__ = ["batch_summary", "folder_sizes"]


def folder_sizes(root: str | os.PathLike) -> dict[str, int]:
    """Bytes of the files under every folder of ``root``, keyed by path relative to it (``""``: root itself).

    Symbolic links to folders are not followed (a file link counts its target's size); folders
    that cannot be read count what could be.
    """
    top = str(Path(root))
    sizes: dict[str, int] = {}

    def walk(path: str, rel: str) -> int:
        total = 0
        try:
            entries = list(os.scandir(path))
        except OSError:
            entries = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    total += walk(e.path, f"{rel}/{e.name}" if rel else e.name)
                elif e.is_file():
                    total += e.stat().st_size
            except OSError:
                continue
        sizes[rel] = total
        return total

    walk(top, "")
    return sizes


def batch_summary(p: Path) -> dict[str, Any]:
    """The JSON-able summary of a batch folder (``kind``, ``batch``, ``runs``, ``jobs``, ``states``, ``bytes``).

    Raises
    ------
    InspectError
        An unreadable manifest or status file (names the file).
    """
    from z2t_dask.batch.manifest import has_manifest, ordered_jobs, read_manifest, read_status

    info: dict[str, Any] = {"kind": "batch", "path": str(p)}
    jobs: dict[str, dict] = {}
    sizes = folder_sizes(p)  # one walk of the batch folder, not one per job
    if has_manifest(p):  # the store (the live state) or, in a folder without one, manifest.json
        try:
            m = read_manifest(p)
        except FormatError as exc:
            raise InspectError(str(exc)) from None
        info["batch"] = m.get("batch", {})
        info["runs"] = len(m.get("runs", []))
        for name, j in ordered_jobs(m):
            err = (j.get("error") or "").strip().splitlines()
            jobs[name] = {
                "state": j.get("state"),
                "attempts": j.get("attempts"),
                "seconds": j.get("seconds"),
                "seed": j.get("seed"),
                "key": j.get("key"),
                "params": j.get("params"),
                "frames": j.get("frames"),
                "records": j.get("records"),
                "error": err[-1] if err else None,
                "folder_exists": name in sizes,
                "bytes": sizes.get(name, 0),
            }
    else:  # the original tool's batch_status.json
        try:
            st = read_status(p)
        except FormatError as exc:
            raise InspectError(str(exc)) from None
        info["note"] = "no manifest.json: the original tool's batch_status.json"
        for name in sorted(set(st.get("completed_jobs", []))):
            jobs[name] = {"state": "done", "folder_exists": (p / name).is_dir()}
        for f in st.get("failed_jobs", []):
            jobs.setdefault(
                f.get("job_id"),
                {"state": "failed", "error": f.get("error"), "folder_exists": (p / str(f.get("job_id"))).is_dir()},
            )
    counts: dict[str, int] = {}
    for j in jobs.values():
        counts[j["state"]] = counts.get(j["state"], 0) + 1
    info.update({"jobs_total": len(jobs), "states": counts, "jobs": jobs, "bytes": sizes.get("", 0)})
    return info
