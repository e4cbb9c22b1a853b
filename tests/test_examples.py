"""The shipped examples validate and run."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

import z2t_dask as z2t

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_configs_validate(path):
    cfg = z2t.load_config(path)
    assert json.loads(path.read_text())["description"]
    assert cfg.image_shape[0] > 0


def test_quickstart_runs(tmp_path, capsys):
    mod = runpy.run_path(str(EXAMPLES / "quickstart.py"))
    mod["main"](str(tmp_path))
    assert (tmp_path / "sample_001" / "sample_001.ome.tiff").exists()
    assert "records outside the image" in capsys.readouterr().out
