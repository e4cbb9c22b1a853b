"""The writer of a batch folder's manifest store: :class:`Manifest` (see :mod:`z2t_dask.batch.manifest`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from z2t_dask.batch.manifest.files import (
    _BULK_ROWS,
    _SCHEMA_SQL,
    MANIFEST,
    STATUS,
    STORE,
    _connect,
    _entry,
    _meta,
    _status,
    _write_json_export,
    _write_status,
    ordered_jobs,
    read_manifest,
)

if TYPE_CHECKING:
    from z2t_dask.batch.spec import BatchSpec

__all__ = ["Manifest"]

log = logging.getLogger("z2t_dask.batch")


class _JobsView(MutableMapping[str, dict]):
    """Job folder -> manifest entry, backed by the store: entries read are copies; assign to change one."""

    def __init__(self, manifest: Manifest):
        self._m = manifest

    def __getitem__(self, name: str) -> dict:
        e = self._m.get(name)
        if e is None:
            raise KeyError(name)
        return e

    def __setitem__(self, name: str, entry: dict) -> None:
        self._m.put(name, entry)

    def __delitem__(self, name: str) -> None:
        if self._m.get(name) is None:
            raise KeyError(name)
        self._m._exec("DELETE FROM jobs WHERE name = ?", (name,))

    def __iter__(self) -> Iterator[str]:
        return self._m.names()

    def __len__(self) -> int:
        return self._m.count()

    def items(self):  # one query, not one per job
        return list(self._m.entries())


class Manifest:
    """The client-owned manifest store (``manifest.sqlite``) and its exports.

    Parameters
    ----------
    out
        The batch output folder.
    spec
        The batch (its description, source, seed and retries are recorded).
    resume
        Keep the jobs already recorded in ``out``: its store, or (first resume of a folder written
        before the store existed) its ``manifest.json``, imported into a new store. A damaged
        store is moved aside (``manifest.sqlite.damaged-<time>``, a warning) and the folder's
        ``manifest.json`` used instead; an unreadable ``manifest.json`` (a warning) or one of
        another schema starts an empty manifest. ``resume=False`` forgets every recorded job.

    Notes
    -----
    Every change is committed when it is made (one transaction), except inside :meth:`bulk`,
    which commits every few thousand rows. Entries read are copies: change one with
    :meth:`put`, :meth:`update` or :meth:`set_state`.
    """

    def __init__(self, out: Path, spec: BatchSpec, resume: bool):
        from z2t_dask.batch.spec import SCHEMA_VERSION

        self.out = Path(out)
        self.path = self.out / MANIFEST
        self.store = self.out / STORE
        self._bulk = 0
        self.created = not self.store.exists()
        self._con = self._open(resume, SCHEMA_VERSION)
        self.session_start = time.time()
        row = self._con.execute("SELECT MAX(done_seq) FROM jobs").fetchone()
        self._seq = self.session_seq = int(row[0] or 0) + 1
        self._set_meta(
            batch={"description": spec.description, "source": spec.source, "seed": spec.seed, "retries": spec.retries},
            session_seq=self.session_seq,
            session_start=self.session_start,
        )

    # ---- opening, migration ------------------------------------------------------------------

    def _open(self, resume: bool, schema: int) -> sqlite3.Connection:
        if self.store.exists() and resume:
            con: sqlite3.Connection | None = None
            try:
                con = _connect(self.store, readonly=False)
                con.executescript(_SCHEMA_SQL)
                meta = _meta(con)
            except (sqlite3.Error, ValueError) as exc:
                aside = self.store.with_name(f"{STORE}.damaged-{int(time.time())}")
                log.warning(
                    "manifest store %s unreadable (%s); moved to %s, starting from %s", self.store, exc, aside, MANIFEST
                )
                if con is not None:
                    with contextlib.suppress(sqlite3.Error):
                        con.close()
                for suffix in ("", "-wal", "-shm"):
                    src = Path(str(self.store) + suffix)
                    if src.exists():
                        os.replace(src, Path(str(aside) + suffix))
            else:
                if meta.get("schema") == schema:
                    return con
                if "schema" in meta:
                    log.warning(
                        "manifest store %s has schema %s, not %s: starting a new one",
                        self.store,
                        meta.get("schema"),
                        schema,
                    )
                self._clear(con)
                self._migrate(con, schema)
                return con
        con = _connect(self.store, readonly=False)
        con.executescript(_SCHEMA_SQL)
        self._clear(con)
        if resume:
            self._migrate(con, schema)
        else:
            self._init(con, schema, [])
        return con

    @staticmethod
    def _clear(con: sqlite3.Connection) -> None:
        con.execute("BEGIN")
        con.execute("DELETE FROM jobs")
        con.execute("DELETE FROM meta")
        con.execute("COMMIT")

    @staticmethod
    def _init(con: sqlite3.Connection, schema: int, runs: list) -> None:
        con.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [("schema", json.dumps(schema)), ("runs", json.dumps(runs))]
        )

    def _migrate(self, con: sqlite3.Connection, schema: int) -> None:
        """Import ``manifest.json`` (a folder written before the store existed) in one transaction."""
        doc: dict[str, Any] | None = None
        if self.path.exists():
            try:
                doc = read_manifest(self.path)
            except ValueError:
                log.warning("manifest %s unreadable; starting a new one", self.path)
        if doc is not None and doc.get("schema") != schema:
            log.warning("manifest %s has schema %s, not %s: starting a new one", self.path, doc.get("schema"), schema)
            doc = None
        con.execute("BEGIN")
        if doc is not None:
            con.executemany(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?)",
                (self._row(name, e, None) for name, e in ordered_jobs(doc) if isinstance(e, dict)),
            )
            con.execute("UPDATE jobs SET done_seq = idx WHERE state IN ('done', 'skipped')")
            log.info("manifest %s: %d jobs imported into the store %s", self.path, len(doc["jobs"]), self.store)
        self._init(con, schema, list((doc or {}).get("runs") or []))
        con.execute("COMMIT")

    # ---- rows ------------------------------------------------------------------------------

    @staticmethod
    def _row(name: str, entry: Mapping[str, Any], seq: int | None) -> tuple:
        body = {k: v for k, v in entry.items() if k != "state"}
        return (
            name,
            int(entry.get("index") or 0),
            str(entry.get("state", "pending")),
            seq,
            json.dumps(body, default=str),
        )

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        cur = self._con.execute(sql, args)
        if self._bulk:
            self._bulk += 1
            if self._bulk > _BULK_ROWS:
                self._con.execute("COMMIT")
                self._con.execute("BEGIN")
                self._bulk = 1
        return cur

    def _set_meta(self, **values: Any) -> None:
        self._con.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v, default=str)) for k, v in values.items()]
        )

    @contextlib.contextmanager
    def bulk(self) -> Iterator[Manifest]:
        """Group many changes into few transactions (committed every few thousand rows and at the end)."""
        if self._bulk:
            yield self
            return
        self._con.execute("BEGIN")
        self._bulk = 1
        try:
            yield self
        except BaseException:
            self._bulk = 0
            self._con.execute("COMMIT")  # what was planned so far stays valid: the rerun plans the rest
            raise
        self._bulk = 0
        self._con.execute("COMMIT")

    # ---- jobs ------------------------------------------------------------------------------

    @property
    def jobs(self) -> _JobsView:
        """Job folder -> manifest entry (a mapping backed by the store; entries read are copies)."""
        return _JobsView(self)

    def get(self, name: str) -> dict | None:
        """The entry of job ``name`` (a copy), or None."""
        row = self._con.execute("SELECT state, entry FROM jobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else _entry(*row)

    def put(self, name: str, entry: Mapping[str, Any]) -> None:
        """Record job ``name``'s entry (replacing any); a ``done`` one is numbered in completion order."""
        seq = None
        if entry.get("state") == "done":
            seq, self._seq = self._seq, self._seq + 1
        self._exec(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET idx = excluded.idx, "
            "state = excluded.state, entry = excluded.entry, done_seq = COALESCE(excluded.done_seq, jobs.done_seq)",
            self._row(name, entry, seq),
        )

    def update(self, name: str, fields: Mapping[str, Any]) -> dict:
        """Change some fields of job ``name``'s entry (one transaction); return the new entry."""
        entry = {**(self.get(name) or {}), **fields}
        self.put(name, entry)
        return entry

    def set_state(self, name: str, state: str) -> None:
        """Change only the state of job ``name``."""
        self._exec("UPDATE jobs SET state = ? WHERE name = ?", (state, name))

    def names(self) -> Iterator[str]:
        """The recorded job folders in batch order."""
        return (n for (n,) in self._con.execute("SELECT name FROM jobs ORDER BY idx, name").fetchall())

    def entries(self) -> Iterator[tuple[str, dict]]:
        """``(folder, entry)`` of every recorded job in batch order."""
        rows = self._con.execute("SELECT name, state, entry FROM jobs ORDER BY idx, name")
        return ((n, _entry(s, e)) for n, s, e in rows)

    def count(self, state: str | None = None) -> int:
        """The number of recorded jobs (in ``state``, if given)."""
        if state is None:
            return int(self._con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        return int(self._con.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0])

    def brief(self) -> dict[str, tuple[str, str | None]]:
        """Job folder -> (state, key) of every recorded job, in one query (what planning a run needs)."""
        try:
            rows = self._con.execute("SELECT name, state, json_extract(entry, '$.key') FROM jobs")
            return {n: (s, k) for n, s, k in rows}
        except sqlite3.OperationalError:  # an SQLite without its JSON functions
            return {
                n: (s, json.loads(e).get("key")) for n, s, e in self._con.execute("SELECT name, state, entry FROM jobs")
            }

    def states(self) -> dict[str, str]:
        """Job folder -> state of every recorded job (names and states only)."""
        return dict(self._con.execute("SELECT name, state FROM jobs"))

    # ---- runs, exports -----------------------------------------------------------------------

    @property
    def runs(self) -> list[dict]:
        """The recorded runs (a copy; change them with :meth:`add_run` / :meth:`update_run`)."""
        row = self._con.execute("SELECT value FROM meta WHERE name = 'runs'").fetchone()
        return json.loads(row[0]) if row else []

    def add_run(self, run: Mapping[str, Any]) -> None:
        """Record the start of a run (``started``, ``jobs``, ``to_run``)."""
        self._set_meta(runs=[*self.runs, dict(run)])

    def update_run(self, fields: Mapping[str, Any]) -> None:
        """Change fields of the last recorded run (e.g. ``finished``)."""
        runs = self.runs
        if runs:
            runs[-1].update(fields)
            self._set_meta(runs=runs)

    def write(self) -> None:
        """Export ``manifest.json`` and ``batch_status.json`` (atomically; O(jobs), never per job)."""
        self._set_meta(updated=time.time())
        if not self._bulk:
            self._con.execute("BEGIN")  # one snapshot for both files
        try:
            _write_json_export(self._con, self.path, _meta(self._con))
            status = _status(self._con, self.session_seq, self.session_start)
        finally:
            if not self._bulk:
                self._con.execute("COMMIT")
        _write_status(self.out / STATUS, status)

    def discard(self) -> None:
        """Close the store and delete it if this object created it (a run that could not start)."""
        self.close()
        if self.created:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.store) + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the store (a checkpoint folds the write-ahead log into it)."""
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
