"""What a sample will need, known before anything is planned: memory and disk, with the figures.

:func:`estimate_resources` sizes, from a validated config alone (nothing drawn, nothing built):

* the **ground truth** held at once: the largest time segment while it is drawn (positions,
  activation intervals, float64 aberrations before their float32 copy) plus the segments a
  process caches (:data:`~z2t_dask.physics.truth.SEGMENT_CACHE`);
* the **render**: one chunk per worker thread (the output block, the float32 photons of its
  noise-aligned region and the camera's temporaries of one noise block);
* the **PSF library** of ``psf.mode = "fast"`` (its cap ``psf.fast_max_mib``);
* the **bookkeeping** that grows with the frames: the lazy array's task graph (about
  :data:`GRAPH_BYTES_PER_BLOCK` per chunk), the truth's segment summaries and the writers'
  per-frame records (page offsets, OME planes);
* the **stack** on disk, uncompressed, and the blocks of whole frames that ordered writers
  (OME-TIFF, HDF5) hold.

:func:`check_resources` compares the memory with what is available now and raises a
:class:`~z2t_dask.errors.ConfigError` naming the key that dominates, with the figure, e.g.
``emitters.num_emitters: the ground truth would need ~446 GiB ...``. The per-item constants are
measured on this package (NumPy 2, dask 2024+) and rounded up: an estimate refuses only what
could not run, never a job that fits (the full-chip example, 1200x1200 px x 10,000 frames,
needs well under 1 GiB).

Units: bytes throughout (figures in messages in GiB/MiB).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from z2t_dask.config import SimulationConfig
from z2t_dask.errors import ConfigError

__all__ = [
    "GRAPH_BYTES_PER_BLOCK",
    "estimate_resources",
    "check_resources",
    "check_writer_memory",
    "format_bytes",
    "stack_dtype",
]

#: Memory of one chunk of the lazy frame array (task, key, block bounds), bytes; measured ~1.5 KiB.
GRAPH_BYTES_PER_BLOCK = 2048
#: Memory of one time segment's summary in the ground truth, bytes.
SEGMENT_SUMMARY_BYTES = 512
#: Memory per frame of the writers' bookkeeping (TIFF page offsets, OME planes), bytes; measured ~45.
FRAME_BOOKKEEPING_BYTES = 64
#: Peak bytes per emitter while a segment is drawn, plus this many per Zernike mode (float64 + float32).
EMITTER_DRAW_BYTES, EMITTER_DRAW_BYTES_PER_MODE = 96, 12
#: Peak bytes per record while a segment is drawn (interval binning, sorting, the record columns).
RECORD_DRAW_BYTES = 48
#: Bytes per emitter (plus 4 per mode, 8 with a file Zmap's magnitudes) and per record a cached segment holds.
EMITTER_STORED_BYTES, RECORD_STORED_BYTES = 48, 25
#: The camera's float64 temporaries of one noise block, per pixel (Poisson, gain, read noise, ADC).
CAMERA_BYTES_PER_PIXEL = 48


def format_bytes(n: float) -> str:
    """``n`` bytes as ``"~1.5 GiB"`` / ``"~12 MiB"`` / ``"~3 KiB"`` (binary units)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"~{value:,.1f} {unit}" if value < 10 else f"~{value:,.0f} {unit}"
    return f"{int(n)} bytes"


def stack_dtype(cfg: SimulationConfig) -> np.dtype:
    """The frames' dtype of a config's camera (without building it): unsigned ADU or float32 photons."""
    from z2t_dask.physics.camera.common import uint_dtype

    if cfg.camera.model in ("emccd", "scmos"):
        return np.dtype(uint_dtype(int(cfg.camera.bit_depth)))
    return np.dtype(np.float32)


def _records_per_emitter(cfg: SimulationConfig) -> tuple[float, float]:
    """``(records of one emitter's whole life, activation window length)`` in frames, expected."""
    from z2t_dask.physics.emitters import activation_window

    e = cfg.emitters
    lo, hi = activation_window(e)
    if e.model == "single":
        life_records = float(e.lifetime_avg) + 1.0
    else:  # on periods until bleaching: 1 / p_bleach of them, each mean_on (+1 partial frame) long
        k_dark, k_bleach = 1.0 / e.t_on, 1.0 / e.t_bleach
        mean_on, p_bleach = 1.0 / (k_dark + k_bleach), k_bleach / (k_dark + k_bleach)
        life_records = (mean_on + 1.0) / p_bleach
    return min(life_records, float(e.frames)), max(hi - lo, 1.0)


