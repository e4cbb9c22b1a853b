"""One sample: :class:`Sample` (lazy frames + ground truth) and :func:`simulate`.

>>> import z2t_dask as z2t
>>> sample = z2t.simulate(None, seed=1)       # built-in default; frames are lazy
>>> sample.frames                               # doctest: +SKIP
dask.array<z2t-frames-…, shape=(100, 64, 64), dtype=uint16, chunksize=(32, 64, 64)>
>>> sample.save("out/sample_001")               # doctest: +SKIP

Writing a sample's files is :mod:`z2t_dask.sample.writing`; rendering an existing
``emitters.h5`` is :mod:`z2t_dask.sample.from_file`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask import __version__
from z2t_dask.config import SimulationConfig, config_to_dict, load_config
from z2t_dask.engine.assembly import aberration_field, make_camera, make_psf_model, make_zmap
from z2t_dask.engine.budget import check_resources
from z2t_dask.engine.render import FramePlan, frames_array
from z2t_dask.errors import ConfigError
from z2t_dask.physics.emitters import EmitterTable, Records
from z2t_dask.physics.truth import InMemoryTruth, SegmentedTruth, Truth, TruthPart, compact_records
from z2t_dask.physics.zmap import Zmap

__all__ = ["CONVENTIONS", "Sample", "mag_or_zeros", "sample_from_truth", "simulate"]

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
    "time (0, 1, k)); camera noise (1, frame, block_row, block_col) on a fixed 512x512 px grid; fixed-dipole "
    "orientations (12, id // 4096)",
    "depth": "depth_um = optical.focus_depth_um + z: height above the coverslip in um (>= 0); the focal plane "
    "lies focus_depth_um above the coverslip (psfmodels' zv)",
    "dipole": "fixed dipoles: dipole_polar_rad = angle from +z (optical axis, away from the objective) in "
    "[0, pi/2] (mu and -mu are the same dipole), dipole_azimuth_rad = from +x towards +y in [0, 2 pi); "
    "unit vector (sin t cos p, sin t sin p, cos t); isotropic = mean of x, y and z dipoles",
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
        return mag_or_zeros(self.truth.materialize(), self.truth.n_modes)

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
        storage_options: dict[str, Any] | None = None,
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
            The sample folder, e.g. ``out/sample_001`` (its name names the stack); a relative
            path is resolved from the current folder before anything is computed, also when the
            blocks are written by the workers of a distributed Client.
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
        storage_options
            For a URL ``path`` (``s3://bucket/prefix/sample_001``, ``gs://``, ``memory://``, ``file://``):
            options of its fsspec file system (credentials, ``endpoint_url``), over fsspec's defaults
            and ``$Z2T_STORAGE_OPTIONS``. A URL is written as :func:`z2t_dask.sample.remote.save_to_url`
            describes (committed by a marker written last) and returned as a string.
        """
        from z2t_dask.io.remote import is_url

        if is_url(path):  # an object store: no rename, the marker commits (sample/remote.py)
            from z2t_dask.sample.remote import save_to_url

            if not streaming:
                from z2t_dask.engine.streaming import require_memory
                from z2t_dask.sample.writing import memory_budget

                require_memory(self.frames, **memory_budget(self))
            url = save_to_url(
                self,
                str(path),
                format=format,
                compression=compression,
                overwrite=overwrite,
                scheduler=scheduler,
                prefetch=prefetch,
                streaming=streaming,
                storage_options=storage_options,
            )
            return url  # type: ignore[return-value]
        from z2t_dask.engine.allocator import tune_malloc
        from z2t_dask.io.atomic import atomic_dir, resumable_dir
        from z2t_dask.io.formats import get_format
        from z2t_dask.sample.exports import write_exports
        from z2t_dask.sample.writing import memory_budget, stack_fingerprint, write_ground_truth, write_stack

        height, width = self.frames.shape[-2:]
        tune_malloc(self.config.render.tune_malloc, frame_bytes=int(height) * int(width) * self.frames.dtype.itemsize)
        entry = get_format(format or self.config.output.format, "format")
        entry.check_compression(compression)
        if not streaming:
            from z2t_dask.engine.streaming import require_memory

            require_memory(self.frames, **memory_budget(self))  # refuse before creating anything
        final = Path(os.path.abspath(path))  # resolved here: tasks on a Client's workers run in other folders
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
            write_exports(self, Path(tmp), final.name)  # output.exports, beside emitters.h5
        log.info("wrote %s", final)
        return final

    def export(
        self, to: str, path: str | os.PathLike | None = None, *, include_outside: bool = False
    ) -> tuple[Path, ...]:
        """Write the ground truth for an SMLM tool: ``"thunderstorm"``, ``"decode"``, ``"picasso"`` or ``"smap"``.

        ``path`` is the main file or a folder (default: ``sample_<seed>`` + the tool's suffix here);
        records outside the image are left out unless ``include_outside``. Conventions, units and the
        Cramér–Rao precision columns: :mod:`z2t_dask.io.exporters`, :mod:`z2t_dask.sample.exports`.
        Returns the files written.
        """
        from z2t_dask.sample.exports import export_sample

        return export_sample(self, to, path, include_outside=include_outside)

    def compute(self, scheduler: str | None = "threads") -> np.ndarray:
        """All frames in memory (``scheduler`` as in ``dask.compute``; a local one's name costs no
        ``distributed`` import, :func:`~z2t_dask.engine.streaming.dask_get`)."""
        from z2t_dask.engine.streaming import dask_get

        return self.frames.compute(scheduler=dask_get(scheduler))

    def preview(self, path: str | os.PathLike, **kwargs: Any) -> Path:
        """PNG: frames with ground-truth markers, photon histogram.

        See :func:`z2t_dask.tools.preview.preview_sample` (needs matplotlib: ``pip install ".[plot]"``).
        """
        from z2t_dask.tools.preview import preview_sample

        return preview_sample(self, path, **kwargs)


