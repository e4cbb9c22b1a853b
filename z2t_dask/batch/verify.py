"""Verify a finished dataset: ``z2t inspect --verify`` on a batch folder or a job's sample folder.

Every output of every finished job (state ``done`` or ``skipped`` in the manifest) is hashed again
and compared with the sha256 recorded in its job marker ``z2t_job.json`` when the job finished
(:mod:`z2t_dask.batch.checksums`); the manifest's copy of the record must agree with the marker.
A sample folder written by a batch job carries the same marker; one written by ``z2t simulate`` or
``Sample.save`` has none, so there is nothing to compare it with (reported as such).

The report (:func:`verify_folder`) is a JSON-able dict; ``ok`` is False when anything is damaged
(``z2t inspect --verify`` then exits with status 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from z2t_dask.batch.checksums import check_outputs
from z2t_dask.batch.jobs import JOB_MARKER, check_marker, read_marker
from z2t_dask.batch.manifest import has_manifest, ordered_jobs, read_manifest
from z2t_dask.errors import FormatError

__all__ = ["EXIT_DAMAGED", "format_verify", "report_verify", "verify_batch", "verify_folder", "verify_sample"]

#: Exit status of ``z2t inspect --verify`` when a file of a finished job differs from its recorded checksum.
EXIT_DAMAGED = 3


def _report(files: int, jobs: int, damaged: list[str], note: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"files_verified": files, "jobs_verified": jobs, "damaged": damaged, "ok": not damaged}
    if note:
        out["note"] = note
    return out


def verify_sample(folder: str | os.PathLike) -> dict[str, Any]:
    """Hash every output of a job's sample folder and compare with its marker ``z2t_job.json``."""
    p = Path(folder)
    try:
        marker = read_marker(p)
    except FormatError as exc:
        return _report(0, 0, [str(exc)])
    if marker is None:
        return _report(0, 0, [], f"no {JOB_MARKER}: no checksums were recorded for {p} (not written by a batch job)")
    outputs = marker.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return _report(0, 0, [f"{p / JOB_MARKER}: records no outputs"])
    return _report(len(outputs), 1, check_outputs(p, outputs, full=True))


def verify_batch(folder: str | os.PathLike) -> dict[str, Any]:
    """Hash every output of every finished job of a batch folder and compare with the recorded checksums.

    Raises
    ------
    FileNotFoundError
        No manifest (store or ``manifest.json``) in ``folder``.
    FormatError
        An unreadable manifest (names the file).
    """
    out = Path(folder)
    manifest = read_manifest(out)
    files = jobs = 0
    damaged: list[str] = []
    for name, entry in ordered_jobs(manifest):
        if entry.get("state") not in ("done", "skipped"):
            continue
        jobs += 1
        job_dir = out / name
        marker, problems = check_marker(job_dir, str(entry.get("key")), full=True)
        if marker is None:
            damaged.append(
                f"{job_dir / JOB_MARKER}: missing, unreadable or not job {name}'s marker (key {entry.get('key')})"
            )
            continue
        recorded = marker.get("outputs") or {}
        files += len(recorded)
        damaged.extend(problems)
        listed = entry.get("outputs") or {}
        for rel in sorted(set(listed) | set(recorded)):
            a, b = listed.get(rel) or {}, recorded.get(rel) or {}
            if a.get("sha256") != b.get("sha256"):
                damaged.append(f"{job_dir / rel}: the manifest and {JOB_MARKER} record different checksums")
    return _report(files, jobs, damaged)


def verify_folder(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`verify_batch` for a batch folder (a manifest store or ``manifest.json``), else :func:`verify_sample`."""
    p = Path(path)
    if has_manifest(p):
        return verify_batch(p)
    if p.is_dir() and (p / "batch_status.json").is_file():
        return _report(0, 0, [], "no manifest.json (the original tool's batch_status.json): no checksums recorded")
    return verify_sample(p)


def format_verify(report: dict[str, Any]) -> str:
    """The human text of a :func:`verify_folder` report."""
    if report["ok"] and not report["files_verified"]:
        return f"verify: nothing verified: {report.get('note') or 'no finished jobs'}"
    head = f"verify: {report['files_verified']} files of {report['jobs_verified']} finished jobs hashed (sha256): " + (
        "all match their recorded checksums" if report["ok"] else f"{len(report['damaged'])} damaged"
    )
    lines = [head] + [f"  DAMAGED {d}" for d in report["damaged"]]
    if report.get("note"):
        lines.append(f"  {report['note']}")
    return "\n".join(lines)


def report_verify(report: dict[str, Any], path: str | os.PathLike, *, as_json: bool = False) -> int:
    """Print a :func:`verify_folder` report for ``z2t inspect --verify``; its exit status (0, or 3 if damaged).

    The text goes to stdout (unless ``as_json``: the JSON summary carries the report), one line
    counting the damaged files to stderr.
    """
    import sys

    if not as_json:
        print(format_verify(report))
    if report["ok"]:
        return 0
    print(f"z2t inspect: {len(report['damaged'])} damaged file(s) in {path}", file=sys.stderr)
    return EXIT_DAMAGED
