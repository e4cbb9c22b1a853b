"""The folders of a batch on disk, in one walk: :func:`folder_sizes` (``z2t inspect`` of 10⁵ jobs).

Asking every job folder for its size (``rglob`` per folder, then again for the whole batch) costs
several filesystem passes per job; :func:`folder_sizes` walks the batch folder once with
``os.scandir`` and returns the bytes under every folder, so a job folder's size (and whether it
exists) is a lookup, for the flat layout, grid sub-folders and shard folders alike.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["folder_sizes"]


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
