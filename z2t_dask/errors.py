"""Every error and warning the package raises on purpose: one base, :class:`Z2TError`.

An exception deriving from :class:`Z2TError` means *the input is wrong* (a config key, a file,
a path, a size that cannot fit) and its message names the key or file and what was expected;
the ``z2t`` command line prints it and exits with status 2. Anything else that escapes is a
bug of ours (exit 1, "internal error"). Each class also keeps the builtin base callers caught
before this hierarchy existed (``except ValueError`` still catches a :class:`ConfigError`), as
zarr-python does.

This module imports nothing from the package: every layer may raise these.
"""

from __future__ import annotations

__all__ = [
    "Z2TError",
    "Z2TWarning",
    "ConfigError",
    "BatchConfigError",
    "LegacyKeyWarning",
    "ZmapError",
    "FormatError",
    "NGFFError",
    "MemoryBudgetError",
    "ClusterError",
    "InspectError",
    "PreviewError",
    "OutputSpaceError",
    "BatchLockError",
    "OutputFolderError",
    "RemoteStoreError",
]


class Z2TError(Exception):
    """Base of every error about the user's input, files, paths or environment."""


class Z2TWarning(UserWarning):
    """Base of the package's warnings."""


class ConfigError(Z2TError, ValueError):
    """A configuration is invalid. ``problems`` lists ``(key_path, message)`` pairs.

    Parameters
    ----------
    problems
        ``(key_path, message)`` pairs, e.g. ``("emitters.frames", "expected an integer >= 1")``.
    source
        The file the configuration came from, if any (named in the message).
    """

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"invalid configuration{where}:"]
        lines += [f"  {key}: {msg}" for key, msg in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable across dask workers with its arguments
        return type(self), (self.problems, self.source)


class BatchConfigError(ConfigError):
    """A batch configuration is invalid (every problem names its key path)."""


class LegacyKeyWarning(Z2TWarning):
    """A key of an original-tool file that has no effect on the simulation (kept as provenance)."""


class ZmapError(Z2TError, ValueError):
    """A Zmap file is missing, malformed or inconsistent (message names the file and dataset)."""


class FormatError(Z2TError, ValueError):
    """A file or folder does not follow its format, or a format/codec name is unknown.

    The message names the file (and dataset or key) and what was expected.
    """


class NGFFError(FormatError):
    """An OME-Zarr folder does not follow the NGFF layout (the message lists every problem)."""


class MemoryBudgetError(Z2TError, ValueError):
    """A non-streaming write was refused: the whole stack would not fit the memory budget."""


class ClusterError(Z2TError, RuntimeError):
    """The requested cluster cannot be started or reached."""


class InspectError(Z2TError, ValueError):
    """A path is not something ``z2t inspect`` / ``z2t preview`` understands (the message says why)."""


class PreviewError(Z2TError, RuntimeError):
    """A preview cannot be made (matplotlib missing, nothing to show); the message says what to do."""


class OutputSpaceError(Z2TError, OSError):
    """An output could not be written: the disk is full, a quota or the file-size limit was reached.

    The message says "disk full", "disk quota exceeded" or "file too large", names the output and
    gives the figures (bytes needed, free, or the limit); ``errno`` is ``ENOSPC``, ``EDQUOT`` or ``EFBIG``.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):  # picklable across dask workers with its arguments
        return type(self), (str(self), self.errno)


class BatchLockError(Z2TError, RuntimeError):
    """Another batch run holds the output folder (the message names its host, pid and start time)."""


class OutputFolderError(ClusterError):
    """Workers of the cluster do not see the batch output folder (the message names it and them)."""


class RemoteStoreError(Z2TError, OSError):
    """An output URL (``s3://``, ``gs://``, ``memory://``, ...) cannot be used: its file system is not
    installed (``pip install "z2t-dask[remote]"``), unreachable, or holds an incomplete output (the
    message names the URL and what to do)."""


def interrupt_of(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM) behind ``exc``: ``exc`` itself, or one in its cause / context chain.

    A helper of the batch driver and the command line, not exported (``__all__`` lists the classes).

    An interrupt that lands inside ``threading.Condition.wait`` (Dask's ``as_completed``, a queue)
    can surface as ``RuntimeError: cannot release un-acquired lock`` raised while the
    ``KeyboardInterrupt`` was being handled: that error is the interrupt, not a bug of ours.

    Returns
    -------
    KeyboardInterrupt or None
        The interrupt, or None when none is in the chain.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
