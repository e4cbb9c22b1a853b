"""One sample end to end: config → emitters → per-emitter aberrations → lazy frames → files.

>>> import z2t_dask as z2t
>>> sample = z2t.simulate(None, seed=1)       # built-in default; frames are lazy
>>> sample.frames                               # doctest: +SKIP
dask.array<z2t-frames-…, shape=(100, 64, 64), dtype=uint16, chunksize=(32, 64, 64)>
>>> sample.save("out/sample_001")               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask import __version__
from z2t_dask.config import SimulationConfig, config_to_dict, load_config
from z2t_dask.engine.assembly import aberration_field, make_camera, make_psf_model, make_zmap
from z2t_dask.engine.render import FramePlan, frames_array
from z2t_dask.errors import ConfigError, FormatError
from z2t_dask.physics.emitters import EmitterTable, Records, inside_image
from z2t_dask.physics.truth import InMemoryTruth, SegmentedTruth, Truth, TruthPart, compact_records
from z2t_dask.physics.zmap import Zmap, legacy_to_noll

__all__ = [
    "Sample",
    "simulate",
    "render_emitters",
    "load_sample_h5",
    "write_stack",
    "write_tiff",
    "write_zarr",
    "write_hdf5",
    "write_ground_truth",
    "stack_fingerprint",
    "CONVENTIONS",
]

log = logging.getLogger("z2t_dask")

CONVENTIONS = {
    "axes": "frames (T, Y, X); x = column, y = row",
    "pixel_centre": "pixel (r, c) has its centre at (y=r, x=c) in camera pixels",
    "xy_unit": "camera pixels of the ROI (add tiff.crop_offset for chip coordinates)",
    "z_unit": "um; 0 = focal plane; positive = away from the coverslip (deeper into the sample)",
    "photons": "records/phot: photons collected in that frame; emitters/intensity: photons per full frame on",
    "zernike": "zernike_coeffs/*: Noll order (index 0 = j 1, piston), RMS-normalised over the unit pupil, radians",
    "frame_ix": "records/frame_ix = TIFF page index; every frame 0..T-1 is present",
    "random_streams": "numpy SeedSequence(seed, spawn_key=(purpose, ...)): emitters (0,) (samples of more "
    "than 1000 frames: segment sizes (0,), time segment k of 1000 frames of activation "
    "time (0, 1, k)); camera noise (1, frame, block_row, block_col) on a fixed 512x512 px grid",
}


@dataclass
class Sample:
    """One simulated sample: lazy frames plus its ground truth.

    Attributes
    ----------
    config : SimulationConfig
        The fully resolved configuration.
    seed : int
        The sample seed (all random streams derive from it).
    truth : Truth
        The ground truth. A long simulated sample draws it per time segment where needed
        (:mod:`z2t_dask.physics.truth`); writers stream it, so memory does not grow with the frames.
    frames : dask.array.Array
        Lazy ``(T, H, W)`` stack, chunked along T.
    plan : FramePlan
        What the frame blocks render from (the truth, the PSF model, the camera).

    The whole truth in memory, for notebooks and small samples (a long sample's is drawn
    once and kept when first asked for): :attr:`emitters` (x, y px; z µm; photons per frame
    on; on-interval in frames), :attr:`records` (photons per frame, inside flag),
    :attr:`zernike_phase` and :attr:`zernike_mag` (N, K) (Noll, rad RMS; ``zernike_mag``
    zero when the Zmap has none).
    """

    config: SimulationConfig
    seed: int
    truth: Truth
    frames: Any
    zmap_info: dict = field(default_factory=dict)
    extra_attrs: dict = field(default_factory=dict)
    plan: Any = field(default=None, repr=False)

    @property
    def emitters(self) -> EmitterTable:
        """Per-emitter truth (the whole sample; see :attr:`truth` to stream it)."""
        return self.truth.materialize().emitters

    @property
    def records(self) -> Records:
        """Per-(emitter, frame) truth, ordered by emitter id then frame."""
        return self.truth.materialize().records

    @property
    def zernike_phase(self) -> np.ndarray:
        """(N, K) float32 Zernike phase per emitter (Noll, rad RMS)."""
        return self.truth.materialize().phase

    @property
    def zernike_mag(self) -> np.ndarray:
        """(N, K) float32 pupil-amplitude coefficients per emitter (a read-only zero view when none)."""
        return _mag_or_zeros(self.truth.materialize(), self.truth.n_modes)

    @property
    def psf_info(self) -> dict[str, Any]:
        """The PSF model's description (mode, sampling and, for approximate modes, their error)."""
        psf = getattr(self.plan, "psf", None)
        if psf is None:
            return {}
        describe = getattr(psf, "describe", None)
        return describe() if callable(describe) else {"model": repr(psf)}

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape)

    def attrs(self) -> dict[str, Any]:
        """Provenance stored with every output."""
        o = self.config.optical
        return {
            "z2t_version": __version__,
            "zernike_convention": "noll-rad",
            "seed": int(self.seed),
            "config": json.dumps(config_to_dict(self.config), sort_keys=True),
            "conventions": json.dumps(CONVENTIONS, sort_keys=True),
            "zmap": json.dumps(self.zmap_info, sort_keys=True),
            "psf": json.dumps(self.psf_info, sort_keys=True, default=str),
            "pixel_size_nm": json.dumps([o.pixel_size_nm_x, o.pixel_size_nm_y]),
            "frames": int(self.frames.shape[0]),
            "image_shape": json.dumps(list(self.frames.shape[1:])),
            "dtype": str(self.frames.dtype),
            **self.extra_attrs,
        }

    def save(
        self,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        compression: str | None = None,
        overwrite: bool = False,
        scheduler: Any = "auto",
        prefetch: int = 2,
        streaming: bool = True,
    ) -> Path:
        """Write the sample folder ``<path>/<name>.<stack>`` + ``<path>/emitters.h5``, atomically.

        The folder is written under a temporary name and renamed when complete, so a crash never
        leaves a folder that looks finished. Frames stream block by block (bounded memory).
        OME-Zarr folders are resumable: the temporary name is fixed (``.<name>.partial``) and a
        rerun of the same sample (same config, seed and chunking) after an interruption stores
        only the blocks that are missing. Saving first tunes glibc's malloc for this process
        (one arena per core, fixed mmap and trim thresholds; ``render.tune_malloc``, see
        :mod:`z2t_dask.engine.allocator`), which keeps memory flat over long multi-threaded writes.

        Parameters
        ----------
        path
            The sample folder, e.g. ``out/sample_001`` (its name names the stack).
        format
            ``"ome-tiff"`` (``<name>.ome.tiff``), ``"ome-zarr"`` (``<name>.ome.zarr``),
            ``"hdf5"`` (``<name>.h5``, dataset ``frames``) or another format of the registry
            (:mod:`z2t_dask.io.formats`); default ``config.output.format``.
        compression
            Stack compression; default ``tiff.compression`` / ``output.zarr_compression`` /
            ``output.hdf5_compression``.
        overwrite
            Replace an existing folder.
        scheduler
            Dask scheduler for computing blocks: ``"auto"`` (the active distributed Client if
            any, else threads), ``"threads"``, ``"sync"``, ``None`` or ``client.get``.
        prefetch
            Blocks computed ahead of the ordered writers (TIFF, HDF5).
        streaming
            False computes the whole stack in memory first (the original ``--no_streaming``);
            refused with :class:`~z2t_dask.engine.streaming.MemoryBudgetError` when about twice the
            stack exceeds ``render.memory_budget_mb`` (default: the available memory).
        """
        from z2t_dask.engine.allocator import tune_malloc
        from z2t_dask.io.atomic import atomic_dir, resumable_dir
        from z2t_dask.io.formats import get_format

        tune_malloc(self.config.render.tune_malloc)
        entry = get_format(format or self.config.output.format, "format")
        entry.check_compression(compression)
        if not streaming:
            from z2t_dask.engine.streaming import require_memory

            require_memory(self.frames, **_memory_budget(self))  # refuse before creating anything
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        if entry.resumable:
            folder = resumable_dir(
                final, fingerprint=stack_fingerprint(self, entry.name, compression), overwrite=overwrite
            )
        else:
            folder = atomic_dir(final, overwrite=overwrite)
        with folder as tmp:
            stack = write_stack(
                self,
                Path(tmp) / entry.filename(final.name),
                format=entry.name,
                compression=compression,
                scheduler=scheduler,
                prefetch=prefetch,
                streaming=streaming,
            )
            write_ground_truth(self, Path(tmp), stack=(stack, entry.name))
        log.info("wrote %s", final)
        return final

    def compute(self, scheduler: str | None = "threads") -> np.ndarray:
        """All frames in memory."""
        return self.frames.compute(scheduler=scheduler)

    def preview(self, path: str | os.PathLike, **kwargs: Any) -> Path:
        """PNG: frames with ground-truth markers, photon histogram.

        See :func:`z2t_dask.tools.preview.preview_sample` (needs matplotlib: ``pip install ".[plot]"``).
        """
        from z2t_dask.tools.preview import preview_sample

        return preview_sample(self, path, **kwargs)


