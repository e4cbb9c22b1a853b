"""Figures for the previews: a headless matplotlib Figure (Agg) and an atomic PNG writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from z2t_dask.errors import PreviewError

__all__ = ["new_figure", "save_figure"]

_INSTALL_HINT = 'previews need matplotlib: pip install "z2t-dask[plot]" (or pip install matplotlib)'


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure (constrained layout, Agg canvas: the pyplot backend is untouched); size in inches."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PreviewError(_INSTALL_HINT) from None
    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Write a figure as PNG atomically (the file appears only when complete)."""
    from z2t_dask.io.atomic import atomic_path

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return out
