"""Quickstart: simulate one sample from the built-in default, inspect it, save it.

Run: ``python examples/quickstart.py [output_dir]``
"""

from __future__ import annotations

import sys

import numpy as np

import z2t_dask as z2t


def main(out: str = "output") -> None:
    cfg = z2t.load_config(None)  # built-in default: 64x64 EMCCD, 100 frames
    sample = z2t.simulate(cfg, seed=1)  # lazy: only the emitters are drawn now
    print(sample.frames)  # dask array (T, Y, X), chunked along frames
    rec = sample.records
    print(
        f"{len(sample.emitters)} emitters, {len(rec)} records, "
        f"{np.bincount(rec.frame_ix, minlength=cfg.emitters.frames).mean():.1f} per frame, "
        f"{(~rec.inside).sum()} records outside the image (they light its edge)"
    )
    first = sample.frames[:5].compute()  # compute a few frames only
    print("frame 0: min/mean/max ADU", first[0].min(), round(float(first[0].mean()), 1), first[0].max())
    path = sample.save(f"{out}/sample_001", overwrite=True)  # OME-TIFF + emitters.h5, atomically
    print("saved", path)


if __name__ == "__main__":
    main(*sys.argv[1:])
