"""The manifest's files: the store's format, its readers and the JSON exports (see :mod:`z2t_dask.batch.manifest`)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.errors import FormatError

__all__ = [
    "MANIFEST",
    "STATUS",
    "STORE",
    "export_manifest",
    "has_manifest",
    "ordered_jobs",
    "read_manifest",
    "read_status",
]

log = logging.getLogger("z2t_dask.batch")

#: File name of the manifest's JSON export in a batch output folder.
MANIFEST = "manifest.json"
#: File name of the original tool's status file, written beside the manifest.
STATUS = "batch_status.json"
#: File name of the manifest store (SQLite) in a batch output folder.
STORE = "manifest.sqlite"
#: Rows written in one transaction by a bulk update (:meth:`Manifest.bulk`).
_BULK_ROWS = 2000

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    done_seq INTEGER,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_index ON jobs (idx, name);
"""


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


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit ``BEGIN`` for transactions); read-only never creates."""
    if readonly:
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=60, isolation_level=None)
    else:
        con = sqlite3.connect(path, timeout=60, isolation_level=None)
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory: a rollback journal
            log.warning("manifest store %s: no write-ahead log on this filesystem (journal mode %s)", path, mode)
            con.execute("PRAGMA synchronous=FULL")
        else:
            con.execute("PRAGMA synchronous=NORMAL")
    return con


def _entry(state: str, text: str) -> dict[str, Any]:
    e = json.loads(text)
    e["state"] = state
    return e


def _meta(con: sqlite3.Connection) -> dict[str, Any]:
    return {name: json.loads(value) for name, value in con.execute("SELECT name, value FROM meta")}


def _damaged(path: Path, exc: Exception) -> FormatError:
    return FormatError(f"{path}: unreadable batch manifest store (damaged, or not an SQLite database): {exc}")


def _read_store(path: Path) -> dict[str, Any]:
    """The manifest document of a store (one consistent snapshot, even while a batch writes it)."""
    try:
        con = _connect(path, readonly=True)
        try:
            con.execute("BEGIN")
            meta = _meta(con)
            jobs = {
                n: _entry(s, e) for n, s, e in con.execute("SELECT name, state, entry FROM jobs ORDER BY idx, name")
            }
            con.execute("COMMIT")
        finally:
            con.close()
    except (sqlite3.Error, ValueError) as exc:
        raise _damaged(path, exc) from None
    doc: dict[str, Any] = {
        "schema": meta.get("schema"),
        "batch": meta.get("batch", {}),
        "jobs": jobs,
        "runs": meta.get("runs", []),
    }
    if "updated" in meta:
        doc["updated"] = meta["updated"]
    return doc


def has_manifest(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a batch folder of this package (a manifest store or ``manifest.json``)."""
    p = Path(folder)
    return (p / STORE).is_file() or (p / MANIFEST).is_file()


def read_manifest(folder_or_path: str | os.PathLike) -> dict[str, Any]:
    """Parse a batch manifest: the store of a batch folder (the live state), else its ``manifest.json``.

    Parameters
    ----------
    folder_or_path
        A batch output folder (its ``manifest.sqlite``, or without one its ``manifest.json``), the
        store itself, or a ``manifest.json`` file (read as it is).

    Returns
    -------
    dict
        The document (see the module docstring); ``jobs`` is a mapping of job folder -> entry.

    Raises
    ------
    FileNotFoundError
        If there is no manifest.
    FormatError
        If the file is not a JSON object with a ``jobs`` mapping (e.g. truncated) or a damaged
        store; the message names the file.
    """
    p = Path(folder_or_path)
    if p.is_dir() and (p / STORE).is_file():
        return _read_store(p / STORE)
    if p.name == STORE and p.is_file():
        return _read_store(p)
    path = _file(p, MANIFEST)
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