def stack_fingerprint(sample: Sample, fmt: str, compression: str | None = None) -> str:
    """Identity of a sample's stack on disk: config, seed, version, shape, chunks, dtype, format, codec."""
    import hashlib

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


def _memory_budget(sample: Sample) -> dict[str, Any]:
    """Arguments of the memory-budget check of a non-streaming write (``render.memory_budget_mb``)."""
    budget = sample.config.render.memory_budget_mb
    t, h, w = sample.frames.shape
    return {
        "budget_bytes": None if budget is None else budget * 2**20,
        "what": f"the {t}x{h}x{w} {sample.frames.dtype} stack",
    }


def _stream_options(sample: Sample) -> dict[str, Any]:
    """Memory options of every stack writer from ``render.*``: the budget of a non-streaming write,
    ``gc.collect()`` every ``render.gc_frequency`` blocks, malloc release when ``render.tune_malloc``."""
    return {
        "memory_budget_bytes": _memory_budget(sample)["budget_bytes"],
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
    return entry.write(
        Path(path),
        sample.frames,
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


def write_tiff(
    sample: Sample,
    path: Path,
    *,
    compression: str | None = None,
    scheduler: Any = "auto",
    prefetch: int = 2,
    streaming: bool = True,
) -> Path:
    """Stream a sample's frames into one OME-TIFF series ``(T, Y, X)`` (ordered; through the client if any)."""
    return write_stack(
        sample,
        path,
        format="ome-tiff",
        compression=compression,
        scheduler=scheduler,
        prefetch=prefetch,
        streaming=streaming,
    )


def write_zarr(
    sample: Sample,
    path: Path,
    *,
    compression: str | None = None,
    scheduler: Any = "auto",
    prefetch: int = 2,
    streaming: bool = True,
) -> Path:
    """Write a sample's frames as an OME-Zarr image, blocks stored in parallel (by the workers with a Client).

    Resumable: an interrupted write of the same sample continues where it stopped. ``prefetch``
    is unused (blocks are stored in any order).
    """
    return write_stack(
        sample,
        path,
        format="ome-zarr",
        compression=compression,
        scheduler=scheduler,
        prefetch=prefetch,
        streaming=streaming,
    )


def write_hdf5(
    sample: Sample,
    path: Path,
    *,
    compression: str | None = None,
    scheduler: Any = "auto",
    prefetch: int = 2,
    streaming: bool = True,
) -> Path:
    """Stream a sample's frames into ``<name>.h5`` (dataset ``frames``, HDF5 chunks of one frame or tile)."""
    return write_stack(
        sample,
        path,
        format="hdf5",
        compression=compression,
        scheduler=scheduler,
        prefetch=prefetch,
        streaming=streaming,
    )


def _mag_or_zeros(part: TruthPart, n_modes: int) -> np.ndarray:
    """A part's magnitude coefficients, or a read-only zero view (no memory for 10^5 x K zeros)."""
    if part.mag is not None:
        return part.mag
    return np.broadcast_to(np.zeros((1, n_modes), np.float32), (len(part.emitters), n_modes))


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
        frames = (sample.frames.shape, source)

    def parts() -> Iterator[tuple[dict, dict, dict]]:
        for p in truth.parts():
            e, r = p.emitters, p.records
            yield (
                {"xyz": e.xyz, "intensity": e.intensity, "t0": e.t0, "on_time": e.on_time, "id": e.id},
                {"xyz": r.xyz, "phot": r.phot, "frame_ix": r.frame_ix, "id": r.id, "inside": r.inside},
                {"phase": p.phase, "mag": _mag_or_zeros(p, truth.n_modes)},
            )

    path = Path(folder) / "emitters.h5"
    write_emitters_h5_parts(
        path,
        parts(),
        n_emitters=truth.n_emitters,
        n_records=truth.n_records,
        n_modes=truth.n_modes,
        attrs=sample.attrs(),
        frames=frames,
        units={
            "records/inside": "bool (emitter centre inside the image: -0.5 <= x < W-0.5, -0.5 <= y < H-0.5)",
            "zernike_coeffs/phase": "rad (RMS-normalised Zernike phase, Noll order, index 0 = j 1)",
            "zernike_coeffs/mag": "1 (pupil amplitude Zernike coefficients, Noll order; 0 = none)",
            **({"frames": _units(sample)} if frames is not None else {}),
        },
    )
    if sample.config.output.write_csv:
        from z2t_dask.io.csv import write_records_csv

        write_records_csv(Path(folder) / "ground_truth.csv", (p.records.as_dict() for p in truth.parts()))
    return path


def _sample_from_truth(
    cfg: SimulationConfig,
    seed: int,
    table: EmitterTable,
    records: Records,
    phase: np.ndarray,
    mag: np.ndarray | None,
    zmap_info: dict,
    chunk_frames: int | None,
    extra_attrs: dict | None = None,
    tile_size: int | None = None,
) -> Sample:
    """A sample rendering truth given as arrays (held in memory, records of a frame in their order)."""
    # Ground truth in the dtypes the file stores (float32 values; int32 indices in memory): the
    # PSFs are rendered from exactly the stored coefficients.
    part = TruthPart(
        emitters=table,
        records=compact_records(records),
        phase=np.ascontiguousarray(phase, np.float32),
        mag=None if mag is None else np.ascontiguousarray(mag, np.float32),
    )
    return _sample(cfg, seed, InMemoryTruth(part, cfg.emitters.frames), zmap_info, chunk_frames, extra_attrs, tile_size)


def _sample(
    cfg: SimulationConfig,
    seed: int,
    truth: Truth,
    zmap_info: dict,
    chunk_frames: int | None,
    extra_attrs: dict | None = None,
    tile_size: int | None = None,
) -> Sample:
    plan = FramePlan(
        seed=int(seed),
        frames=cfg.emitters.frames,
        image_shape=cfg.image_shape,
        truth=truth,
        psf=make_psf_model(cfg),
        camera=make_camera(cfg),
        background=float(cfg.background.photons),
        psf_batch=int(cfg.psf.batch_size),
    )
    frames = frames_array(
        plan,
        chunk_frames or cfg.render.chunk_frames,
        tile_size=tile_size or cfg.render.tile_size,
        chunk_mb=cfg.render.chunk_mb,
    )
    return Sample(
        config=cfg,
        seed=int(seed),
        truth=truth,
        frames=frames,
        zmap_info=zmap_info,
        extra_attrs=extra_attrs or {},
        plan=plan,
    )


def simulate(
    config: str | os.PathLike | Mapping[str, Any] | SimulationConfig | None = None,
    seed: int | None = None,
    *,
    zmap: str | os.PathLike | Zmap | None = None,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
) -> Sample:
    """Simulate one sample lazily.

    Emitters and records are drawn now (milliseconds; a sample of more than
    :data:`~z2t_dask.physics.truth.TRUTH_SEGMENT_FRAMES` frames keeps only their per-segment summary
    and draws each segment again where it is rendered or written); frames are a lazy dask
    array (nothing rendered until computed or saved).

    Parameters
    ----------
    config
        Path, dict, :class:`SimulationConfig` or ``None`` (built-in default).
    seed
        Sample seed (non-negative int). Default: ``emitters.seed`` of the config, else 0.
    zmap
        Overrides ``zmap_path``: a Zmap file or a :class:`~z2t_dask.physics.zmap.Zmap` object.
    chunk_frames
        Frames per dask chunk (default ``render.chunk_frames``, else automatic from ``render.chunk_mb``).
    tile_size
        Side of the y/x tiles in px (default ``render.tile_size``, else whole frames unless a
        frame exceeds ``render.chunk_mb``). The bytes do not depend on the chunking.
    """
    cfg = config if isinstance(config, SimulationConfig) else load_config(config)
    if isinstance(zmap, (str, os.PathLike)):
        cfg = replace(cfg, zmap_path=str(zmap))  # a new config: the caller's is never changed
        zmap = None
    if seed is None:
        seed = cfg.emitters.seed if cfg.emitters.seed is not None else 0
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError([("seed", f"must be a non-negative integer, got {seed!r}")])
    zm = zmap if isinstance(zmap, Zmap) else make_zmap(cfg)
    truth = SegmentedTruth(cfg, int(seed), aberration_field(cfg, zm))
    sample = _sample(cfg, int(seed), truth, zm.describe(), chunk_frames, tile_size=tile_size)
    if cfg.render.tune_malloc:  # the temporaries of a long sample's truth go back to the OS
        from z2t_dask.engine.allocator import release_free_memory

        release_free_memory()
    return sample


def load_sample_h5(
    h5_path: str | os.PathLike,
    config=None,
    *,
    seed: int = 0,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
) -> Sample:
    """A :class:`Sample` rendering the emitters and records of an existing ``emitters.h5``.

    Files written by the original tool carry legacy 21-index coefficients (read through the
    ``legacy21`` convention); files written by z2t declare Noll/rad. Without ``zernike_coeffs``
    the coefficients come from the config's Zmap. Positions are ROI pixels; ``frames`` is
    ``emitters.frames`` of the config or, if larger, ``max(records/frame_ix) + 1``.
    """
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    cfg = config if isinstance(config, SimulationConfig) else load_config(config)
    f = read_emitters_h5(h5_path)
    em, rec = f.emitters, f.records
    xyz = np.asarray(em["xyz"], np.float64)
    n = xyz.shape[0]
    ids = np.asarray(em.get("id", np.arange(n)), np.int64)
    if not np.array_equal(ids, np.arange(n)):
        raise FormatError(f"{h5_path}: emitters/id must be 0..N-1 in order")
    frame_ix = np.asarray(rec["frame_ix"], np.int64)
    frames = max(int(cfg.emitters.frames), int(frame_ix.max()) + 1 if frame_ix.size else 0)
    if frames != cfg.emitters.frames:  # a new config: the caller's is never changed
        cfg = replace(cfg, emitters=replace(cfg.emitters, frames=frames))
    rec_xyz = np.asarray(rec["xyz"], np.float64)
    rec_ids = np.asarray(rec["id"], np.int64)
    if rec_ids.size and (rec_ids.min() < 0 or rec_ids.max() >= n):
        raise FormatError(f"{h5_path}: records/id out of range 0..{n - 1}")
    inside = inside_image(rec_xyz[:, :2], cfg.image_shape)
    records = Records(
        xyz=rec_xyz, phot=np.asarray(rec["phot"], np.float64), frame_ix=frame_ix, id=rec_ids, inside=inside
    )
    table = EmitterTable(
        xyz=xyz,
        intensity=np.asarray(em.get("intensity", np.zeros(n)), np.float64),
        t0=np.asarray(em.get("t0", np.zeros(n)), np.float64),
        on_time=np.asarray(em.get("on_time", np.zeros(n)), np.float64),
        id=ids,
    )
    zc = f.zernike_coeffs
    k = cfg.psf.n_modes
    declared = str(f.attrs.get("zernike_convention", "")) if f.attrs else ""
    if zc and "phase" in zc and zc["phase"].shape[0] == n:
        ph = np.asarray(zc["phase"], np.float64)
        mg = np.asarray(zc.get("mag", np.zeros_like(ph)), np.float64)
        if "z2t_version" in f.attrs or declared == "noll-rad":
            phase = np.zeros((n, k))
            phase[:, : min(k, ph.shape[1])] = ph[:, :k]
            mag = np.zeros((n, k))
            mag[:, : min(k, mg.shape[1])] = mg[:, :k]
            info = {"kind": "emitters.h5", "source_convention": "noll", "path": str(h5_path)}
        else:
            phase = legacy_to_noll(ph, k)
            mag = legacy_to_noll(mg, k, warn=False)
            mag[:, 0] = 0.0
            info = {"kind": "emitters.h5", "source_convention": "legacy21", "path": str(h5_path)}
        phase = phase * cfg.zernike.scale
        mag = mag if np.any(np.abs(mag) > 1e-9) else None
    elif zc and "phase" in zc:
        raise FormatError(
            f"{h5_path}: zernike_coeffs/phase has {zc['phase'].shape[0]} rows for {n} emitters "
            "(the original's crop bug, D13); drop zernike_coeffs to recompute them from the Zmap"
        )
    else:
        field = aberration_field(cfg)
        phase, mag = field(xyz[:, :2])
        info = field.describe()
    return _sample_from_truth(
        cfg,
        seed,
        table,
        records,
        phase,
        mag,
        info,
        chunk_frames,
        extra_attrs={"rendered_from": str(h5_path)},
        tile_size=tile_size,
    )


def render_emitters(h5_path: str | os.PathLike, config=None, *, seed: int = 0, chunk_frames: int | None = None):
    """Lazy frames ``(T, H, W)`` of an existing ``emitters.h5`` (e.g. one the original wrote)."""
    return load_sample_h5(h5_path, config, seed=seed, chunk_frames=chunk_frames).frames
