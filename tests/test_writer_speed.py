"""The fast paths of the file writers write the same bytes as the plain ones, fail cleanly, and stay bounded.

- OME-TIFF: compressed pages pre-encoded as strips (inline or in a thread pool, zstd on reused
  contexts) and small files assembled in memory give byte-identical files to tifffile's own encoder
  writing page by page to the file (``tiff.PRE_ENCODE = False``, ``tiff.SMALL_FILE_BYTES = 0``).
- A frame of the wrong shape midway, too many or too few frames, a file-size limit: an error, no
  file and no temporary left, no encoder thread left running.
- The encoder pipeline holds at most ``in_flight`` frames beyond the one being written.
- emitters.h5: whole-table writes (one part) give the bytes of row-range writes (several parts).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import dask.array as da
import imagecodecs
import numpy as np
import pytest
import tifffile

from z2t_dask.engine.streaming import iter_frame_blocks
from z2t_dask.errors import FormatError
from z2t_dask.io import tiff, tiff_pages, zstd_contexts
from z2t_dask.io.emitters_h5 import read_emitters_h5, write_emitters_h5_parts

#: (name, shape, dtype): a W1-like movie, multi-strip pages with a short last strip (1200 columns of
#: uint16: 109 rows per strip) large enough for the encoder pool, and multi-channel (T, C, Y, X) stacks.
SHAPES = [
    ("small-f32", (9, 40, 40), "float32"),
    ("strips-u16", (4, 301, 1200), "uint16"),
    ("tcyx-u16", (3, 2, 64, 48), "uint16"),
    ("tcyx-f32", (2, 3, 33, 20), "float32"),
]

#: (PRE_ENCODE, SMALL_FILE_BYTES, encoder_threads): the plain path first, then every fast combination.
PLAIN = (False, 0, None)
FAST = [(True, 0, 0), (True, 0, 2), (True, 64 << 20, 0), (True, 64 << 20, 3), (False, 64 << 20, None)]


def _movie(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.normal(100.0, 10.0, shape).astype(np.float32)
    return rng.poisson(300.0, shape).astype(np.uint16)


def _blocks(movie: np.ndarray, step: int = 2):
    return (movie[i : i + step] for i in range(0, movie.shape[0], step))


def _write(monkeypatch, path: Path, movie: np.ndarray, mode: tuple, compression, **extra) -> Path:
    pre, small, threads = mode
    monkeypatch.setattr(tiff, "PRE_ENCODE", pre)
    monkeypatch.setattr(tiff, "SMALL_FILE_BYTES", small)
    if movie.ndim == 4:
        extra["channels"] = [{"name": f"c{i}", "wavelength_nm": 600 + 50 * i} for i in range(movie.shape[1])]
    return tiff.write_ome_tiff(
        path,
        _blocks(movie),
        shape=movie.shape,
        dtype=movie.dtype,
        pixel_size_nm=(100.0, 110.0),
        compression=compression,
        metadata={"seed": 1, "units": "ADU"},
        description="test",
        encoder_threads=threads,
        **extra,
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encoder_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("z2t-tiff-encode")]


def _tuned(compression, dtype: str) -> bool:
    """Whether the pre-encoded strips are zstd with ZSTD_INTEGER_PARAMS (not tifffile's own bytes)."""
    return compression == "zstd" and np.dtype(dtype).kind == "u"


def _tags_but_strips(path: Path) -> list[list[tuple]]:
    """Every page's tags (code, value) except where its strips lie and how long they are."""
    skip = {273, 279}  # StripOffsets, StripByteCounts
    with tifffile.TiffFile(path) as tif:
        return [[(t.code, t.value) for t in page.tags if t.code not in skip] for page in tif.pages]


@pytest.mark.parametrize("compression", ["zstd", "zlib", None])
@pytest.mark.parametrize(("name", "shape", "dtype"), SHAPES)
def test_fast_tiff_paths_write_the_plain_paths_bytes(tmp_path, monkeypatch, name, shape, dtype, compression) -> None:
    """Every pre-encoding route writes one file; it is tifffile's own, byte for byte, except for zstd strips
    of integers, which hold the same pixels and tags in other zstd frames."""
    movie = _movie(shape, dtype)
    plain = _write(monkeypatch, tmp_path / "plain.ome.tiff", movie, PLAIN, compression)
    reference = _sha(plain)
    fast_shas = []
    for i, mode in enumerate(FAST):
        fast = _write(monkeypatch, tmp_path / f"fast{i}.ome.tiff", movie, mode, compression)
        fast_shas.append(_sha(fast))
        back = tiff.read_ome_tiff(fast)
        assert np.array_equal(back.reshape(movie.shape), movie)
        if mode[0] and _tuned(compression, dtype):
            assert _tags_but_strips(fast) == _tags_but_strips(plain), (name, mode)
        else:
            assert fast_shas[-1] == reference, (name, compression, mode)
    pre_encoded = {sha for sha, mode in zip(fast_shas, FAST, strict=True) if mode[0]}
    assert len(pre_encoded) == 1  # inline, threaded, in memory or not: the same bytes
    assert (pre_encoded != {reference}) == _tuned(compression, dtype)
    back = tiff.read_ome_tiff(plain)
    assert np.array_equal(back.reshape(movie.shape), movie)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["plain.ome.tiff"] + [f"fast{i}.ome.tiff" for i in range(len(FAST))]
    )


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
@pytest.mark.parametrize(("name", "shape", "dtype"), SHAPES)
def test_blocks_encoded_where_they_are_computed_give_the_writers_bytes(
    tmp_path, monkeypatch, name, shape, dtype, compression
):
    """Blocks passed through a BlockEncoder in the prefetch threads (post) make the file the writer makes."""
    movie = _movie(shape, dtype)
    ref = _write(monkeypatch, tmp_path / "ref.ome.tiff", movie, (True, 0, 0), compression)
    codec, args = tiff._compression(compression, np.dtype(dtype))
    encoder = tiff_pages.BlockEncoder(
        codec, args, dtype, tiff_pages.strip_rows(shape[-2], shape[-1], np.dtype(dtype).itemsize)
    )
    arr = da.from_array(movie.astype(np.float64) if dtype == "float32" else movie, chunks=(2, *shape[1:]))
    extra = (
        {"channels": [{"name": f"c{i}", "wavelength_nm": 600 + 50 * i} for i in range(shape[1])]}
        if len(shape) == 4
        else {}
    )
    pre = [False]

    def post(block):
        out = encoder(block)
        pre[0] = pre[0] or isinstance(out, tiff_pages.EncodedBlock)
        return out

    out = tiff.write_ome_tiff(
        tmp_path / "post.ome.tiff", iter_frame_blocks(arr, prefetch=2, post=post), shape=movie.shape, dtype=dtype,
        pixel_size_nm=(100.0, 110.0), compression=compression, metadata={"seed": 1, "units": "ADU"},
        description="test", block_encoder=encoder, **extra,
    )  # fmt: skip
    assert pre[0]  # (float64 blocks cast to float32 pages where they were computed)
    assert _sha(out) == _sha(ref)


