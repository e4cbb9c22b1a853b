"""Atomic file and folder creation: write under a hidden temporary name, then rename.

A reader never sees a half-written output: the final name appears only after the content
is complete and flushed to disk (``fsync``), via ``os.replace`` within one directory (the
same filesystem, so the rename is atomic on POSIX). On error the temporary is removed and
the exception propagates.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PARTIAL_STAMP", "atomic_dir", "atomic_path", "partial_sibling", "resumable_dir", "temp_sibling"]

#: File inside a resumable partial folder holding the fingerprint of what it is being filled with.
PARTIAL_STAMP = ".z2t-partial"


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
        ``<dir>/.<name>.<tag>-<pid>-<16 hex digits>``.
    """
    final = Path(final_path)
    return final.parent / f".{final.name}.{tag}-{os.getpid()}-{secrets.token_hex(8)}"


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
        Hidden temporary path ``.<name>.tmp-<pid>-<hex>`` (not created): the body writes a
        file (or a folder) there.

    Raises
    ------
    FileNotFoundError
        If the parent folder does not exist, or the body created nothing at the
        temporary path.

    Notes
    -----
    On normal exit the temporary is fsync'ed, renamed with ``os.replace`` and the folder
    entry is fsync'ed. On any exception (including KeyboardInterrupt) the temporary file
    or folder is removed and the exception re-raised.
    """
    final = Path(final_path)
    if not final.parent.is_dir():
        raise FileNotFoundError(f"cannot write {final}: folder {final.parent} does not exist")
    tmp = temp_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path {tmp} for {final}")
        _fsync_path(tmp)
        _install(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        _remove(tmp)
        raise


def _new_output(final_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check an output folder can be created (parent exists; absent unless ``overwrite``)."""
    final = Path(final_dir)
    if not final.parent.is_dir():
        raise FileNotFoundError(f"cannot create {final}: folder {final.parent} does not exist")
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
        Hidden temporary folder ``.<name>.tmp-<pid>-<hex>`` (created, empty).

    Raises
    ------
    FileExistsError
        If ``final_dir`` exists and ``overwrite`` is False.
    """
    final = _new_output(final_dir, overwrite)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        _still_new(final, overwrite)
        _fsync_path(tmp)
        _install(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        _remove(tmp)
        raise


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
    if work.exists() or work.is_symlink():
        same = work.is_dir() and not work.is_symlink() and stamp.is_file() and stamp.read_text() == fingerprint
        if not same:
            _remove(work)
    if not work.exists():
        tmp = temp_sibling(work)
        tmp.mkdir()
        (tmp / PARTIAL_STAMP).write_text(fingerprint)
        os.replace(tmp, work)
    yield work
    _still_new(final, overwrite)
    stamp.unlink()
    _fsync_path(work)
    _install(work, final)
    _fsync_dir(final.parent)
