"""Config documents on disk: a JSON or YAML file read into a mapping, or a ConfigError naming the file.

Syntax errors are reported in one line with the file, line and column (never PyYAML's
``"<unicode string>"``); a file that is not UTF-8 text, a value Python cannot read (an integer of more
than 4300 digits), a missing PyYAML and a top level that is not a mapping are errors naming the file too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from z2t_dask.errors import ConfigError

__all__ = ["read_document"]


def _yaml_problem(exc: Exception) -> str:
    """One line for a YAML error: what was wrong and where (line, column), without PyYAML's ``<unicode string>``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark is not None:
        context = f" ({context} started at line {cmark.line + 1}, column {cmark.column + 1})"
    else:
        context = f" ({context})" if context else ""
    return f"YAML syntax error{where}: {problem}{context}"


def read_document(source: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a JSON or YAML (``.yaml``/``.yml``) file; a :class:`ConfigError` naming the file if none."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError([("<file>", f"config file not found: {path}")], str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [("<file>", f"{path.name} is not UTF-8 text (JSON or YAML): {exc.reason}")], str(path)
        ) from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        if is_yaml:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [("<file>", f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")], str(path)
        ) from None
    except ImportError:
        raise ConfigError([("<file>", f"reading {path.name} needs PyYAML: pip install pyyaml")], str(path)) from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError and its subclasses, or a value Python cannot hold
        if type(exc).__module__.split(".")[0] == "yaml":
            problem = _yaml_problem(exc)
        else:  # e.g. ValueError: an integer of more than 4300 digits (Python's limit for integers written as text)
            problem = f"a value cannot be read: {str(exc).split(';')[0]}"
        raise ConfigError([("<file>", problem)], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([("<root>", f"expected a mapping at the top level, got {type(data).__name__}")], str(path))
    return data
