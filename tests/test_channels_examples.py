"""The two-colour ratiometric example: a split-view 2 x 256 x 256 chip with two species of overlapping ratios."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import z2t_dask as z2t

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_colour_ratiometric.json"


def test_two_colour_example_runs_as_split_view(tmp_path):
    cfg = z2t.load_config(EXAMPLE, overrides={"emitters": {"frames": 2, "num_emitters": 200}})
    assert cfg.channels_layout == "split-view" and [c.name for c in cfg.channels] == ["short", "long"]
    means = [s.ratio[0] for s in cfg.emitters.species]
    spreads = [s.ratio_spread for s in cfg.emitters.species]
    assert abs(means[0] - means[1]) < 2 * (spreads[0] + spreads[1])  # the ratio distributions overlap
    s = z2t.simulate(cfg, seed=1)
    assert s.frames.shape == (2, 2, 256, 256)
    folder = s.save(tmp_path / "two")
    import tifffile

    chip = tifffile.imread(folder / "two.ome.tiff")
    assert chip.shape == (2, 256, 512)  # one chip, the channels side by side
    frames = s.frames.compute()
    assert np.array_equal(chip[:, :, :256], frames[:, 0]) and np.array_equal(chip[:, :, 256:], frames[:, 1])
    assert (
        (folder / "ground_truth.csv")
        .read_text()
        .splitlines()[0]
        .endswith("photons_short,x_px_short,y_px_short,inside_short,photons_long,x_px_long,y_px_long,inside_long")
    )
