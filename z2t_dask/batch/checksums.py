"""Output checksums of a job folder: recorded when a job finishes, checked on resume and by ``z2t inspect --verify``.

Each output file is recorded as ``{"bytes": size, "mtime_ns": modification time (ns since the
epoch), "sha256": hex digest}`` (:func:`record_outputs`). :func:`check_outputs` compares a folder
with such a record in one of two ways:

* fast (``full=False``, what a plain resume does): the size and the modification time must match;
  a file whose size matches but whose time differs is hashed, and passes if its sha256 matches
  (a copy that did not keep times). A byte changed in place while keeping both size and time
  (``os.utime``, or a filesystem with coarse times) is not seen;
* full (``full=True``: ``run_batch(verify=True)``, ``z2t batch --verify``, ``z2t inspect
  --verify``): every file is hashed.

Records written before modification times were kept (no ``mtime_ns``) are always hashed.
Nothing here knows the manifest: it works on a folder and a mapping.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

__all__ = ["check_outputs", "file_sha256", "record_outputs"]


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_outputs(folder: str | os.PathLike, exclude: Container[str] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes", "mtime_ns", "sha256"}}`` of every file under ``folder``.

    Parameters
    ----------
    folder
        A finished job's sample folder.
    exclude
        File names (not paths) left out, e.g. the job marker itself.
    """
    root = Path(folder)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in exclude:
            st = p.stat()
            out[str(p.relative_to(root))] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(p)}
    return out


def check_outputs(folder: str | os.PathLike, outputs: Mapping[str, Any], *, full: bool = False) -> list[str]:
    """What differs between a folder and its recorded outputs (empty: every file matches).

    Parameters
    ----------
    folder
        The job's sample folder.
    outputs
        Its record (:func:`record_outputs`, as kept in the job marker and the manifest).
    full
        Hash every file (else the fast check of the module docstring).

    Returns
    -------
    list of str
        One line per damaged file, naming its path: ``"<path>: missing"``, ``"<path>: 123 bytes,
        expected 456"`` or ``"<path>: sha256 differs from the recorded checksum"``.
    """
    root = Path(folder)
    problems: list[str] = []
    for rel, meta in outputs.items():
        p = root / rel
        try:
            st = os.stat(p)  # one stat per file: a resume of 10⁵ jobs makes a few 10⁵ of them
        except OSError:
            problems.append(f"{p}: missing")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{p}: not a file")
            continue
        meta = meta if isinstance(meta, Mapping) else {}
        if st.st_size != meta.get("bytes"):
            problems.append(f"{p}: {st.st_size} bytes, expected {meta.get('bytes')}")
            continue
        fast_ok = meta.get("mtime_ns") is not None and st.st_mtime_ns == meta.get("mtime_ns")
        if (full or not fast_ok) and file_sha256(p) != meta.get("sha256"):
            problems.append(f"{p}: sha256 differs from the recorded checksum")
    return problems