def mag_or_zeros(part: TruthPart, n_modes: int) -> np.ndarray:
    """A part's magnitude coefficients, or a read-only zero view (no memory for 10^5 x K zeros)."""
    if part.mag is not None:
        return part.mag
    return np.broadcast_to(np.zeros((1, n_modes), np.float32), (len(part.emitters), n_modes))


def sample_from_truth(
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
    if cfg.channels:  # detection channels: (T, C, Y, X) frames (z2t_dask.sample.channels)
        from z2t_dask.sample.channels import channel_sample

        truth = InMemoryTruth(part, cfg.emitters.frames)
        return channel_sample(cfg, seed, truth, zmap_info, chunk_frames, tile_size, extra_attrs)
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
    frames = frames_array(  # an argument given (None: not given) is checked there, never replaced by the config
        plan,
        cfg.render.chunk_frames if chunk_frames is None else chunk_frames,
        tile_size=cfg.render.tile_size if tile_size is None else tile_size,
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


#: A truth of at least this many records + emitters (or of several segments) returns its drawing's
#: temporaries to the OS after :func:`simulate` draws it (~40 bytes a row: 40 MiB).
_TRIM_AFTER_ROWS = 1 << 20


def _chunk_argument(name: str, value: Any, what: str) -> int | None:
    """A chunking argument of :func:`simulate`: ``None`` (the config's ``render.<name>``) or an integer >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(
            [(name, f"must be an integer >= 1 ({what}) or None for render.{name} of the config, got {value!r}")]
        )
    return int(value)


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
        Frames per dask chunk, an integer >= 1 (default ``None``: ``render.chunk_frames``, else
        automatic from ``render.chunk_mb``).
    tile_size
        Side of the y/x tiles in px, an integer >= 1 (default ``None``: ``render.tile_size``, else
        whole frames unless a frame exceeds ``render.chunk_mb``). The bytes do not depend on the chunking.

    Raises
    ------
    ConfigError
        A bad config, seed, ``chunk_frames`` or ``tile_size`` (0, negative, not an integer); a ROI
        beyond the Zmap; or a sample whose memory cannot fit (the
        ground truth of ``emitters.num_emitters``, the bookkeeping of ``emitters.frames``, ...;
        :func:`z2t_dask.engine.budget.check_resources`), refused with the figure before anything
        is drawn.
    ZmapError
        A Zmap file that is missing, malformed or NaN everywhere.
    """
    if isinstance(config, SimulationConfig):
        cfg = config
    else:  # validated with the Zmap it will use (the ROI is checked against that one)
        cfg = load_config(config, overrides={"zmap_path": str(zmap)} if isinstance(zmap, (str, os.PathLike)) else None)
    if isinstance(zmap, (str, os.PathLike)):
        cfg = replace(cfg, zmap_path=str(zmap))  # a new config: the caller's is never changed
        zmap = None
    if seed is None:
        seed = cfg.emitters.seed if cfg.emitters.seed is not None else 0
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ConfigError([("seed", f"must be an integer in 0 .. 2**64 - 1, got {seed!r}")])
    chunk_frames = _chunk_argument("chunk_frames", chunk_frames, "frames per dask chunk")
    tile_size = _chunk_argument("tile_size", tile_size, "side of the y/x tiles in px")
    check_resources(cfg, chunk_frames=chunk_frames, tile_size=tile_size)  # before anything is drawn or planned
    zm = zmap if isinstance(zmap, Zmap) else make_zmap(cfg)
    truth = SegmentedTruth(cfg, int(seed), aberration_field(cfg, zm))
    if cfg.channels:  # detection channels (z2t_dask.engine.channels): (T, C, Y, X) frames
        from z2t_dask.sample.channels import channel_sample

        sample = channel_sample(cfg, int(seed), truth, zm.describe(), chunk_frames, tile_size)
    else:
        sample = _sample(cfg, int(seed), truth, zm.describe(), chunk_frames, tile_size=tile_size)
    # the temporaries of a long (or dense) sample's truth go back to the OS; a small truth's few MiB
    # are not worth a malloc_trim walk of the heap (~0.6 ms, a W1 training sample's is < 1 MiB)
    if cfg.render.tune_malloc and (truth.n_segments > 1 or truth.n_records + truth.n_emitters >= _TRIM_AFTER_ROWS):
        from z2t_dask.engine.allocator import release_free_memory

        release_free_memory()
    return sample
