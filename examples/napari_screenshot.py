"""Make docs/napari.png: a sample opened in napari by the z2t-dask reader, frames with their ground truth.

Not run by the tests (it needs napari with Qt and an OpenGL context). Headless, under Xvfb::

    pip install -e ".[napari]"
    apt-get install -y xvfb xauth libxcb-icccm4 libxcb-keysyms1    # Debian 12: what PyQt6's xcb plugin lacks
    xvfb-run -a -s "-screen 0 1600x1200x24" python examples/napari_screenshot.py [SAMPLE_FOLDER] [-o docs/napari.png]

``QT_QPA_PLATFORM=offscreen`` alone gives no OpenGL context here (vispy fails reading GL_EXTENSIONS),
so the window is shown on the virtual display and its canvas is captured with ``viewer.screenshot``.
Without SAMPLE_FOLDER, the sample of ``z2t simulate --config examples/training_40x40.json`` (seed 0)
is simulated into a temporary folder first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def simulated_sample(parent: Path) -> Path:
    """The training example's sample (seed 0) written to ``parent/sample_000``."""
    import z2t_dask as z2t

    folder = parent / "sample_000"
    z2t.simulate(ROOT / "examples" / "training_40x40.json", seed=0).save(folder)
    return folder


def brightest_frame(folder: Path) -> int:
    """A bright, busy frame: most records inside the image above 2000 photons less those below 1000."""
    import z2t_dask as z2t

    records = z2t.open_sample(folder).records
    frames = int(records.frame_ix.max()) + 1
    bright = np.bincount(records.frame_ix[records.inside & (records.phot > 2000)], minlength=frames)
    faint = np.bincount(records.frame_ix[records.inside & (records.phot < 1000)], minlength=frames)
    return int(np.argmax(bright - faint))


def _overlay(viewer: object, name: str) -> object:
    """A canvas overlay: ``viewer.canvas.overlays.<name>`` (napari >= 0.9), else the older ``viewer.<name>``."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    found = getattr(overlays, name, None)
    return found if found is not None else getattr(viewer, "text_overlay" if name == "text" else name)


def screenshot(folder: Path, out: Path, frame: int | None = None) -> Path:
    """Open ``folder`` with the z2t-dask reader, show ``frame`` and save the canvas as ``out``."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1040, 820)  # the canvas is about 700 x 700 px of it
    viewer.open(folder, plugin="z2t-dask")
    t = brightest_frame(folder) if frame is None else frame
    viewer.dims.set_point(0, t)
    viewer.reset_view()
    scale_bar, text = _overlay(viewer, "scale_bar"), _overlay(viewer, "text")
    scale_bar.visible = True
    text.visible = True
    text.position = "top_left"
    text.font_size = 9
    text.text = (
        f"{folder.name}, frame {t}: z2t-dask reader, scale in µm\n"
        "cyan circles: ground truth inside the image\n"
        "red crosses: emitters outside it that light its edge"
    )
    for _ in range(10):
        QApplication.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=True)
    viewer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sample", nargs="?", help="sample folder (default: simulate the training example)")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "napari.png"), help="PNG to write")
    parser.add_argument("--frame", type=int, default=None, help="frame shown (default: a bright, busy one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.sample) if args.sample else simulated_sample(Path(tmp))
        out = screenshot(folder, Path(args.output), args.frame)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