def estimate_resources(
    cfg: SimulationConfig,
    *,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
    workers: int | None = None,
    n_emitters: int | None = None,
    n_records: int | None = None,
    prefetch: int = 2,
) -> dict[str, Any]:
    """Memory and disk a sample of ``cfg`` needs (bytes), from the config alone.

    Parameters
    ----------
    cfg : SimulationConfig
        A validated config.
    chunk_frames, tile_size : int, optional
        Chunking (default ``render.chunk_frames`` / ``render.tile_size``, else automatic from
        ``render.chunk_mb``), as :func:`z2t_dask.engine.render.choose_chunks` resolves it.
    workers : int, optional
        Threads rendering chunks at once (default the CPU count).
    n_emitters, n_records : int, optional
        A truth already in memory (an existing ``emitters.h5``): its size instead of the drawn
        truth's, and no draw.
    prefetch : int
        Blocks of whole frames the ordered writers compute ahead.

    Returns
    -------
    dict
        ``truth_bytes``, ``render_bytes``, ``psf_library_bytes``, ``bookkeeping_bytes`` and their
        sum ``memory_bytes``; ``stack_bytes`` (the uncompressed stack), ``ordered_writer_bytes``
        (the blocks of whole frames an OME-TIFF / HDF5 writer holds), and the figures they come
        from: ``frames``, ``image_shape``, ``dtype``, ``chunks`` (frames, rows, columns),
        ``n_blocks``, ``n_segments``, ``segment_emitters``, ``segment_records``, ``n_emitters``,
        ``n_records`` (expected), ``workers``.
    """
    from z2t_dask.engine.render import NOISE_BLOCK, choose_chunks
    from z2t_dask.physics.truth import SEGMENT_CACHE, TRUTH_SEGMENT_FRAMES

    e, k = cfg.emitters, int(cfg.psf.n_modes)
    frames = int(e.frames)
    h, w = cfg.image_shape
    dtype = stack_dtype(cfg)
    itemsize = dtype.itemsize
    ct, ty, tx = choose_chunks(
        (h, w),
        frames,
        itemsize,
        chunk_mb=cfg.render.chunk_mb,
        chunk_frames=cfg.render.chunk_frames if chunk_frames is None else chunk_frames,  # 0 is refused there
        tile_size=cfg.render.tile_size if tile_size is None else tile_size,
    )
    n_blocks = -(-frames // ct) * -(-h // ty) * -(-w // tx)
    workers = max(1, int(workers or os.cpu_count() or 1))
    stored_emitter = EMITTER_STORED_BYTES + (8 if cfg.zmap_path else 4) * k  # phase (+ a file Zmap's magnitudes)

    # ground truth
    n_segments = max(1, -(-frames // TRUTH_SEGMENT_FRAMES))
    if n_emitters is not None:  # given in memory: held once, nothing drawn
        n_em, n_rec = int(n_emitters), int(n_records or 0)
        seg_em, seg_rec = n_em, n_rec
        truth = n_em * stored_emitter + n_rec * RECORD_STORED_BYTES
        n_segments = 1
    else:
        life_records, window = _records_per_emitter(cfg)
        n_em = int(e.num_emitters)
        n_rec = int(n_em * life_records * min(1.0, frames / window))
        if n_segments == 1:
            seg_em, seg_rec = n_em, n_rec
        else:  # the largest activation window of a segment: an end one, with the padding
            pad = (window - (frames - 1)) / 2
            mean = n_em * min(1.0, (TRUTH_SEGMENT_FRAMES + pad) / window)
            seg_em = min(n_em, int(mean + 4.0 * mean**0.5) + 1)  # a high quantile of its multinomial share
            seg_rec = int(seg_em * life_records)
        draw = seg_em * (EMITTER_DRAW_BYTES + EMITTER_DRAW_BYTES_PER_MODE * k) + seg_rec * RECORD_DRAW_BYTES
        # one segment is drawn once and kept (the draw's peak covers it); else the cache's segments besides
        kept = 0 if n_segments == 1 else SEGMENT_CACHE * (seg_em * stored_emitter + seg_rec * RECORD_STORED_BYTES)
        truth = draw + kept

    # render: one chunk per thread
    aligned = min(h, (-(-ty // NOISE_BLOCK) + 1) * NOISE_BLOCK) * min(w, (-(-tx // NOISE_BLOCK) + 1) * NOISE_BLOCK)
    per_chunk = ct * ty * tx * itemsize + 4 * aligned + CAMERA_BYTES_PER_PIXEL * min(aligned, NOISE_BLOCK**2)
    render = min(workers, n_blocks) * per_chunk
    n_channels = max(1, len(cfg.channels))  # detection channels: C frames per frame, one PSF library each
    library = n_channels * int(cfg.psf.fast_max_mib * 2**20) if cfg.psf.mode == "fast" else 0
    bookkeeping = n_blocks * GRAPH_BYTES_PER_BLOCK + n_segments * SEGMENT_SUMMARY_BYTES
    bookkeeping += frames * FRAME_BOOKKEEPING_BYTES
    frame_bytes = h * w * itemsize * n_channels
    return {
        "truth_bytes": int(truth),
        "render_bytes": int(render),
        "psf_library_bytes": library,
        "bookkeeping_bytes": int(bookkeeping),
        "memory_bytes": int(truth + render + library + bookkeeping),
        "stack_bytes": frames * frame_bytes,
        "ordered_writer_bytes": (max(0, int(prefetch)) + 2) * ct * frame_bytes,
        "frames": frames,
        "image_shape": (h, w),
        "dtype": str(dtype),
        "chunks": (ct, ty, tx),
        "n_blocks": n_blocks,
        "n_segments": n_segments,
        "segment_emitters": seg_em,
        "segment_records": seg_rec,
        "n_emitters": n_em,
        "n_records": n_rec,
        "workers": workers,
    }


def _available() -> int:
    from z2t_dask.engine.streaming import available_memory_bytes

    return available_memory_bytes()


def check_resources(
    cfg: SimulationConfig, estimate: dict[str, Any] | None = None, *, available_bytes: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Refuse, before anything is drawn or planned, a sample whose memory cannot fit; return the estimate.

    Parameters
    ----------
    cfg : SimulationConfig
        A validated config.
    estimate : dict, optional
        From :func:`estimate_resources` (default: estimated here with ``kwargs``).
    available_bytes : int, optional
        Memory available (default: what the system has available now).

    Raises
    ------
    ConfigError
        When ``memory_bytes`` exceeds the available memory; the message names the key that
        dominates (``emitters.num_emitters``, ``emitters.frames``, ``render.*``,
        ``psf.fast_max_mib``) and gives the figure it would need.
    """
    est = estimate_resources(cfg, **kwargs) if estimate is None else estimate
    avail = _available() if available_bytes is None else int(available_bytes)
    need = est["memory_bytes"]
    if need <= avail:
        return est
    t, (h, w) = est["frames"], est["image_shape"]
    ct, ty, tx = est["chunks"]
    parts = {
        "truth": est["truth_bytes"],
        "render": est["render_bytes"],
        "library": est["psf_library_bytes"],
        "bookkeeping": est["bookkeeping_bytes"],
    }
    top = max(parts, key=lambda name: parts[name])
    if top == "truth":
        seg = "" if est["n_segments"] == 1 else " in its largest time segment of 1000 frames"
        key = "emitters.num_emitters"
        what = (
            f"the ground truth would need {format_bytes(parts[top])}{seg} ({est['segment_emitters']:,} emitters, "
            f"~{est['segment_records']:,} records)"
        )
        fix = "use fewer emitters (or spread them over more frames: the truth is drawn per 1000-frame segment)"
    elif top == "bookkeeping":
        key = "emitters.frames"
        what = (
            f"{t:,} frames would need {format_bytes(parts[top])} for their task graph ({est['n_blocks']:,} chunks "
            f"of {ct} frames) and the writers' per-frame records"
        )
        fix = "use fewer frames (several samples), or more frames per chunk (render.chunk_frames)"
    elif top == "library":
        key = "psf.fast_max_mib"
        what = f"the fast PSF library may use {format_bytes(parts[top])}"
        fix = "lower psf.fast_max_mib or use psf.mode 'exact'"
    else:
        key = "render.chunk_frames" if cfg.render.chunk_frames else "render.chunk_mb"
        what = (
            f"rendering {est['workers']} chunks of {ct}x{ty}x{tx} px at once (one per thread) would need "
            f"{format_bytes(parts[top])}"
        )
        fix = "use smaller chunks (render.chunk_frames, render.tile_size, render.chunk_mb)"
    raise ConfigError(
        [
            (
                key,
                f"{what}; the sample ({t:,} frames of {h}x{w} px) needs {format_bytes(need)} of memory in all but "
                f"{format_bytes(avail)} is available: {fix}",
            )
        ]
    )


def check_writer_memory(
    estimate: dict[str, Any], *, available_bytes: int | None = None, key: str = "tiff.roi_size"
) -> None:
    """Refuse an ordered (whole-frame) write whose blocks of frames cannot fit in memory.

    OME-TIFF and HDF5 writers take blocks of whole frames in order (``prefetch + 2`` blocks at
    once); OME-Zarr stores tiles and needs none of this.

    Raises
    ------
    ConfigError
        Naming ``key`` with the figure, when ``ordered_writer_bytes`` plus ``memory_bytes``
        exceed the available memory.
    """
    avail = _available() if available_bytes is None else int(available_bytes)
    need = estimate["ordered_writer_bytes"] + estimate["memory_bytes"]
    if need <= avail:
        return
    (h, w), ct = estimate["image_shape"], estimate["chunks"][0]
    raise ConfigError(
        [
            (
                key,
                f"writing whole frames of {h}x{w} px in order (OME-TIFF, HDF5) holds blocks of {ct} frame(s) "
                f"({format_bytes(estimate['ordered_writer_bytes'])} in all; {format_bytes(need)} with the render) but "
                f"{format_bytes(avail)} is available: use a smaller ROI, fewer frames per chunk "
                "(render.chunk_frames) or the tiled OME-Zarr format",
            )
        ]
    )
