"""The lazy ``(T, Y, X)`` dask array of one sample and its deterministic random streams.

This is the only module that builds a per-sample task graph. Frames are chunked along T and,
for large images, along Y and X (tiles) with :func:`dask.array.map_blocks`; each block

1. selects the ground-truth records of its frames whose PSF patch reaches the block (an emitter
   near a tile border lights every tile its ``patch_size`` patch overlaps: the block renders
   with a margin of ``patch_size // 2`` px),
2. computes the PSF of each of those emitters once (the PSF code guarantees an emitter's PSF is
   bit-identical whatever batch it is computed in; fixed dipoles pass their orientation),
3. adds ``phot × PSF`` of every record into its frame, records of a frame always in the same
   order (float64 sums), so a pixel's value does not depend on the chunking,
4. adds the background and applies the camera on a **fixed noise grid** of
   ``NOISE_BLOCK × NOISE_BLOCK`` px blocks: block ``(by, bx)`` of frame ``t`` draws from
   ``SeedSequence(seed, spawn_key=(PURPOSE_NOISE, t, by, bx))``. A chunk renders the expected
   photons of every noise block it overlaps, records them, and keeps its own part.

Hence the same seed gives the same bytes for any frame chunking, any tiling and any scheduler,
and every frame ``0..T-1`` exists whether or not an emitter is on in it. Tiles that are
multiples of ``NOISE_BLOCK`` (the automatic choice) never redraw a neighbour's noise.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from z2t_dask.engine.patch_sums import SMALL_REGION_PX, add_patches
from z2t_dask.errors import ConfigError
from z2t_dask.physics.emitters import dipole_vectors
from z2t_dask.physics.optics.psf import PupilPSF
from z2t_dask.physics.optics.psf_library import PSFLibrary
from z2t_dask.physics.random_streams import PURPOSE_EMITTERS, PURPOSE_NOISE, stream
from z2t_dask.physics.truth_parts import unique_inverse

if TYPE_CHECKING:
    from z2t_dask.physics.truth import RecordWindow, Truth

__all__ = [
    "PURPOSE_EMITTERS",
    "PURPOSE_NOISE",
    "NOISE_BLOCK",
    "DEFAULT_CHUNK_MB",
    "MAX_AUTO_CHUNK_FRAMES",
    "stream",
    "noise_stream",
    "FramePlan",
    "expected_signal",
    "render_block",
    "choose_chunks",
    "frames_array",
]

#: Side (px) of the fixed camera-noise grid. Part of the random-stream definition: changing it
#: changes every noisy frame, so it is not a setting. Each block costs a generator and a camera
#: call (~20 NumPy calls holding the GIL): at 256 px two threads rendered a 1200² frame in 28 ms,
#: at 512 px in 18.7 ms (measured), while tiles stay reasonably fine-grained.
NOISE_BLOCK = 512
#: Default target size of one output chunk (MiB) for the automatic chunking.
DEFAULT_CHUNK_MB = 12.0
#: Upper bound of the automatic frames per chunk (keeps small-frame samples parallel).
MAX_AUTO_CHUNK_FRAMES = 32

#: A rectangle of the image ``(y0, y1, x0, x1)``: rows ``[y0, y1)``, columns ``[x0, x1)`` (px).
Region = tuple[int, int, int, int]


def noise_stream(seed: int, t: int, block_row: int, block_col: int) -> np.random.Generator:
    """Camera-noise stream of noise block ``(block_row, block_col)`` of frame ``t``.

    The block covers rows ``[block_row·NOISE_BLOCK, (block_row+1)·NOISE_BLOCK)`` and the
    matching columns of the image (clipped at the image edge), whatever the dask chunking.
    """
    return stream(seed, PURPOSE_NOISE, t, block_row, block_col)


@dataclass
class FramePlan:
    """Everything a frame block needs (embedded once in the graph).

    The ground truth is the sample's own :class:`~z2t_dask.physics.truth.Truth`: a block asks it for the
    records of its frames (:meth:`~z2t_dask.physics.truth.Truth.window`, by frame then emitter id), so a
    long sample's truth is drawn segment by segment where it is needed, never held whole.
    """

    seed: int
    frames: int
    image_shape: tuple[int, int]
    truth: Truth
    psf: PupilPSF | PSFLibrary
    camera: Any
    background: float  # photons / px / frame
    psf_batch: int = 256
    #: Spawn-key prefix of the camera noise: empty = ``(PURPOSE_NOISE,)`` (a single-channel sample);
    #: channel ``c`` of a multi-channel sample: ``(PURPOSE_CHANNEL_NOISE, c)`` (z2t_dask.engine.channels).
    noise_key: tuple[int, ...] = ()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(getattr(self.camera, "dtype", np.float32))

    def _all(self) -> RecordWindow:
        return self.truth.window(0, self.frames)

    @property
    def rec_frame(self) -> np.ndarray:
        """Frames of all records in render order (materialises the window of every frame)."""
        return self._all().frame_ix

    @property
    def rec_id(self) -> np.ndarray:
        """Emitter ids of all records in render order."""
        return self._all().ids

    @property
    def rec_phot(self) -> np.ndarray:
        """Photons of all records in render order."""
        return self._all().phot

    @property
    def em_xyz(self) -> np.ndarray:
        """Positions of all emitters by id (materialises the truth)."""
        return self.truth.materialize().emitters.xyz

    @property
    def em_phase(self) -> np.ndarray:
        """Zernike phase of all emitters by id (materialises the truth)."""
        return self.truth.materialize().phase

    @property
    def em_mag(self) -> np.ndarray | None:
        """Zernike magnitude of all emitters by id, or None (materialises the truth)."""
        return self.truth.materialize().mag


@dataclass
class _SignalPrep:
    """PSF patches and placements of the records that reach one region, for frames ``[t0, t1)``."""

    region: Region
    psfs: np.ndarray  # (U, ps, ps) float32, one per emitter
    inv: np.ndarray  # (R,) row of psfs of each kept record
    cx: np.ndarray  # (R,) int64 centre column (image px)
    cy: np.ndarray  # (R,) int64 centre row
    phot: np.ndarray  # (R,) float32 photons (summed in float64)
    bounds: np.ndarray  # (t1 - t0 + 1,) record offsets per frame


def _prepare_signal(plan: FramePlan, t0: int, t1: int, region: Region) -> _SignalPrep:
    """Select the records of frames ``[t0, t1)`` whose PSF patch overlaps ``region``; compute their PSFs."""
    y0, y1, x0, x1 = region
    ps = plan.psf.patch_size
    c = ps // 2
    win = plan.truth.window(t0, t1)
    em_xyz = win.em_xyz
    centre = np.floor(em_xyz[win.em, :2] + 0.5).T.astype(np.int64, order="C")  # (2, R): contiguous rows
    cx, cy = centre[0], centre[1]
    inside = (cx + c >= x0) & (cx - c < x1) & (cy + c >= y0) & (cy - c < y1)
    em, frame_ix, phot = win.em, win.frame_ix, win.phot
    if not inside.all():  # (a region that holds every record's patch, e.g. a whole small frame, keeps them all)
        keep = np.flatnonzero(inside)
        em, frame_ix, phot, cx, cy = em[keep], frame_ix[keep], phot[keep], cx[keep], cy[keep]
    uniq, inv = unique_inverse(em, em_xyz.shape[0])
    xy = em_xyz[uniq, :2]
    d = xy - np.floor(xy + 0.5)
    # fixed dipoles: unit vectors (mu_x, mu_y, mu_z) from the truth's angles; isotropic: no argument
    dip = None if win.em_dipole is None else dipole_vectors(win.em_dipole[uniq, 0], win.em_dipole[uniq, 1])
    # A fast library interpolates all of a block's emitters in one call: it visits them in table
    # order, so each table row is read from memory once (W1: 21 -> 9 ms per sample); it computes
    # its exact fallbacks in batches of its own. An emitter's PSF does not depend on its batch.
    step = plan.psf_batch if isinstance(plan.psf, PupilPSF) else max(1, uniq.size)
    if 0 < uniq.size <= step:  # one batch: its patches as they come (no copy of a few MiB)
        psfs = _psf_batch(plan, win, uniq, d, dip, slice(None))
        psfs = np.ascontiguousarray(psfs, np.float32).reshape(uniq.size, ps, ps)
    else:
        psfs = np.empty((uniq.size, ps, ps), np.float32)
        for b0 in range(0, uniq.size, step):
            sl = slice(b0, b0 + step)
            psfs[sl] = _psf_batch(plan, win, uniq, d, dip, sl)
    bounds = np.searchsorted(frame_ix, np.arange(t0, t1 + 1))
    return _SignalPrep(region=region, psfs=psfs, inv=inv, cx=cx, cy=cy, phot=phot, bounds=bounds)


def _psf_batch(plan: FramePlan, win: RecordWindow, uniq: np.ndarray, d: np.ndarray, dip: Any, sl: slice) -> Any:
    """PSF patches of the emitters ``uniq[sl]`` of a window (``d``: their sub-pixel offsets; ``dip``: dipoles)."""
    return plan.psf.compute(
        win.em_phase[uniq[sl]],
        win.em_xyz[uniq[sl], 2],
        d[sl, 0],
        d[sl, 1],
        None if win.em_mag is None else win.em_mag[uniq[sl]],
        dipole=None if dip is None else dip[sl],
    )


def _frame_signal(prep: _SignalPrep, f: int, out: np.ndarray, background: np.float32 | None = None) -> np.ndarray:
    """Write the photons of the ``f``-th frame of ``prep`` into ``out`` (region-sized float32 C-contiguous).

    ``out`` = float32(signal) + ``background`` (float32 addition; no background: the signal alone).
    Contributions to a pixel are summed in float64 in record order, which does not depend on the
    region: a tile equals the same rectangle of the whole frame bit for bit
    (:data:`z2t_dask.engine.patch_sums.add_patches`, compiled when numba is installed; the scratch
    it sums into is this thread's, kept from block to block).
    """
    _signal_writer(prep, out, background)(f)
    return out


def _signal_writer(prep: _SignalPrep, out: np.ndarray, background: np.float32 | None = None) -> Callable[[int], None]:
    """``write(f)``: :func:`_frame_signal` of frame ``f`` into ``out``, with the per-block lookups done once."""
    y0, y1, x0, x1 = prep.region
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    bg = np.float32(0.0 if background is None else background)
    scratch = _thread_buffer("scratch", (y1 - y0, x1 - x0), np.float64, zeros=True)
    # Large regions (full-chip frames: a few dozen patches over a million pixels) take the NumPy
    # definition: the compiled loops would save ~0.5 ms of ~20 per frame and cost numba's ~110 MiB
    # of memory and ~1 s of loading. Both give the same bits.
    kernel = add_patches if (y1 - y0) * (x1 - x0) <= SMALL_REGION_PX else add_patches.reference
    bounds = prep.bounds.tolist()
    psfs, inv, cy, cx, phot = prep.psfs, prep.inv, prep.cy, prep.cx, prep.phot

    def write(f: int) -> None:
        try:
            kernel(out, scratch, psfs, inv, cy, cx, phot, bounds[f], bounds[f + 1], y0, x0, bg)
        except BaseException:
            _drop_thread_buffer("scratch")  # possibly not all zeros any more
            raise

    return write


#: Per-thread buffers of :func:`_thread_buffer` (one per name).
_THREAD_BUFFERS = threading.local()
#: Buffers larger than this (bytes) are not kept between blocks.
_MAX_KEPT_BUFFER_BYTES = 64 * 2**20


def _thread_buffer(name: str, shape: tuple[int, int], dtype: Any, *, zeros: bool = False) -> np.ndarray:
    """A buffer of this thread kept from block to block (one per ``name``; replaced when the shape changes).

    Frame-sized temporaries allocated anew for every block come from fresh memory mappings (the
    fixed mmap threshold of :func:`z2t_dask.engine.allocator.tune_malloc`): page faults that cost
    the full-chip render ~15 % (measured). ``zeros=True`` buffers are created zeroed and must be
    handed back zeroed (their user's job; :func:`_drop_thread_buffer` when that is not certain).
    """
    kept = _THREAD_BUFFERS.__dict__.setdefault("kept", {})
    buf = kept.get(name)
    if buf is None or buf.shape != shape or buf.dtype != np.dtype(dtype):
        buf = np.zeros(shape, dtype) if zeros else np.empty(shape, dtype)
        if buf.nbytes <= _MAX_KEPT_BUFFER_BYTES:
            kept[name] = buf
    return buf


def _drop_thread_buffer(name: str) -> None:
    _THREAD_BUFFERS.__dict__.get("kept", {}).pop(name, None)


def expected_signal(plan: FramePlan, t0: int, t1: int, region: Region | None = None) -> np.ndarray:
    """Expected signal photons ``(t1 - t0, y1 - y0, x1 - x0)`` float32 of frames ``[t0, t1)`` (no background).

    Parameters
    ----------
    plan : FramePlan
        The sample's plan.
    t0, t1 : int
        Frame range (half-open).
    region : (y0, y1, x0, x1), optional
        Image rectangle in px (half-open); default the whole image. Emitters outside it whose
        PSF patch reaches into it contribute (photons per pixel, bit-identical to the same
        rectangle of the whole frame).
    """
    h, w = plan.image_shape
    y0, y1, x0, x1 = (0, h, 0, w) if region is None else (int(v) for v in region)
    prep = _prepare_signal(plan, t0, t1, (y0, y1, x0, x1))
    out = np.empty((t1 - t0, y1 - y0, x1 - x0), np.float32)
    for f in range(t1 - t0):
        _frame_signal(prep, f, out[f])
    return out


@dataclass
class _NoiseBlock:
    """One block of the fixed noise grid that a chunk overlaps."""

    row: int
    col: int
    src: tuple[slice, slice]  # the whole block, in the coordinates of the rendered (aligned) region
    keep: tuple[slice, slice]  # the part inside the chunk, in block coordinates
    dst: tuple[slice, slice]  # the same part, in chunk coordinates
    camera: Any  # camera model (sCMOS maps cropped to the block)


def _aligned(region: Region, image_shape: tuple[int, int]) -> Region:
    """The smallest union of noise blocks covering ``region``."""
    y0, y1, x0, x1 = region
    h, w = image_shape
    nb = NOISE_BLOCK
    return (y0 // nb) * nb, min(h, -(-y1 // nb) * nb), (x0 // nb) * nb, min(w, -(-x1 // nb) * nb)


def _block_camera(camera: Any, y0: int, x0: int, height: int, width: int) -> Any:
    """The camera of one noise block: per-pixel maps (sCMOS) cut to the block, else ``camera``."""
    if getattr(camera, "map_shape", None) is not None:
        return camera.crop(y0, x0, height, width)
    return camera


def _noise_blocks(plan: FramePlan, chunk: Region, aligned: Region) -> list[_NoiseBlock]:
    y0, y1, x0, x1 = chunk
    ay0, ay1, ax0, ax1 = aligned
    nb = NOISE_BLOCK
    blocks = []
    for row in range(ay0 // nb, -(-ay1 // nb)):
        by0, by1 = row * nb, min(ay1, (row + 1) * nb)
        for col in range(ax0 // nb, -(-ax1 // nb)):
            bx0, bx1 = col * nb, min(ax1, (col + 1) * nb)
            ky0, ky1, kx0, kx1 = max(by0, y0), min(by1, y1), max(bx0, x0), min(bx1, x1)
            blocks.append(
                _NoiseBlock(
                    row=row,
                    col=col,
                    src=(slice(by0 - ay0, by1 - ay0), slice(bx0 - ax0, bx1 - ax0)),
                    keep=(slice(ky0 - by0, ky1 - by0), slice(kx0 - bx0, kx1 - bx0)),
                    dst=(slice(ky0 - y0, ky1 - y0), slice(kx0 - x0, kx1 - x0)),
                    camera=_block_camera(plan.camera, by0, bx0, by1 - by0, bx1 - bx0),
                )
            )
    return blocks


def render_block(block_info: dict | None = None, *, plan: FramePlan) -> np.ndarray:
    """Render the frames (and tile) of one dask block (task function; importable, not in ``__main__``).

    The block's expected photons are rendered over the noise blocks it overlaps, one frame at a
    time (working memory: one float32 frame region plus the camera's temporaries), recorded
    with each noise block's own stream, and cropped to the block.
    """
    if block_info is None:
        raise ValueError("render_block is a map_blocks task: dask passes block_info")
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    aligned = _aligned((y0, y1, x0, x1), plan.image_shape)
    prep = _prepare_signal(plan, t0, t1, aligned)
    blocks = _noise_blocks(plan, (y0, y1, x0, x1), aligned)
    out = np.empty((t1 - t0, y1 - y0, x1 - x0), plan.dtype)
    photons = _thread_buffer("photons", (aligned[1] - aligned[0], aligned[3] - aligned[2]), np.float32)
    write_signal = _signal_writer(prep, photons, np.float32(plan.background))
    seed, key = plan.seed, plan.noise_key or (PURPOSE_NOISE,)  # noise_stream's key, or a channel's
    if len(blocks) == 1 and aligned == (y0, y1, x0, x1):
        nb = blocks[0]  # the block is one whole noise block (e.g. a small frame): nothing to crop
        for i, t in enumerate(range(t0, t1)):
            write_signal(i)
            out[i] = nb.camera(photons, stream(seed, *key, t, nb.row, nb.col))
        return out
    for i, t in enumerate(range(t0, t1)):
        write_signal(i)
        for nb in blocks:
            recorded = nb.camera(np.ascontiguousarray(photons[nb.src]), stream(seed, *key, t, nb.row, nb.col))
            out[i][nb.dst] = recorded[nb.keep]
    return out


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _chunk_param(name: str, value: Any) -> int:
    """``render.chunk_frames`` / ``render.tile_size`` as given: an integer >= 1, else a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError([(name, f"must be an integer >= 1, got {value!r}")])
    return int(value)


def choose_chunks(
    image_shape: tuple[int, int],
    frames: int,
    itemsize: int,
    *,
    chunk_mb: float = DEFAULT_CHUNK_MB,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
) -> tuple[int, int, int]:
    """Chunk shape ``(frames, rows, cols)`` of a stack from a memory target.

    Parameters
    ----------
    image_shape : (int, int)
        ``(height, width)`` of a frame in px.
    frames : int
        Number of frames T.
    itemsize : int
        Bytes per output pixel (2 for uint16 ADU, 4 for float32 photons).
    chunk_mb : float
        Target size of one output chunk in MiB (``render.chunk_mb``). The working memory of
        rendering one chunk is roughly 2-4 times this (float32 photons, camera temporaries).
    chunk_frames : int, optional
        Frames per chunk (``render.chunk_frames``); default
        ``clip(chunk_mb / tile bytes, 1, MAX_AUTO_CHUNK_FRAMES)``.
    tile_size : int, optional
        Side of the y/x tiles in px (``render.tile_size``); default whole frames, unless one
        frame exceeds ``chunk_mb``: then the largest multiple of ``NOISE_BLOCK`` whose square
        tile fits (at least ``NOISE_BLOCK``).

    Returns
    -------
    (int, int, int)
        Frames, rows and columns of a chunk (edge chunks are smaller).
    """
    h, w = (_positive_int("image_shape", v) for v in image_shape)
    frames = _positive_int("frames", frames)
    itemsize = _positive_int("itemsize", itemsize)
    if isinstance(chunk_mb, bool) or not isinstance(chunk_mb, (int, float, np.number)) or not chunk_mb > 0:
        raise ConfigError([("render.chunk_mb", f"must be a number > 0 (MiB), got {chunk_mb!r}")])
    budget = float(chunk_mb) * 2**20
    if tile_size is None:
        if h * w * itemsize <= budget:
            ty, tx = h, w
        else:
            side = max(NOISE_BLOCK, int(np.sqrt(budget / itemsize)) // NOISE_BLOCK * NOISE_BLOCK)
            ty, tx = min(side, h), min(side, w)
    else:
        side = _chunk_param("render.tile_size", tile_size)
        ty, tx = min(side, h), min(side, w)
    if chunk_frames is None:
        ct = int(np.clip(budget // (ty * tx * itemsize), 1, MAX_AUTO_CHUNK_FRAMES))
    else:
        ct = _chunk_param("render.chunk_frames", chunk_frames)
    return min(ct, frames), ty, tx


def frames_array(
    plan: FramePlan,
    chunk_frames: int | None = None,
    *,
    tile_size: int | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
):
    """The lazy ``(T, H, W)`` stack of a plan.

    Parameters
    ----------
    plan : FramePlan
        What the blocks render.
    chunk_frames, tile_size, chunk_mb
        Chunking, see :func:`choose_chunks` (automatic by default). The bytes do not depend on it.
    """
    import dask.array as da

    h, w = plan.image_shape
    ct, ty, tx = choose_chunks(
        (h, w), plan.frames, plan.dtype.itemsize, chunk_mb=chunk_mb, chunk_frames=chunk_frames, tile_size=tile_size
    )
    chunks = da.core.normalize_chunks((ct, ty, tx), (plan.frames, h, w))
    name = f"z2t-frames-{_plan_token(plan, chunks)}"
    # One task per block, render_block with the plan bound (never walked by dask) and map_blocks's
    # block_info; map_blocks itself costs ~1 ms per sample more (signatures, a blockwise layer).
    from dask.highlevelgraph import HighLevelGraph

    fn = functools.partial(render_block, plan=plan)
    edges = [np.cumsum((0, *c)).tolist() for c in chunks]
    shape = (plan.frames, h, w)
    num = tuple(len(c) for c in chunks)
    dsk: dict[Any, Any] = {}
    for it in range(num[0]):
        for iy in range(num[1]):
            for ix in range(num[2]):
                ij = (it, iy, ix)
                loc = [(edges[d][i], edges[d][i + 1]) for d, i in enumerate(ij)]
                info = {None: {"array-location": loc, "chunk-location": ij, "shape": shape, "num-chunks": num}}
                dsk[(name, *ij)] = (fn, info)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, meta=np.empty((0, 0, 0), plan.dtype))


def _plan_token(plan: FramePlan, chunks: Any = None) -> str:
    from dask.base import tokenize

    return tokenize(
        plan.seed,
        plan.frames,
        plan.image_shape,
        plan.truth.token(),
        repr(plan.psf),
        repr(plan.camera),
        plan.background,
        NOISE_BLOCK,
        chunks,
    )
