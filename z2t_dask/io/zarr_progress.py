"""Progress of a resumable OME-Zarr write: one empty marker file per stored dask block.

A block is marked only after its data is in the array, so after a kill the blocks without a
marker are exactly the ones to store again. :class:`MarkedTarget` is the ``da.store`` target
that does both; it pickles as two paths, so distributed workers write and mark their own blocks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PROGRESS_DIR", "MarkedTarget", "block_key", "block_regions"]

#: Folder (inside the partial output) of per-block completion markers.
PROGRESS_DIR = ".z2t-progress"


def block_key(region: tuple[slice, ...]) -> str:
    """Marker name of the block at ``region`` (absolute slices)."""
    return "_".join(f"{s.start}-{s.stop}" for s in region)


def block_regions(chunks: tuple[tuple[int, ...], ...]) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(block index, absolute region) of every dask block, in C order."""
    starts = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    for idx in np.ndindex(*(len(c) for c in chunks)):
        yield idx, tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))


class MarkedTarget:
    """``da.store`` target: writes a block into the zarr array, then marks the block done.

    Picklable (holds paths only; each process opens the array once), so distributed workers
    write their own blocks.
    """

    def __init__(self, array_path: str, progress_path: str) -> None:
        self.array_path = array_path
        self.progress_path = progress_path
        self._array: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"array_path": self.array_path, "progress_path": self.progress_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._array = None

    def _open(self) -> Any:
        if self._array is None:
            import zarr

            self._array = zarr.open_array(store=self.array_path, mode="r+").with_config({"write_empty_chunks": True})
        return self._array

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        self._open()[region] = value
        with open(os.path.join(self.progress_path, block_key(region)), "w"):
            pass
