"""The README's generated sections (config reference, CLI reference) are up to date and complete."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from z2t_dask.config import SimulationConfig
from z2t_dask.tools.docs import cli_reference_markdown, config_reference_markdown, render_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_generated_sections_are_current():
    text = README.read_text("utf-8")
    assert render_readme(text) == text, "README is stale: run `python -m z2t_dask.tools.docs README.md`"


def _leaf_keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = (
            tp
            if dataclasses.is_dataclass(tp)
            else next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
        )
        if inner is not None:
            yield from _leaf_keys(inner, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def test_config_reference_lists_every_key_with_unit_and_default():
    ref = config_reference_markdown()
    for key in _leaf_keys(SimulationConfig):
        assert f"| `{key}` |" in ref, key
    assert "| `optical.wavelength_nm` | number, &gt; 0 | nm | `660.0` |" in ref
    assert "(built-in: `600`)" in ref  # emitters.num_emitters of the built-in default


def test_cli_reference_lists_every_subcommand():
    ref = cli_reference_markdown()
    for cmd in ("simulate", "render", "batch", "preview", "inspect"):
        assert f"**`z2t {cmd}`**" in ref
    assert "`--json`" in ref and "`-o, --output OUTPUT`" in ref


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block works as a new user would run it from the repository root."""
    import re
    import shutil

    import pytest

    pytest.importorskip("matplotlib")
    text = README.read_text("utf-8")
    code = re.search(r"## Python\n\n```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "examples").mkdir()
    shutil.copy(README.parent / "examples" / "training_40x40.json", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert (tmp_path / "out" / "sample_001" / "sample_001.ome.tiff").is_file()
    assert (tmp_path / "out" / "sample_001.png").stat().st_size > 20_000
    assert scope["s"].frames.shape == scope["frames"].shape == (200, 40, 40)