def _write_json_export(con: sqlite3.Connection, path: Path, meta: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` from the store, streamed job by job (constant memory).

    The bytes are those of ``json.dumps(document, indent=1, sort_keys=True)`` (the format written
    before the store existed; :func:`_dump` is its encoder for the values a store holds, ~3x faster).
    """
    from z2t_dask.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        parts: list[str] = ["{\n", ' "batch": ']
        _dump(meta.get("batch") or {}, 1, parts)
        parts.append(",\n")
        f.write("".join(parts))
        first = True
        for name, state, text in con.execute("SELECT name, state, entry FROM jobs ORDER BY name"):
            parts = [' "jobs": {\n  ' if first else ",\n  ", _ESC(name), ": "]
            _dump(_entry(state, text), 2, parts)
            f.write("".join(parts))
            first = False
        parts = [' "jobs": {},\n' if first else "\n },\n", ' "runs": ']
        _dump(meta.get("runs") or [], 1, parts)
        parts += [",\n", ' "schema": ', json.dumps(meta.get("schema"))]
        if meta.get("updated") is not None:
            parts += [",\n", ' "updated": ', json.dumps(meta.get("updated"))]
        parts.append("\n}")
        f.write("".join(parts))


_ESC = json.encoder.encode_basestring_ascii


def _dump(v: Any, depth: int, out: list[str]) -> None:
    """Append the text of ``json.dumps(v, indent=1, sort_keys=True, default=str)`` nested ``depth`` levels deep."""
    if isinstance(v, str):
        out.append(_ESC(v))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        out.append(json.dumps(v))
    elif isinstance(v, dict | list | tuple):
        if not v:
            out.append("{}" if isinstance(v, dict) else "[]")
            return
        pad = "\n" + " " * (depth + 1)
        out.append("{" if isinstance(v, dict) else "[")
        if isinstance(v, dict):
            for i, k in enumerate(sorted(v)):
                out += [pad if i == 0 else "," + pad, _ESC(str(k)), ": "]
                _dump(v[k], depth + 1, out)
        else:
            for i, x in enumerate(v):
                out.append(pad if i == 0 else "," + pad)
                _dump(x, depth + 1, out)
        out.append("\n" + " " * depth + ("}" if isinstance(v, dict) else "]"))
    else:
        out.append(_ESC(str(v)))


def _status(con: sqlite3.Connection, session_seq: int, start_time: float | None) -> dict[str, Any]:
    """The original tool's ``batch_status.json`` document: this run's completions first, in order."""
    recent = [
        n
        for (n,) in con.execute(
            "SELECT name FROM jobs WHERE state IN ('done', 'skipped') AND done_seq >= ? ORDER BY done_seq",
            (session_seq,),
        )
    ]
    earlier = [
        n
        for (n,) in con.execute(
            "SELECT name FROM jobs WHERE state IN ('done', 'skipped') AND (done_seq IS NULL OR done_seq < ?) "
            "ORDER BY name",
            (session_seq,),
        )
    ]
    failed = []
    for name, text in con.execute("SELECT name, entry FROM jobs WHERE state = 'failed' ORDER BY name"):
        j = json.loads(text)
        err = (j.get("error") or "").strip().splitlines()
        failed.append({"job_id": name, "error": err[-1] if err else "", "timestamp": j.get("finished")})
    return {
        "completed_jobs": recent + earlier,
        "failed_jobs": failed,
        "start_time": start_time,
        "last_update": time.time(),
    }


def export_manifest(folder: str | os.PathLike) -> Path:
    """Write ``manifest.json`` and ``batch_status.json`` of a batch folder from its store (on demand).

    Safe while a batch runs (a consistent snapshot; both files are replaced atomically).

    Returns
    -------
    Path
        The ``manifest.json`` written.

    Raises
    ------
    FileNotFoundError
        No manifest store in ``folder``.
    FormatError
        A damaged store (names the file).
    """
    out = Path(folder)
    store = out / STORE
    if not store.is_file():
        raise FileNotFoundError(f"no batch manifest store {store}")
    try:
        con = _connect(store, readonly=True)
        try:
            con.execute("BEGIN")
            meta = _meta(con)
            _write_json_export(con, out / MANIFEST, meta)
            status = _status(con, int(meta.get("session_seq", 0)), meta.get("session_start"))
            con.execute("COMMIT")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise _damaged(store, exc) from None
    _write_status(out / STATUS, status)
    return out / MANIFEST


def _write_status(path: Path, status: Mapping[str, Any]) -> None:
    from z2t_dask.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(status, indent=2))
