"""Up-front size checks of ``z2t simulate`` and ``z2t render``: whole frames in memory, and the disk.

The memory of the sample itself is checked where it is built (:func:`z2t_dask.engine.budget.check_resources`,
called by :func:`~z2t_dask.sample.simulate` and :func:`~z2t_dask.sample.load_sample_h5`). Here, knowing the
output format and path: the blocks of whole frames that single-file writers hold
(:func:`~z2t_dask.engine.budget.check_writer_memory`) and the free space of the output's disk
(:func:`z2t_dask.io.space.check_output_space`), before anything is drawn or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from z2t_dask.config import SimulationConfig

__all__ = ["MAX_COMPRESSION_RATIO", "check_output_room"]

#: Largest compression ratio assumed when refusing a compressed stack for lack of disk up front
#: (measured: 1.3-3.6 for noisy camera frames with zstd/zlib).
MAX_COMPRESSION_RATIO = 8


def check_output_room(
    cfg: SimulationConfig, entry: Any, compression: str | None, path: Path, estimate: dict[str, Any]
) -> None:
    """Refuse up front a stack that cannot be written: whole frames in memory, or the disk.

    Parameters
    ----------
    cfg : SimulationConfig
        The sample's config (its default compressions).
    entry : StackFormat
        The output format (:mod:`z2t_dask.io.formats`); single-file formats write whole frames in order.
    compression : str or None
        The compression asked for (None: the config's, else the format's default).
    path : Path
        The stack to be written (its disk is checked).
    estimate : dict
        From :func:`z2t_dask.engine.budget.estimate_resources`.

    Raises
    ------
    ConfigError
        Whole frames would not fit in memory (naming ``tiff.roi_size``).
    OutputSpaceError
        The stack would not fit on the disk (uncompressed; a compressed one only when even
        :data:`MAX_COMPRESSION_RATIO` times smaller it would not) or beyond the file-size limit.
    """
    from z2t_dask.engine.budget import check_writer_memory, format_bytes
    from z2t_dask.io.space import check_output_space

    if not entry.is_dir:  # single-file writers (OME-TIFF, HDF5) take blocks of whole frames in order
        check_writer_memory(estimate)
    defaults = {
        "ome-tiff": cfg.tiff.compression,
        "ome-zarr": cfg.output.zarr_compression,
        "hdf5": cfg.output.hdf5_compression,
    }
    codec = compression or defaults.get(entry.name, entry.default_compression)
    raw = int(estimate["stack_bytes"])
    if codec == "none":
        check_output_space(path, raw, what="the uncompressed stack")
    else:
        what = f"the {codec} stack ({format_bytes(raw)} uncompressed; at least 1/{MAX_COMPRESSION_RATIO} of it)"
        check_output_space(path, raw // MAX_COMPRESSION_RATIO, what=what)