def test_block_encoder_chosen_for_large_compressed_pages_only() -> None:
    assert tiff.block_encoder((10, 1200, 1200), "uint16", "zstd") is not None
    assert tiff.block_encoder((3, 2, 400, 400), "uint16", "zlib") is not None
    assert tiff.block_encoder((10, 40, 40), "uint16", "zstd") is None  # small pages: encoded inline
    assert tiff.block_encoder((1, 1200, 1200), "uint16", "zstd") is None  # a single page
    assert tiff.block_encoder((10, 1200, 1200), "uint16", None) is None
    with pytest.raises(FormatError, match="lzw"):
        tiff.block_encoder((10, 1200, 1200), "uint16", "lzw")


def test_a_block_encoder_of_other_settings_is_refused(tmp_path) -> None:
    movie = _movie((2, 301, 1200), "uint16")
    other = tiff_pages.BlockEncoder("zstd", {"level": 3}, "uint16", 109)
    with pytest.raises(ValueError, match="block_encoder encodes"):
        tiff.write_ome_tiff(
            tmp_path / "x.ome.tiff", [other(movie)], shape=movie.shape, dtype="uint16", pixel_size_nm=100.0,
            block_encoder=other,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fault", ["wrong shape", "too many", "too few", "wrong dtype"])
def test_encoded_blocks_with_a_bad_feed_leave_nothing_behind(tmp_path, fault) -> None:
    movie = _movie((6, 301, 1200), "uint16")
    encoder = tiff_pages.BlockEncoder("zstd", {"level": 1}, "uint16", 109)
    blocks = [movie[0:2], movie[2:4], movie[4:6]]
    if fault == "wrong shape":
        blocks[1] = blocks[1][:, :-1]
    elif fault == "too many":
        blocks.append(movie[:1])
    elif fault == "too few":
        blocks.pop()
    else:
        blocks[2] = blocks[2].astype(np.float32)  # does not cast same_kind to uint16: passed on, refused
    with pytest.raises(
        ValueError, match="frame 2 has shape|more than the declared|4 frames but shape|cannot be stored"
    ):
        tiff.write_ome_tiff(
            tmp_path / "x.ome.tiff", (encoder(b) for b in blocks), shape=movie.shape, dtype="uint16",
            pixel_size_nm=100.0, block_encoder=encoder,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_integer_zstd_strips_are_zstd_frames_of_the_tuned_settings_near_level_1_size() -> None:
    """Noisy camera strips: a zstd frame any decoder reads, not level 1's bytes, within 1 % of its size."""
    rng = np.random.default_rng(7)
    strip = (100 + rng.gamma(rng.poisson(45.0, (109, 1200)) + 1e-9, 100.0 / 45.0)).astype(np.uint16)
    encode = tiff_pages.strip_encoder("zstd", {"level": 1}, np.uint16)
    tuned = bytes(encode(strip))
    plain = bytes(imagecodecs.zstd_encode(strip.tobytes(), level=1))
    assert bytes(imagecodecs.zstd_decode(tuned)) == strip.tobytes()
    assert tuned != plain
    assert abs(len(tuned) / len(plain) - 1.0) < 0.01
    assert len(tuned) < 0.75 * strip.nbytes  # still compressed
    zeros = np.zeros((109, 1200), np.uint16)
    assert len(encode(zeros)) < zeros.nbytes / 1000  # runs are still found
    floats = tiff_pages.strip_encoder("zstd", {"level": 1}, np.float32)
    frame = rng.normal(100.0, 10.0, (40, 40)).astype(np.float32)
    assert bytes(floats(frame)) == bytes(imagecodecs.zstd_encode(frame.tobytes(), level=1))


def test_integer_zstd_without_a_reachable_libzstd_falls_back_to_imagecodecs(monkeypatch) -> None:
    monkeypatch.setattr(zstd_contexts, "_ZSTD", [None])
    strip = np.random.default_rng(8).poisson(300.0, (109, 1200)).astype(np.uint16)
    encode = tiff_pages.strip_encoder("zstd", {"level": 1}, np.uint16)
    assert bytes(encode(strip)) == bytes(imagecodecs.zstd_encode(strip.tobytes(), level=1))


def test_unknown_zstd_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown zstd parameters"):
        zstd_contexts.zstd_encoder(1, {"hashlog": 11})


def test_frames_cast_to_the_stored_dtype_give_the_same_bytes(tmp_path, monkeypatch) -> None:
    movie = _movie((5, 40, 40), "float32")
    plain = _write(monkeypatch, tmp_path / "a.ome.tiff", movie, PLAIN, "zstd")
    monkeypatch.setattr(tiff, "PRE_ENCODE", True)
    monkeypatch.setattr(tiff, "SMALL_FILE_BYTES", 64 << 20)
    fast = tiff.write_ome_tiff(
        tmp_path / "b.ome.tiff",
        _blocks(movie.astype(np.float64)),  # cast to float32 page by page by the feed
        shape=movie.shape,
        dtype="float32",
        pixel_size_nm=(100.0, 110.0),
        metadata={"seed": 1, "units": "ADU"},
        description="test",
    )
    assert _sha(fast) == _sha(plain)


@pytest.mark.parametrize(("height", "width", "itemsize"), [(40, 40, 4), (1200, 1200, 2), (301, 1200, 2), (7, 70000, 4)])
def test_strip_rows_are_tifffiles(tmp_path, height, width, itemsize) -> None:
    path = tmp_path / "t.tif"
    dtype = {2: np.uint16, 4: np.float32}[itemsize]
    tifffile.imwrite(path, np.zeros((height, width), dtype), compression="zstd", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.tags["RowsPerStrip"].value == tiff_pages.strip_rows(height, width, itemsize)


@pytest.mark.parametrize("level", [1, 3])
def test_zstd_on_reused_contexts_gives_imagecodecs_bytes(level) -> None:
    encode = zstd_contexts.zstd_encoder(level)
    rng = np.random.default_rng(4)
    data = [
        rng.normal(0, 1, (40, 40)).astype(np.float32),
        rng.poisson(5, (109, 1200)).astype(np.uint16),
        np.zeros((1, 1), np.uint8),
        rng.integers(0, 255, 300_000, dtype=np.uint8),
    ]
    for arr in data * 2:  # the second round reuses the contexts of the first
        assert bytes(encode(arr)) == bytes(imagecodecs.zstd_encode(arr.tobytes(), level=level))
    results: list[bool] = []

    def work(seed: int) -> None:
        arr = np.random.default_rng(seed).poisson(50, (200, 300)).astype(np.uint16)
        results.extend(
            bytes(encode(arr)) == bytes(imagecodecs.zstd_encode(arr.tobytes(), level=level)) for _ in range(5)
        )

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


@pytest.mark.parametrize(
    ("mode", "shape", "dtype"),
    [
        ((True, 0, 2), (6, 301, 1200), "uint16"),
        ((True, 64 << 20, 0), (6, 40, 40), "float32"),
        (PLAIN, (6, 40, 40), "float32"),
    ],
)
@pytest.mark.parametrize("fault", ["wrong shape", "too many", "too few"])
def test_a_bad_frame_feed_leaves_nothing_behind(tmp_path, monkeypatch, mode, shape, dtype, fault) -> None:
    movie = _movie(shape, dtype)
    frames = list(movie)
    if fault == "wrong shape":
        frames[3] = frames[3][:-1]
    elif fault == "too many":
        frames.append(frames[0])
    else:
        frames.pop()
    pre, small, threads = mode
    monkeypatch.setattr(tiff, "PRE_ENCODE", pre)
    monkeypatch.setattr(tiff, "SMALL_FILE_BYTES", small)
    with pytest.raises(ValueError, match="frame 3 has shape|more than the declared|5 frames but shape"):
        tiff.write_ome_tiff(
            tmp_path / "x.ome.tiff",
            iter(frames),
            shape=shape,
            dtype=dtype,
            pixel_size_nm=100.0,
            encoder_threads=threads,
        )
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
    assert _encoder_threads_alive() == []


def test_encoder_errors_propagate_and_stop_the_pool(tmp_path, monkeypatch) -> None:
    def broken(data):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(tiff_pages, "zstd_encoder", lambda level, params=None: broken)
    with pytest.raises(RuntimeError, match="encoder failed"):
        tiff.write_ome_tiff(
            tmp_path / "x.ome.tiff", _blocks(_movie((6, 301, 1200), "uint16")), shape=(6, 301, 1200),
            dtype="uint16", pixel_size_nm=100.0, encoder_threads=2,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    assert _encoder_threads_alive() == []


@pytest.mark.parametrize(("threads", "in_flight"), [(1, None), (2, None), (2, 3), (0, None)])
def test_encoder_pipeline_holds_a_bounded_number_of_frames(threads, in_flight) -> None:
    n_frames, rows = 30, 16
    state = {"pulled": 0, "strips": 0, "most": 0}
    per_frame = 3  # 48 rows at 16 rows per strip

    def frames():
        for t in range(n_frames):
            state["pulled"] += 1
            yield np.full((48, 8), t, np.uint16)

    out = []
    for strip in tiff_pages.encoded_strips(frames(), bytes, rows, threads=threads, in_flight=in_flight):
        done = state["strips"] // per_frame  # frames fully handed to the consumer
        state["most"] = max(state["most"], state["pulled"] - done)
        state["strips"] += 1
        out.append(strip)
    depth = 0 if threads == 0 else (in_flight if in_flight is not None else 2 * threads)
    assert state["most"] <= depth + 1
    if threads:
        assert state["most"] >= 2  # frames are encoded ahead of the writer
    assert out == [np.full((16, 8), t, np.uint16).tobytes() for t in range(n_frames) for _ in range(per_frame)]
    assert _encoder_threads_alive() == []


def test_closing_the_encoder_pipeline_early_stops_its_threads() -> None:
    frames = (np.zeros((600, 600), np.uint16) for _ in range(50))
    strips = tiff_pages.encoded_strips(frames, tiff_pages.strip_encoder("zstd", {"level": 1}), 100, threads=2)
    next(strips)
    assert _encoder_threads_alive()
    tiff_pages.close_quietly(strips)
    assert _encoder_threads_alive() == []


def test_encoder_threads_must_be_a_count(tmp_path) -> None:
    with pytest.raises(ValueError, match="encoder_threads must be an integer >= 0"):
        tiff.write_ome_tiff(
            tmp_path / "x.ome.tiff", [np.zeros((4, 4), np.uint16)], shape=(1, 4, 4), dtype="uint16",
            pixel_size_nm=100.0, encoder_threads=-1,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


SCRIPT = """
import resource, sys, numpy as np
from z2t_dask.io import tiff
from z2t_dask.errors import OutputSpaceError
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
tiff.SMALL_FILE_BYTES = int(sys.argv[2])
movie = np.random.default_rng(0).normal(100, 10, (60, 40, 40)).astype(np.float32)
try:
    tiff.write_ome_tiff(sys.argv[1], iter(movie), shape=movie.shape, dtype="float32", pixel_size_nm=100.0)
except OutputSpaceError as exc:
    print("OutputSpaceError:", exc)
"""


@pytest.mark.parametrize("small_file_bytes", [8 << 20, 0])
def test_a_file_over_the_file_size_limit_is_an_output_space_error(tmp_path, small_file_bytes) -> None:
    """The in-memory path's single write, or the buffered file's writes, meet RLIMIT_FSIZE: OutputSpaceError
    naming the file, nothing left."""
    import signal

    target = tmp_path / "x.ome.tiff"
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(target), str(small_file_bytes)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OutputSpaceError:") and str(target) in p.stdout
    assert list(tmp_path.iterdir()) == []


def test_emitters_h5_whole_table_writes_equal_row_range_writes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, m = 40, 90
    em = {
        "xyz": rng.normal(size=(n, 3)),
        "intensity": rng.random(n),
        "t0": rng.random(n),
        "on_time": rng.random(n),
        "id": np.arange(n),
    }
    rec = {
        "xyz": rng.normal(size=(m, 3)),
        "phot": rng.random(m),
        "frame_ix": rng.integers(0, 10, m),
        "id": rng.integers(0, n, m),
        "inside": rng.random(m) > 0.5,
    }
    zc = {"phase": rng.normal(size=(n, 5)), "mag": np.zeros((n, 5))}
    one = write_emitters_h5_parts(tmp_path / "one.h5", [(em, rec, zc)], attrs={"seed": 1})

    def rows(table, a, b):
        return {k: v[a:b] for k, v in table.items()}

    parts = [
        (rows(em, 0, 15), rows(rec, 0, 30), rows(zc, 0, 15)),
        (rows(em, 15, 40), rows(rec, 30, 90), rows(zc, 15, 40)),
    ]
    two = write_emitters_h5_parts(tmp_path / "two.h5", parts, n_emitters=n, n_records=m, attrs={"seed": 1})
    assert _sha(one) == _sha(two)
    back = read_emitters_h5(one)
    assert np.array_equal(back.records["inside"], rec["inside"])
    assert np.array_equal(back.emitters["xyz"], em["xyz"].astype(np.float32))
    assert back.units["records/phot"].startswith("photons")


def test_files_inside_an_atomic_folder_are_fsynced_once_by_the_folders_commit(tmp_path, monkeypatch) -> None:
    import os

    from z2t_dask.io import atomic

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with atomic.atomic_path(tmp_path / "alone.txt") as tmp:
        tmp.write_text("a")
    assert synced[0].startswith(str(tmp_path / ".alone.txt.tmp-")) and synced[1:] == [str(tmp_path)]
    synced.clear()
    with atomic.atomic_dir(tmp_path / "folder") as folder:
        for name in ("a.txt", "b.txt"):
            with atomic.atomic_path(folder / name) as tmp:
                tmp.write_text(name)
        assert synced == []  # left to the folder's commit
    assert sorted(Path(p).name for p in synced[:2]) == ["a.txt", "b.txt"]
    assert synced[2].startswith(str(tmp_path / ".folder.tmp-")) and synced[3] == str(tmp_path)
    assert atomic._DEFERRED == set()
    synced.clear()
    with atomic.resumable_dir(tmp_path / "resumable", fingerprint="x") as work:
        with atomic.atomic_path(work / "c.txt") as tmp:
            tmp.write_text("c")
        assert len(synced) == 2  # a rerun trusts what a resumable folder holds: durable at once
    assert (tmp_path / "resumable" / "c.txt").read_text() == "c"


def test_encoder_threads_only_for_large_frames_and_at_most_the_cpus() -> None:
    import os

    assert tiff_pages.encoder_threads(40 * 40 * 4, 200) == 0  # a W1 page: inline
    assert tiff_pages.encoder_threads(1200 * 1200 * 2, 1) == 0  # a single frame: nothing to overlap
    n = tiff_pages.encoder_threads(1200 * 1200 * 2, 200)
    assert 1 <= n <= min(tiff_pages.ENCODER_THREADS_MAX, len(os.sched_getaffinity(0)))


def test_sample_tiffs_of_large_pages_are_the_same_file_by_every_route(tmp_path, monkeypatch) -> None:
    """A sample's OME-TIFF of large pages (encoded where its blocks are rendered when streaming, by the encoder pool
    when computed whole): the same bytes whatever the route, chunking or scheduler."""
    import z2t_dask as z2t

    cfg = {"tiff": {"roi_size": 400}, "emitters": {"frames": 5, "num_emitters": 30}, "camera": {"model": "emccd"}}
    assert tiff.block_encoder((5, 400, 400), "uint16", "zstd") is not None  # 320 KB pages
    encoded: list[int] = []
    call = tiff_pages.BlockEncoder.__call__
    monkeypatch.setattr(tiff_pages.BlockEncoder, "__call__", lambda self, b: encoded.append(len(b)) or call(self, b))
    shas = set()
    for i, (chunk, kwargs) in enumerate(
        [(2, {}), (5, {}), (1, {"scheduler": "sync"}), (2, {"streaming": False}), (3, {"prefetch": 0})]
    ):
        sample = z2t.simulate(cfg, seed=3, chunk_frames=chunk)
        folder = sample.save(tmp_path / f"s{i}" / "sample", format="ome-tiff", **kwargs)
        shas.add(_sha(folder / "sample.ome.tiff"))
        assert (sum(encoded) == 5) == kwargs.get("streaming", True), (chunk, kwargs)  # where rendered, or not
        encoded.clear()
        if i == 0:
            back = tiff.read_ome_tiff(folder / "sample.ome.tiff")
            assert np.array_equal(back, sample.frames.compute())
    assert len(shas) == 1


def test_an_encoder_error_where_blocks_are_rendered_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    import z2t_dask as z2t

    def broken(data):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(tiff_pages, "zstd_encoder", lambda level, params=None: broken)
    cfg = {"tiff": {"roi_size": 400}, "emitters": {"frames": 6, "num_emitters": 20}, "camera": {"model": "emccd"}}
    sample = z2t.simulate(cfg, seed=1, chunk_frames=2)
    with pytest.raises(RuntimeError, match="encoder failed"):
        sample.save(tmp_path / "out" / "s", format="ome-tiff")
    assert not (tmp_path / "out" / "s").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temporaries either
    assert not [t.name for t in threading.enumerate() if t.name.startswith("z2t-prefetch")]
