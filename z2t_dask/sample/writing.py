"""Writing a sample's files: the frame stack (through the format registry) and its ground truth.

:meth:`~z2t_dask.sample.core.Sample.save` calls these inside an atomic (or resumable) folder;
they are public for callers who want a stack or an ``emitters.h5`` alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from z2t_dask import __version__
from z2t_dask.config import config_to_dict
from z2t_dask.sample.core import mag_or_zeros

if TYPE_CHECKING:
    from z2t_dask.sample.core import Sample

__all__ = ["memory_budget", "stack_fingerprint", "write_ground_truth", "write_stack"]

log = logging.getLogger("z2t_dask")


def stack_fingerprint(sample: Sample, fmt: str, compression: str | None = None) -> str:
    """Identity of a sample's stack on disk: config, seed, version, shape, chunks, dtype, format, codec."""

    doc = {
        "config": config_to_dict(sample.config),
        "seed": int(sample.seed),
        "version": __version__,
        "shape": list(sample.frames.shape),
        "chunks": [list(c) for c in sample.frames.chunks],
        "dtype": str(sample.frames.dtype),
        "format": fmt,
        "compression": compression,
        "truth": [sample.truth.n_emitters, sample.truth.n_records],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def memory_budget(sample: Sample) -> dict[str, Any]:
    """Arguments of the memory-budget check of a non-streaming write (``render.memory_budget_mb``)."""
    budget = sample.config.render.memory_budget_mb
    shape = "x".join(str(int(s)) for s in sample.frames.shape)  # T x Y x X, or T x C x Y x X
    return {
        "budget_bytes": None if budget is None else budget * 2**20,
        "what": f"the {shape} {sample.frames.dtype} stack",
    }


def _stream_options(sample: Sample) -> dict[str, Any]:
    """Memory options of every stack writer from ``render.*``: the budget of a non-streaming write,
    ``gc.collect()`` every ``render.gc_frequency`` blocks, malloc release when ``render.tune_malloc``."""
    return {
        "memory_budget_bytes": memory_budget(sample)["budget_bytes"],
        "gc_every": sample.config.render.gc_frequency,
        "release": _release_hook(sample),
    }


def _iter_blocks(sample: Sample, scheduler, prefetch: int, streaming: bool) -> Iterator[np.ndarray]:
    """Blocks of whole frames in order: streamed (bounded memory) or, eagerly, the whole stack."""
    from z2t_dask.engine.streaming import resolve_scheduler
    from z2t_dask.io.blocks import ordered_blocks

    return ordered_blocks(
        sample.frames,
        scheduler=resolve_scheduler(scheduler),
        prefetch=prefetch,
        streaming=streaming,
        **_stream_options(sample),
    )


def _release_hook(sample: Sample) -> Any:
    """``release_free_memory`` when ``render.tune_malloc`` is on, else None."""
    from z2t_dask.engine.allocator import release_free_memory

    return release_free_memory if sample.config.render.tune_malloc else None


def _units(sample: Sample) -> str:
    """``"ADU"`` for camera frames (unsigned integers), else ``"photons"``."""
    from z2t_dask.io.blocks import frame_units

    return frame_units(sample.frames.dtype)


def _pixel_size(sample: Sample) -> tuple[float, float]:
    o = sample.config.optical
    return o.pixel_size_nm_x, o.pixel_size_nm_y


def _format_options(sample: Sample, entry: Any, compression: str | None) -> tuple[str, dict[str, Any]]:
    """The compression (argument, else the config's for this format, else the format's default) and the
    format options the config sets (``tiff.bigtiff``, ``output.zarr_format``; resumable formats get the
    sample's fingerprint)."""
    cfg = sample.config
    defaults = {
        "ome-tiff": cfg.tiff.compression,
        "ome-zarr": cfg.output.zarr_compression,
        "hdf5": cfg.output.hdf5_compression,
    }
    comp = compression or defaults.get(entry.name) or entry.default_compression
    by_format: dict[str, dict[str, Any]] = {
        "ome-tiff": {"bigtiff": cfg.tiff.bigtiff},
        "ome-zarr": {"zarr_format": cfg.output.zarr_format},
    }
    options = by_format.get(entry.name, {})
    if entry.resumable:
        options = {**options, "fingerprint": stack_fingerprint(sample, entry.name, comp), "overwrite": True}
    return comp, options


def write_stack(
    sample: Sample,
    path: str | os.PathLike,
    *,
    format: str = "ome-tiff",
    compression: str | None = None,
    scheduler: Any = "auto",
    prefetch: int = 2,
    streaming: bool = True,
    compute: bool = True,
) -> Any:
    """Write a sample's frames as one stack file/folder of a registered format (see :meth:`Sample.save`).

    The stack carries the sample's provenance (:meth:`Sample.attrs`), pixel size and units in every
    format. With ``compute=False`` it returns a ``dask.delayed`` object performing the write (several
    can run in one ``dask.compute``); otherwise the final path.
    """
    from z2t_dask.io.formats import get_format

    entry = get_format(format, "format")
    entry.check_compression(compression)
    comp, options = _format_options(sample, entry, compression)
    frames = sample.frames
    if sample.config.channels:  # (T, C, Y, X), or the split-view chip (z2t_dask.sample.channels)
        from z2t_dask.sample.channels import frames_to_write

        frames = frames_to_write(sample)
    return entry.write(
        Path(path),
        frames,
        compression=comp,
        pixel_size_nm=_pixel_size(sample),
        attrs=sample.attrs(),
        units=_units(sample),
        scheduler=scheduler,
        prefetch=prefetch,
        streaming=streaming,
        compute=compute,
        **_stream_options(sample),
        **options,
    )


def _float32(table: Any) -> dict[str, np.ndarray]:
    """A table's depth and fixed-dipole columns (``emitters/depth_um``, ``dipole_*_rad``) as float32, as stored."""
    from z2t_dask.physics.emitters import DEPTH_COLUMN, DIPOLE_COLUMNS

    return {k: np.asarray(table.extra[k], np.float32) for k in (DEPTH_COLUMN, *DIPOLE_COLUMNS) if k in table.extra}


def write_ground_truth(sample: Sample, folder: Path, *, stack: tuple[Path, str] | None = None) -> Path:
    """Write ``emitters.h5`` (original layout + provenance) and optionally a CSV.

    The truth is written part by part (one time segment at a time for a long sample). With
    ``output.frames_in_h5`` the frames are stored in it too (dataset ``frames``, read by the
    original's v2/v3 loaders): copied block by block from ``stack = (path, format)`` when given
    (no second rendering), else rendered.
    """
    from z2t_dask.io.emitters_h5 import write_emitters_h5_parts
    from z2t_dask.io.formats import iter_stack_blocks

    truth = sample.truth
    frames = None
    if sample.config.output.frames_in_h5:
        block = max(1, int(sample.frames.chunksize[0]))
        source = (
            iter_stack_blocks(stack[0], stack[1], block) if stack is not None else _iter_blocks(sample, "auto", 2, True)
        )
        frames = (_stack_shape(sample), source)

    def parts() -> Iterator[tuple[dict, dict, dict]]:
        for p in truth.parts():
            e, r = p.emitters, p.records
            yield (
                {"xyz": e.xyz, "intensity": e.intensity, "t0": e.t0, "on_time": e.on_time, "id": e.id, **_float32(e)},
                {"xyz": r.xyz, "phot": r.phot, "frame_ix": r.frame_ix, "id": r.id, "inside": r.inside, **_float32(r)},
                {"phase": p.phase, "mag": mag_or_zeros(p, truth.n_modes)},
            )

    path = Path(folder) / "emitters.h5"
    write_emitters_h5_parts(
        path,
        _channel_parts(sample, parts()),
        n_emitters=truth.n_emitters,
        n_records=truth.n_records,
        n_modes=truth.n_modes,
        attrs=sample.attrs(),
        frames=frames,
        units={
            "records/inside": "bool (emitter centre inside the image: -0.5 <= x < W-0.5, -0.5 <= y < H-0.5)",
            "zernike_coeffs/phase": "rad (RMS-normalised Zernike phase, Noll order, index 0 = j 1)",
            "zernike_coeffs/mag": "1 (pupil amplitude Zernike coefficients, Noll order; 0 = none)",
            **_channel_units(sample),
            **({"frames": _units(sample)} if frames is not None else {}),
        },
    )
    if sample.config.output.write_csv:
        from z2t_dask.io.csv import write_records_csv

        write_records_csv(Path(folder) / "ground_truth.csv", _csv_records(sample, truth.parts()))
    return path


def _channel_units(sample: Sample) -> dict[str, str]:
    """``units`` of the per-channel truth columns of a multi-channel sample (none otherwise)."""
    if not sample.config.channels:
        return {}
    from z2t_dask.sample.channels import CHANNEL_UNITS

    return dict(CHANNEL_UNITS)


def _channel_parts(sample: Sample, parts: Iterator[tuple[dict, dict, dict]]) -> Iterator[tuple[dict, dict, dict]]:
    """``parts`` with the per-channel truth columns of a multi-channel sample added (unchanged otherwise)."""
    if not sample.config.channels:
        return parts
    from z2t_dask.sample.channels import with_channel_columns

    return with_channel_columns(sample, parts)


def _stack_shape(sample: Sample) -> tuple[int, ...]:
    """Shape of the stack as written: the frames', or a split-view sample's chip (T, H', W')."""
    if not sample.config.channels:
        return tuple(sample.frames.shape)
    from z2t_dask.sample.channels import frames_to_write

    return tuple(frames_to_write(sample).shape)


def _csv_records(sample: Sample, parts: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """The records of each truth part as CSV columns; a multi-channel sample's per-channel columns flattened."""
    if not sample.config.channels:
        return (p.records.as_dict() for p in parts)
    from z2t_dask.sample.channels import csv_channel_records

    return csv_channel_records(sample, parts)
