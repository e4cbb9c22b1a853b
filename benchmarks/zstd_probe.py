"""Probe: zstd settings for the OME-TIFF writer's strips of camera frames (what ``ZSTD_INTEGER_PARAMS`` rests on).

Renders a few 1200 x 1200 frames of the W2 config (EMCCD) and of the same config with an sCMOS camera,
cuts them into tifffile's strips (109 rows of 1200 uint16) and compresses every strip with each candidate
setting on one reused context (``z2t_dask.io.zstd_contexts``), in interleaved rounds: the minimum time per
strip of each setting and its compressed size over the raw size. Float32 frames (the ``ideal`` camera)
are the third case: they keep level 1's defaults.

Measured on the reference 2-core machine (2026-12-01, two runs of 8-15 rounds; time per 256 KB strip, then
the compressed size over the raw size):

======================  ===================  ===================  ===================
setting                 EMCCD (uint16)       sCMOS (uint16)       ideal (float32)
======================  ===================  ===================  ===================
level 1                 623-677 us, 0.535    1113-1272 us, 0.340  948-1171 us, 0.242
hashLog 10, minMatch 7  295-316 us, 0.537    766-963 us, 0.360    1127-1244 us, 0.262
hashLog 11, minMatch 7  295-349 us, 0.537    836-1039 us, 0.352   1047 us, 0.262
hashLog 12, minMatch 6  449 us, 0.537        1395 us, 0.347       983 us, 0.245
======================  ===================  ===================  ===================

Run::

    python -m benchmarks.zstd_probe [--frames 4] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: Candidate settings: name -> extra zstd parameters on top of level 1.
SETTINGS: dict[str, dict[str, int]] = {
    "level 1": {},
    "hashLog 10, minMatch 7": {"hashLog": 10, "minMatch": 7},
    "hashLog 11, minMatch 7": {"hashLog": 11, "minMatch": 7},
    "hashLog 12, minMatch 6": {"hashLog": 12, "minMatch": 6},
}


def _strips(camera: str, frames: int) -> list[np.ndarray]:
    import z2t_dask as z2t
    from benchmarks.bench_fullchip import fullchip_config
    from z2t_dask.io.tiff_pages import strip_rows

    cfg = fullchip_config(frames, "ome-tiff", "fast")
    cfg["camera"] = {"model": camera}
    movie = np.asarray(z2t.simulate(z2t.load_config(cfg), seed=1).frames.compute())
    rows = strip_rows(movie.shape[1], movie.shape[2], movie.dtype.itemsize)
    return [np.ascontiguousarray(f[r : r + rows]) for f in movie for r in range(0, movie.shape[1], rows)]


def probe(frames: int = 4, rounds: int = 15) -> None:
    """Print time per strip and size ratio of each setting for EMCCD, sCMOS and float32 frames."""
    from z2t_dask.io.zstd_contexts import zstd_encoder

    for camera in ("emccd", "scmos", "ideal"):
        strips = _strips(camera, frames)
        raw = sum(s.nbytes for s in strips)
        encoders = {name: zstd_encoder(1, params) for name, params in SETTINGS.items()}
        best = dict.fromkeys(SETTINGS, float("inf"))
        size = dict.fromkeys(SETTINGS, 0)
        for _ in range(rounds):
            for name, encode in encoders.items():
                t0 = time.perf_counter()
                out = [encode(s) for s in strips]
                best[name] = min(best[name], time.perf_counter() - t0)
                size[name] = sum(len(o) for o in out)
        for name in SETTINGS:
            print(
                f"{camera:6s} {strips[0].dtype} {name:24s} {best[name] / len(strips) * 1e6:7.1f} us/strip  "
                f"size {size[name] / raw:.4f} of raw"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    probe(args.frames, args.rounds)


if __name__ == "__main__":
    main()
