"""Atomic file and folder creation: write under a hidden temporary name, then rename.

A reader never sees a half-written output: the final name appears only after the content
is complete and flushed to disk (``fsync``), via ``os.replace`` within one directory (the
same filesystem, so the rename is atomic on POSIX). On error, Ctrl-C or SIGTERM (the CLI turns
it into a ``KeyboardInterrupt``) the temporary is removed and the exception propagates; a full
disk or file-size limit becomes :class:`~z2t_dask.errors.OutputSpaceError` naming the output.

Temporaries are named ``.<name>.tmp-<host>-<pid>-<16 hex digits>``: a process killed outright
(SIGKILL, power loss) leaves its temporary behind, and the next :func:`atomic_path` /
:func:`atomic_dir` of the same output (the first in each process) removes it
(:func:`remove_stale_temps`) once its owner is known dead: same host, and no process with that
pid (or the pid is this process's and the temporary is not one it is writing). Temporaries of live
processes and of other hosts are kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from z2t_dask.io.space import output_space_error

__all__ = [
    "PARTIAL_STAMP",
    "atomic_dir",
    "atomic_path",
    "partial_sibling",
    "remove_stale_temps",
    "resumable_dir",
    "temp_sibling",
]

#: File inside a resumable partial folder holding the fingerprint of what it is being filled with.
PARTIAL_STAMP = ".z2t-partial"

#: This host's name as written into temporary names (no ``-``, at most 40 characters).
HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"

#: Temporaries this process is writing now (never removed as stale, even with a recycled pid).
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()

#: Temporary folders of :func:`atomic_dir` this process is filling (absolute paths). A file that
#: :func:`atomic_path` commits inside one is renamed without its own ``fsync`` of the file and the
#: folder: the folder's commit fsyncs every file and folder in it before its rename, and nothing in it
#: is visible under a final name before then (a sample folder: 4 fsyncs instead of 8, ~7 ms less).
#: Not :func:`resumable_dir` folders: a rerun trusts the files they hold, so each is made durable.
_DEFERRED: set[str] = set()


def temp_sibling(final_path: str | os.PathLike[str], tag: str = "tmp") -> Path:
    """Return an unused hidden path next to ``final_path``.

    Parameters
    ----------
    final_path : path-like
        The eventual output path.
    tag : str
        Marker in the name (``"tmp"`` for outputs in progress, ``"old"`` for replaced ones).

    Returns
    -------
    pathlib.Path
        ``<dir>/.<name>.<tag>-<host>-<pid>-<16 hex digits>`` (the owner, for :func:`remove_stale_temps`).
    """
    final = Path(final_path)
    return final.parent / f".{final.name}.{tag}-{HOST}-{os.getpid()}-{secrets.token_hex(8)}"


def _owner(rest: str) -> tuple[str | None, int] | None:
    """``(host, pid)`` from the part of a temporary name after ``.tmp-`` (host None: an old name)."""
    fields = rest.rsplit("-", 2)
    if len(fields) == 3:
        host, pid, token = fields
    elif len(fields) == 2:  # written before names carried the host
        host, (pid, token) = None, fields
    else:
        return None
    if not pid.isdigit() or not re.fullmatch(r"[0-9a-f]{16}", token):
        return None
    return host, int(pid)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (True when it cannot be told)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _is_stale(path: Path, rest: str) -> bool:
    owner = _owner(rest)
    if owner is None:
        return False
    host, pid = owner
    if host is not None and host != HOST:
        return False  # another host's (a shared filesystem): its pid means nothing here
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return str(path) not in _ACTIVE  # a recycled pid (e.g. containers): not one we are writing
    return not _pid_alive(pid)


def remove_stale_temps(final_path: str | os.PathLike[str]) -> int:
    """Remove the temporaries of ``final_path`` left by killed writers (``.<name>.tmp-*``); return how many.

    A temporary is removed only when its owner is known dead: written on this host by a process
    that no longer exists (or by this process's pid, but not one it is writing now). ``.<name>.old-*``
    leftovers (an output renamed aside during a replacement) are removed the same way when the output
    itself exists. Errors (a racing cleaner, permissions) are ignored.
    """
    final = Path(final_path)
    prefixes = {f".{final.name}.tmp-": True, f".{final.name}.old-": final.exists()}
    removed = 0
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return 0
    for entry in entries:
        for prefix, allowed in prefixes.items():
            if allowed and entry.name.startswith(prefix):
                path = Path(entry.path)
                if _is_stale(path, entry.name[len(prefix) :]):
                    _remove(path)
                    removed += 1
    return removed


#: Outputs whose stale temporaries this process removed lately (the folder is scanned once per output,
#: not at every rewrite of e.g. a manifest; bounded, oldest forgotten first).
_CLEANED: dict[str, None] = {}
_CLEANED_MAX = 4096


def _remove_stale_once(final: Path) -> None:
    """:func:`remove_stale_temps` for ``final``, unless this process did it lately."""
    key = os.path.abspath(final)
    with _ACTIVE_LOCK:
        if key in _CLEANED:
            return
        _CLEANED[key] = None
        if len(_CLEANED) > _CLEANED_MAX:
            del _CLEANED[next(iter(_CLEANED))]
    remove_stale_temps(final)


def _in_deferred_folder(path: Path) -> bool:
    """Whether ``path`` lies inside a temporary folder of :func:`atomic_dir` this process is filling."""
    with _ACTIVE_LOCK:
        if not _DEFERRED:
            return False
        folders = tuple(d + os.sep for d in _DEFERRED)
    return os.path.abspath(path).startswith(folders)


@contextlib.contextmanager
def _deferring(tmp: Path) -> Iterator[None]:
    """Register ``tmp`` (an :func:`atomic_dir` temporary) as committed, fsyncs included, by its folder."""
    key = os.path.abspath(tmp)
    with _ACTIVE_LOCK:
        _DEFERRED.add(key)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _DEFERRED.discard(key)


@contextlib.contextmanager
def _claimed(tmp: Path) -> Iterator[Path]:
    """Mark ``tmp`` as being written by this process while the body runs."""
    with _ACTIVE_LOCK:
        _ACTIVE.add(str(tmp))
    try:
        yield tmp
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(tmp))


def _os_error(cls: type[OSError], code: int, message: str) -> OSError:
    """An OS error whose text is exactly ``message`` (no ``[Errno n]`` prefix) and whose errno is ``code``."""
    exc = cls(message)
    exc.errno = code
    return exc


def _check_parent(final: Path, what: str) -> None:
    """The folder of ``final`` must exist, be a folder and be writable (FileNotFoundError,
    NotADirectoryError or PermissionError naming the path otherwise)."""
    parent = final.parent
    if not parent.is_dir():
        blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise _os_error(
                NotADirectoryError, errno.ENOTDIR, f"cannot {what} {final}: {blocker} is a file, not a folder"
            )
        raise _os_error(FileNotFoundError, errno.ENOENT, f"cannot {what} {final}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _os_error(
            PermissionError, errno.EACCES, f"cannot {what} {final}: folder {parent} is not writable (permission denied)"
        )


def _remove(path: Path) -> None:
    """Remove a file, link or folder tree if it exists (no error if absent)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_path(path: Path) -> None:
    """Flush a file, or every file and folder under a folder, to stable storage."""
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync_file(Path(root) / name)
            _fsync_dir(Path(root))
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Flush a folder entry (makes a rename durable); ignored where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _install(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing whatever is there.

    A file replaces a file with a single ``os.replace``. If either side is a folder, the
    existing ``final`` is first renamed aside (hidden ``.old`` name), then ``tmp`` is
    renamed in, then the old one is deleted; if the second rename fails, the old one is
    put back.
    """
    if not final.exists() and not final.is_symlink():
        os.replace(tmp, final)
        return
    if not tmp.is_dir() and not (final.is_dir() and not final.is_symlink()):
        os.replace(tmp, final)
        return
    old = temp_sibling(final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    _remove(old)


def _translated(exc: BaseException, final: Path) -> BaseException:
    """``exc``, or the :class:`~z2t_dask.errors.OutputSpaceError` it stands for (disk full, quota, size limit)."""
    return output_space_error(exc, final) or exc


def _commit(tmp: Path, final: Path) -> None:
    """Make a complete temporary durable and give it its final name (then make the rename durable)."""
    _fsync_path(tmp)
    _install(tmp, final)
    _fsync_dir(final.parent)


def _abandon(tmp: Path, final: Path, exc: BaseException) -> BaseException:
    """Remove the temporary of a failed write; the error to raise (space errors named by ``final``)."""
    _remove(tmp)
    return _translated(exc, final)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success move it to ``final_path``.

    Parameters
    ----------
    final_path : path-like
        Output path. Its parent folder must exist. An existing output is replaced.

    Yields
    ------
    pathlib.Path
        Hidden temporary path ``.<name>.tmp-<host>-<pid>-<hex>`` (not created): the body writes a
        file (or a folder) there.

    Raises
    ------
    FileNotFoundError
        If the parent folder does not exist, or the body created nothing at the
        temporary path.
    NotADirectoryError, PermissionError
        If a component of the parent is a regular file, or the parent is not writable.
    OutputSpaceError
        The disk is full, a quota or the file-size limit was reached (ENOSPC, EDQUOT, EFBIG).

    Notes
    -----
    Stale temporaries of ``final_path`` left by killed processes are removed first
    (:func:`remove_stale_temps`). On normal exit the temporary is fsync'ed, renamed with
    ``os.replace`` and the folder entry is fsync'ed; inside the temporary folder of an
    :func:`atomic_dir` of this process both fsyncs are left to that folder's commit, which fsyncs
    all its content before it gets its final name. On any exception (including
    KeyboardInterrupt) the temporary file or folder is removed and the exception re-raised.
    """
    final = Path(final_path)
    _check_parent(final, "write")
    _remove_stale_once(final)
    tmp = temp_sibling(final)
    deferred = _in_deferred_folder(final)
    with _claimed(tmp):
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"nothing was written to the temporary path {tmp} for {final}")
            if deferred:
                _install(tmp, final)
            else:
                _commit(tmp, final)
        except BaseException as exc:
            better = _abandon(tmp, final, exc)
            if better is exc:
                raise
            raise better from exc


def _new_output(final_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check an output folder can be created (parent exists and is writable; absent unless ``overwrite``)."""
    final = Path(final_dir)
    _check_parent(final, "create")
    if not overwrite and (final.exists() or final.is_symlink()):
        raise FileExistsError(f"{final} already exists (pass overwrite=True to replace it)")
    return final


def _still_new(final: Path, overwrite: bool) -> None:
    """Before the rename: an output that appeared meanwhile is not replaced unless ``overwrite``."""
    if not overwrite and (final.exists() or final.is_symlink()):
        raise FileExistsError(f"{final} appeared while it was being written (overwrite=False)")


@contextlib.contextmanager
def atomic_dir(final_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new, empty temporary folder; on success rename it to ``final_dir``.

    Parameters
    ----------
    final_dir : path-like
        Output folder. Its parent must exist.
    overwrite : bool
        If False (default) and ``final_dir`` exists, raise FileExistsError (checked before
        the body runs and again before the rename). If True, the existing folder (or file)
        is replaced: renamed aside, the new one renamed in, then the old one deleted.

    Yields
    ------
    pathlib.Path
        Hidden temporary folder ``.<name>.tmp-<host>-<pid>-<hex>`` (created, empty).

    Raises
    ------
    FileExistsError
        If ``final_dir`` exists and ``overwrite`` is False.
    FileNotFoundError, NotADirectoryError, PermissionError
        If the parent is missing, under a regular file or not writable (the message names the path).
    OutputSpaceError
        The disk is full, a quota or the file-size limit was reached while writing.

    Notes
    -----
    Stale temporaries of ``final_dir`` left by killed processes are removed first
    (:func:`remove_stale_temps`); on any exception, KeyboardInterrupt included, the temporary
    folder is removed. Files :func:`atomic_path` writes inside it are fsync'ed by its commit.
    """
    final = _new_output(final_dir, overwrite)
    _remove_stale_once(final)
    tmp = temp_sibling(final)
    with _claimed(tmp):
        tmp.mkdir()
        try:
            with _deferring(tmp):
                yield tmp
            _still_new(final, overwrite)
            _commit(tmp, final)
        except BaseException as exc:
            better = _abandon(tmp, final, exc)
            if better is exc:
                raise
            raise better from exc


def partial_sibling(final_path: str | os.PathLike[str]) -> Path:
    """The fixed hidden name ``<dir>/.<name>.partial`` of a resumable output in progress."""
    final = Path(final_path)
    return final.parent / f".{final.name}.partial"


@contextlib.contextmanager
def resumable_dir(final_dir: str | os.PathLike[str], *, fingerprint: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a partial folder that survives interruptions; on success rename it to ``final_dir``.

    Unlike :func:`atomic_dir`, the temporary name is fixed (``.<name>.partial``) and it is
    *kept* when the body raises or the process dies, so a rerun with the same fingerprint
    continues filling it (the body decides what is already done). A partial folder stamped
    with another fingerprint (a different config, seed or layout) is deleted and started
    afresh.

    Parameters
    ----------
    final_dir : path-like
        Output folder. Its parent must exist.
    fingerprint : str
        Identity of the content (e.g. a hash of the config, seed and layout).
    overwrite : bool
        Replace an existing ``final_dir``; if False it raises FileExistsError.

    Yields
    ------
    pathlib.Path
        The partial folder (created if needed; may hold earlier progress).

    Notes
    -----
    On normal exit the stamp file is removed, the folder fsync'ed and renamed (replacing an
    existing output when ``overwrite``), so a finished-looking folder is always complete.
    Two processes must not fill the same partial folder at the same time.
    """
    final = _new_output(final_dir, overwrite)
    work = partial_sibling(final)
    stamp = work / PARTIAL_STAMP
    _remove_stale_once(work)
    if work.exists() or work.is_symlink():
        same = work.is_dir() and not work.is_symlink() and stamp.is_file() and stamp.read_text() == fingerprint
        if not same:
            _remove(work)
    if not work.exists():
        tmp = temp_sibling(work)
        with _claimed(tmp):
            tmp.mkdir()
            (tmp / PARTIAL_STAMP).write_text(fingerprint)
            os.replace(tmp, work)
    try:
        yield work
    except BaseException as exc:  # the partial folder is kept for a rerun
        better = _translated(exc, final)
        if better is exc:
            raise
        raise better from exc
    _still_new(final, overwrite)
    stamp.unlink()
    _fsync_path(work)
    _install(work, final)
    _fsync_dir(final.parent)
