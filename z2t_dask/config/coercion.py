"""Parsing a mapping into the typed config dataclasses, with key-path errors.

:func:`build` walks a dataclass of :mod:`z2t_dask.config.schema` field by field: each value is
coerced to its annotation (``int``, ``float``, ``bool``, ``str``, ``Literal`` choices, optional
sections, lists, dicts) and checked against its metadata ranges (``gt``/``ge``/``le``). Every
problem is appended to ``problems`` as ``(key_path, message)`` with a "did you mean" for typos;
nothing is raised here (:mod:`z2t_dask.config.validation` raises one ConfigError for all of them).
Numbers must be finite, integers fit 64 bits, and booleans never count as numbers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["build", "finite", "is_int64", "show_value"]


_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return getattr(tp, "__name__", str(tp))


def show_value(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters; never fails (integers beyond Python's 4300-digit text limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # a container holding such an integer
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int64(value: int) -> bool:
    """Whether an integer fits 64 bits, signed or not (what the files and numpy store): -2**63 .. 2**64 - 1."""
    return -(2**63) <= value < 2**64


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` if it is no number (bool), NaN, infinite or beyond the float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:  # an integer beyond the float range (about 1.8e308)
        return None
    return out if math.isfinite(out) else None


def _literal(value: Any, choices: tuple) -> Any:
    """The choice ``value`` stands for (an integral float stands for an integer choice, as for int keys), else _BAD."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return c
        if type(c) is int and isinstance(value, float) and value.is_integer() and int(value) == c:
            return c
    return _BAD


def _coerce(value: Any, tp: Any, path: str, problems: list) -> Any:
    """Check ``value`` against the annotation ``tp``; return the converted value or ``_BAD``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        out = _literal(value, typing.get_args(tp))
        if out is _BAD:
            problems.append((path, f"expected {_type_name(tp)}, got {show_value(value)}"))
        return out
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            if isinstance(a, type) and dataclasses.is_dataclass(a) and isinstance(value, Mapping):
                return _coerce(value, a, path, problems)  # an optional section: its keys report their own paths
            trial: list = []
            out = _coerce(value, a, path, trial)
            if not trial:
                return out
        problems.append((path, f"expected {_type_name(tp)}, got {type(value).__name__} {show_value(value)}"))
        return _BAD
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            problems.append((path, f"expected a mapping (section), got {type(value).__name__}"))
            return _BAD
        return build(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append((path, f"expected true/false, got {type(value).__name__} {show_value(value)}"))
        return _BAD
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected an integer, got {type(value).__name__} {show_value(value)}"))
            return _BAD
        if isinstance(value, float):
            if not value.is_integer():
                problems.append((path, f"expected an integer, got {value!r}"))
                return _BAD
            value = int(value)
        if not is_int64(value):  # seeds, sizes and counts are stored as 64-bit integers (HDF5, numpy)
            problems.append((path, f"expected a 64-bit integer (-2**63 .. 2**64 - 1), got {show_value(value)}"))
            return _BAD
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((path, f"expected a number, got {type(value).__name__} {show_value(value)}"))
            return _BAD
        out = finite(value)
        if out is None:
            problems.append((path, f"expected a finite number, got {show_value(value)}"))
            return _BAD
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        problems.append((path, f"expected a string, got {type(value).__name__} {show_value(value)}"))
        return _BAD
    if tp is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        problems.append((path, f"expected a list, got {type(value).__name__} {show_value(value)}"))
        return _BAD
    if tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        problems.append((path, f"expected a mapping, got {type(value).__name__} {show_value(value)}"))
        return _BAD
    return value


class _Bad:
    def __repr__(self) -> str:  # pragma: no cover
        return "<bad>"


_BAD = _Bad()


def _check_range(value: Any, meta: Mapping[str, Any], path: str, problems: list) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    if "gt" in meta and not value > meta["gt"]:
        problems.append((path, f"must be > {meta['gt']}{unit}, got {show_value(value)}"))
    if "ge" in meta and not value >= meta["ge"]:
        problems.append((path, f"must be >= {meta['ge']}{unit}, got {show_value(value)}"))
    if "le" in meta and not value <= meta["le"]:
        problems.append((path, f"must be <= {meta['le']}{unit}, got {show_value(value)}"))


def build(cls: type, data: Mapping[str, Any], prefix: str, problems: list) -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
            problems.append((path, "unknown key" + hint))
            continue
        out = _coerce(value, hints[key], path, problems)
        if out is _BAD:
            continue
        _check_range(out, fields[key].metadata, path, problems)
        kwargs[key] = out
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - only reachable through a schema bug
        problems.append((prefix or "<root>", str(exc)))
        return cls()
