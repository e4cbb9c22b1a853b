"""Previews: marker coordinates match the ground truth and the frames; PNGs are written; clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import small_config

import z2t_dask as z2t
from z2t_dask.tools.cli import main
from z2t_dask.tools.preview import PreviewError, default_output, frame_markers, pick_frames, preview

pytest.importorskip("matplotlib")


def _png_shape(path):
    from matplotlib.image import imread

    return imread(str(path)).shape


def test_frame_markers_are_the_records_of_that_frame():
    xyz = np.array([[1.0, 2.0, 0.1], [30.2, 5.5, 0.0], [-1.5, 4.0, 0.2], [7.0, 8.0, 0.0]])
    frame_ix = np.array([3, 3, 3, 4])
    inside = np.array([True, True, False, True])
    ins, edge = frame_markers(xyz, frame_ix, inside, 3)
    np.testing.assert_array_equal(ins, [[1.0, 2.0], [30.2, 5.5]])  # (x = column, y = row) px
    np.testing.assert_array_equal(edge, [[-1.5, 4.0]])
    ins, edge = frame_markers(xyz, frame_ix, inside, 9)
    assert ins.shape == (0, 2) and edge.shape == (0, 2)


def test_pick_frames_spreads_over_the_movie_and_prefers_busy_frames():
    frame_ix = np.array([0, 1, 1, 1, 5, 8, 8, 9])
    assert pick_frames(frame_ix, 10, 2) == [1, 8]
    assert pick_frames(frame_ix, 3, 6) == [0, 1, 2]


def test_markers_sit_on_the_emitters_in_noise_free_frames():
    """Each isolated in-focus emitter's brightest pixel is within 1 px of its marker (imshow convention)."""
    cfg = small_config(
        emitters={"num_emitters": 12, "z_range_um": 0.0, "margin_px": 0.0, "intensity_sigma": 0.0},
        camera={"model": "none"},
        background={"photons": 0.0},
    )
    cfg["zernike"]["synthetic_rms_rad"] = 0.0
    sample = z2t.simulate(cfg, seed=4)
    rec = sample.records
    frames = sample.frames.compute()
    checked = 0
    for t in range(frames.shape[0]):
        ins, _ = frame_markers(rec.xyz, rec.frame_ix, rec.inside, t)
        for x, y in ins:
            others = np.hypot(ins[:, 0] - x, ins[:, 1] - y)
            if np.sort(others)[1:2].min(initial=99) < 8 or not (2 <= x <= 21 and 2 <= y <= 17):
                continue  # overlapping or at the border: ambiguous
            r, c = int(round(y)), int(round(x))
            win = frames[t, r - 2 : r + 3, c - 2 : c + 3]
            dr, dc = np.unravel_index(np.argmax(win), win.shape)
            assert abs(r - 2 + dr - y) <= 1.0 and abs(c - 2 + dc - x) <= 1.0, (t, x, y)
            checked += 1
    assert checked >= 5


def test_sample_preview_png(tmp_path):
    sample = z2t.simulate(small_config(), seed=2)
    out = sample.preview(tmp_path / "p.png", n_frames=4)
    assert out.is_file() and 20_000 < out.stat().st_size < 600_000
    h, w, _ = _png_shape(out)
    assert h > 300 and w > 300


def test_cli_preview_sample_batch_zmap_and_bad_path(tmp_path, original, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sample = z2t.simulate(small_config(), seed=3)
    sample.save(tmp_path / "sample_003")
    assert main(["preview", str(tmp_path / "sample_003"), "-o", str(tmp_path / "s.png"), "--frames", "3"]) == 0
    assert (tmp_path / "s.png").stat().st_size > 20_000
    assert main(["preview", str(tmp_path / "sample_003" / "emitters.h5"), "--frames", "2"]) == 0  # stack beside it
    assert (tmp_path / "emitters_preview.png").is_file()
    assert "wrote" in capsys.readouterr().out
    assert main(["preview", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["preview", str(tmp_path / "empty")]) == 2


@pytest.mark.slow
def test_cli_preview_zmap(tmp_path, original):
    assert main(["preview", str(original("result_phase_retrieval.h5")), "-o", str(tmp_path / "z.png")]) == 0
    assert (tmp_path / "z.png").stat().st_size > 50_000
    h, w, _ = _png_shape(tmp_path / "z.png")
    assert h > w > 500  # maps on top, PSF gallery below


def test_default_output_names():
    assert str(default_output("out/sample_001")) == "sample_001_preview.png"
    assert str(default_output("x/result.h5")) == "result_preview.png"
    assert str(default_output("x/a.ome.tiff")) == "a_preview.png"


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    sample = z2t.simulate(small_config(), seed=1)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(PreviewError, match=r"z2t-dask\[plot\]"):
        sample.preview(tmp_path / "p.png")
    with pytest.raises(PreviewError):
        preview("default", tmp_path / "z.png")
