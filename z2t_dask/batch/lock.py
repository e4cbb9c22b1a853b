"""One batch per output folder: the lock file ``.z2t_batch.lock`` (:func:`batch_lock`).

:func:`~z2t_dask.batch.run_batch` holds the lock of its output folder for the whole run: the
start-up cleanup of temporaries, the manifest and every job happen under it, so two runs on one
folder never delete each other's temporaries nor compute the same jobs twice. The lock is a small
JSON file (``host``, ``pid``, ``started`` (Unix time, s), ``token``) created atomically with
``O_CREAT | O_EXCL`` (atomic on local filesystems and on NFS v3 and later), removed when the run
ends, however it ends (an exception, Ctrl-C, SIGTERM handled as an exception).

A second run is refused with :class:`BatchLockError` naming the holder's host and pid. A lock
left by a process that no longer exists (killed with SIGKILL, a crashed node) is *stale*:

* same host, the pid is not alive (or is a newer process that reused the pid): taken over, with
  a warning in the log;
* another host: it cannot be checked from here; the message says which file to delete once no
  batch runs there any more.

This module is independent of the manifest store: only the output folder's path is needed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from z2t_dask.errors import BatchLockError

__all__ = ["LOCK_FILE", "BatchLockError", "batch_lock", "read_lock"]

log = logging.getLogger("z2t_dask.batch")

#: The lock file, in the batch output folder.
LOCK_FILE = ".z2t_batch.lock"
#: Attempts at taking a lock whose stale holder other runs may be taking over at the same time.
_TRIES = 5


def _host() -> str:
    return socket.gethostname()


def read_lock(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The holder of a batch folder's lock (``host``, ``pid``, ``started``, ``token``), or None.

    An unreadable lock file (e.g. a half-written one) is returned as ``{"unreadable": "<reason>"}``.
    """
    p = Path(folder) / LOCK_FILE
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"unreadable": str(exc)}
    try:
        doc = json.loads(text)
    except ValueError:
        return {"unreadable": f"not JSON: {text[:60]!r}"}
    return doc if isinstance(doc, dict) else {"unreadable": "not a JSON object"}


def _pid_alive(pid: int, started: float | None) -> bool:
    """Is ``pid`` a live process of this host that was running at ``started`` (Unix time, s)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    if started is None:
        return True
    try:  # a pid reused by a process started after the lock was taken is not the holder
        import psutil

        return bool(psutil.Process(pid).create_time() <= float(started) + 1.0)
    except Exception:  # psutil missing, process gone meanwhile, no permission: assume alive
        return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {when}"


def _is_stale(holder: dict[str, Any]) -> bool:
    """A lock of this host whose process is gone (never a lock of another host)."""
    pid = holder.get("pid")
    if holder.get("host") != _host() or not isinstance(pid, int):
        return False
    started = holder.get("started")
    return not _pid_alive(pid, float(started) if isinstance(started, (int, float)) else None)


def _try_create(path: Path, info: dict[str, Any]) -> bool:
    """Create the lock file with ``info``; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return True


def _remove_stale(path: Path, holder: dict[str, Any]) -> None:
    """Move the stale lock aside (one rename: only one taker wins) and delete it.

    If the file moved aside is not the stale one (another run took the lock meanwhile), it is
    put back when the name is still free.
    """
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another run removed it first
    moved = _read_file(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        with contextlib.suppress(OSError):
            os.link(aside, path)  # fails if the name was taken again: then the newer one wins
    aside.unlink(missing_ok=True)


def _read_file(p: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.contextmanager
def batch_lock(folder: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Hold the lock of a batch output folder (which must exist) for the ``with`` block.

    Parameters
    ----------
    folder
        The batch output folder.

    Yields
    ------
    dict
        This run's lock information (``host``, ``pid``, ``started`` (Unix time, s), ``token``).

    Raises
    ------
    BatchLockError
        Another live run holds the folder, or a lock of another host is there (the message names
        the holder and the file to delete once that run is gone).
    """
    path = Path(folder) / LOCK_FILE
    info = {"host": _host(), "pid": os.getpid(), "started": time.time(), "token": secrets.token_hex(8)}
    for _ in range(_TRIES):
        if _try_create(path, info):
            break
        holder = read_lock(folder)
        if holder is None:  # released meanwhile
            continue
        if "unreadable" in holder:
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:  # released meanwhile
                continue
            if age < 10.0:  # being written right now by another run
                time.sleep(0.2)
                continue
            raise BatchLockError(
                f"{path}: unreadable batch lock ({holder['unreadable']}); if no batch runs on this folder, delete it"
            )
        if _is_stale(holder):
            log.warning("taking over the stale lock of %s (%s): that process is gone", path, _describe(holder))
            _remove_stale(path, holder)
            continue
        where = (
            "that process is still running"
            if holder.get("host") == _host()
            else f"another host: if no batch runs there any more, delete {path}"
        )
        raise BatchLockError(
            f"{folder}: another z2t batch is running on this output folder ({_describe(holder)}; {where}); "
            "wait for it to finish or choose another --output-dir"
        )
    else:
        raise BatchLockError(f"{path}: could not take the batch lock after {_TRIES} attempts (contended)")
    try:
        yield info
    finally:
        current = read_lock(folder)
        if current is not None and current.get("token") == info["token"]:
            path.unlink(missing_ok=True)
