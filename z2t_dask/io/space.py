"""Room for outputs: refuse up front what cannot fit, and name a full disk or a file-size limit clearly.

Two things, both raising :class:`~z2t_dask.errors.OutputSpaceError` (a ``Z2TError`` and an ``OSError``;
the CLI prints it and exits 2):

- :func:`check_output_space` before writing: a file of a known size larger than the process's
  file-size limit (``RLIMIT_FSIZE``, ``ulimit -f``) or than the free space of its disk is refused
  with the figures, before anything is created.
- :func:`output_space_error` after a failed write: ``ENOSPC``, ``EDQUOT`` and ``EFBIG`` errors (also
  h5py's wrapped ones, and NumPy's short write ``"4096 requested and 3984 written"``, which carries
  no errno) become one message saying "disk full", "disk quota exceeded" or "file too large" and
  naming the output. :mod:`z2t_dask.io.atomic` applies it to every atomic output.

Messages name the output as the user will see it: the hidden temporary folders of
:mod:`z2t_dask.io.atomic` (``.<name>.tmp-…``, ``.<name>.partial``) are shown as ``<name>``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from z2t_dask.errors import OutputSpaceError

__all__ = ["check_output_space", "file_size_limit", "free_bytes", "output_space_error", "public_path"]

#: errno values of a full disk, an exhausted quota and a file-size limit.
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")
_WRAPPED_ERRNO = re.compile(r"errno = (\d+)")
_HIDDEN = re.compile(r"^\.(?P<name>.+?)\.(?:(?:tmp|old)-[^/]*|partial)$")


def _size(nbytes: float) -> str:
    """``nbytes`` as a short human figure (``"1.5 GB"``, decimal units, and the exact bytes below 1 kB)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def public_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with the hidden temporary names of :mod:`z2t_dask.io.atomic` replaced by the final ones.

    ``out/.sample_001.tmp-host-42-ab12/sample_001.h5`` -> ``out/sample_001/sample_001.h5``.
    """
    parts = []
    for part in Path(path).parts:
        m = _HIDDEN.match(part)
        parts.append(m.group("name") if m else part)
    return Path(*parts) if parts else Path(path)


def file_size_limit() -> int | None:
    """The soft file-size limit of this process in bytes (``RLIMIT_FSIZE``), None when unlimited."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing ancestor (``.`` at worst)."""
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Free bytes for this user on the disk holding ``folder`` (or its nearest existing ancestor)."""
    try:
        return int(shutil.disk_usage(_existing(Path(folder).absolute())).free)
    except OSError:
        return None


def check_output_space(path: str | os.PathLike[str], nbytes: int, *, what: str = "the stack") -> None:
    """Refuse, before anything is written, a file of ``nbytes`` bytes that cannot fit.

    Parameters
    ----------
    path : path-like
        The file to be written (its folder, or the nearest existing ancestor, gives the disk).
    nbytes : int
        Its size in bytes (for an uncompressed stack, frames x height x width x itemsize).
    what : str
        What the file is, for the message.

    Raises
    ------
    OutputSpaceError
        ``"file too large"`` when ``nbytes`` exceeds ``RLIMIT_FSIZE`` (``errno`` EFBIG), ``"disk full"``
        when it exceeds the free space of the disk (``errno`` ENOSPC); the message names the output
        and gives both figures.
    """
    shown = public_path(path)
    limit = file_size_limit()
    if limit is not None and nbytes > limit:
        raise OutputSpaceError(
            f"file too large: {what} {shown} needs {_size(nbytes)}, more than this process's file-size limit "
            f"of {_size(limit)} (ulimit -f / RLIMIT_FSIZE); raise the limit or choose a compressed or chunked format",
            errno.EFBIG,
        )
    free = free_bytes(Path(path).parent)
    if free is not None and nbytes > free:
        raise OutputSpaceError(
            f"disk full: {what} {shown} needs {_size(nbytes)}, but the disk holding {_existing(shown.parent)} "
            f"has {_size(free)} free; free some space or choose another output folder",
            errno.ENOSPC,
        )


def _space_errno(exc: BaseException) -> int | None:
    """The space errno an exception (or its cause/context chain) carries; -1 for a bare short write."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutputSpaceError):
            return None  # already translated (an inner atomic output)
        if isinstance(current, OSError):
            if current.errno in SPACE_ERRNOS:
                return int(current.errno)
            text = str(current)
            wrapped = _WRAPPED_ERRNO.search(text)
            if wrapped and int(wrapped.group(1)) in SPACE_ERRNOS:
                return int(wrapped.group(1))
            if _SHORT_WRITE.search(text):
                return -1
        current = current.__cause__ or current.__context__
    return None


def output_space_error(exc: BaseException, path: str | os.PathLike[str]) -> OutputSpaceError | None:
    """An :class:`OutputSpaceError` naming ``path`` if ``exc`` is a full disk, quota or file-size limit.

    Parameters
    ----------
    exc : BaseException
        The error a write raised (its ``__cause__`` / ``__context__`` chain is searched too).
    path : path-like
        The output being written (named in the message, temporaries shown by their final name).

    Returns
    -------
    OutputSpaceError or None
        None when ``exc`` is something else (or already an OutputSpaceError).
    """
    code = _space_errno(exc)
    if code is None:
        return None
    shown = public_path(path)
    free = free_bytes(Path(path).parent)
    limit = file_size_limit()
    if code == -1:  # a short write without errno: a limit we can see, else the disk
        code = errno.EFBIG if limit is not None and (free is None or free > (1 << 20)) else errno.ENOSPC
    if code == errno.EFBIG:
        where = f"this process's file-size limit of {_size(limit)} (ulimit -f / RLIMIT_FSIZE)" if limit else "a limit"
        message = f"file too large: writing {shown} reached {where}; raise the limit"
    elif code == errno.EDQUOT:
        message = f"disk quota exceeded while writing {shown}; free some of your quota or choose another output folder"
    else:
        left = f" ({_size(free)} left)" if free is not None else ""
        message = (
            f"disk full: no space left on the disk holding {shown}{left}; free some space or choose another folder"
        )
    return OutputSpaceError(message, code)
