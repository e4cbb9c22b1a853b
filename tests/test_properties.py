"""Property-based tests (hypothesis): the config validator, and frames independent of the chunking.

Config validator (driven by the schema: the field types, ``Literal`` choices and ``gt``/``ge``/``le``
bounds of :mod:`z2t_dask.config.schema`, and the rules across sections of
:mod:`z2t_dask.config.validation`):

* a random valid document (random leaves over the built-in default) loads, gives the values it set,
  and round-trips: dict -> config -> dict (and JSON / YAML file) -> the same config;
* a random invalid leaf (wrong type, out of range, not one of the choices, an unknown key at the top
  level or in a section, a bad Noll index) raises :class:`ConfigError` naming exactly that key path;
* a random violation of a rule across sections names the key the rule is about.

Holes the properties found in the validator (all fixed) stay as the regression cases of
:func:`test_known_validator_gaps`; the generators draw them too (the list is above ``_bounds``).

Chunking: for small samples (drawn emitters up to 4 px beyond the edges, and a table of emitters on
pixel edges, tile borders and outside the image), every chunking the API accepts (frames per chunk,
tile side, automatic from ``render.chunk_mb``; given to :func:`z2t_dask.simulate` or in the config)
gives byte-identical frames for every camera model, and any window computed alone equals that part
of the whole.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pytest
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st

import z2t_dask as z2t
from z2t_dask.config import ConfigError, SimulationConfig, builtin_default_dict, config_to_dict, load_config
from z2t_dask.engine.render import DEFAULT_CHUNK_MB, choose_chunks
from z2t_dask.testing import emitter_table, sample_from_arrays, tiny_config


def examples(n: int) -> Any:
    """``n`` examples under the default profile ("ci": 100 examples), scaled by the profile's ``max_examples``."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 100))


# =============================================================================================
# the schema, walked
# =============================================================================================


class Leaf(NamedTuple):
    """One key of the schema: its dotted path, annotation and metadata (``gt``/``ge``/``le``, unit)."""

    path: str
    tp: Any
    meta: Mapping[str, Any]


def _non_none(tp: Any) -> tuple[Any, bool]:
    """``(the annotation without None, whether None is allowed)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        assert len(args) == 1, tp  # the schema's unions are "X | None"
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _section_type(tp: Any) -> type | None:
    inner, _ = _non_none(tp)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _walk(cls: type, prefix: str = "") -> list[Leaf]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        out.append(Leaf(path, hints[f.name], f.metadata))
        sub = _section_type(hints[f.name])
        if sub is not None:
            out += _walk(sub, path)
    return out


LEAVES: dict[str, Leaf] = {leaf.path: leaf for leaf in _walk(SimulationConfig)}
#: Keys holding a section (a mapping of keys): the top-level sections and ``tiff.noise_params``.
SECTIONS = sorted(p for p, leaf in LEAVES.items() if _section_type(leaf.tp) is not None)
#: Field names per level ("" = top level).
FIELDS: dict[str, set[str]] = {"": {f.name for f in dataclasses.fields(SimulationConfig)}}
FIELDS.update({p: {f.name for f in dataclasses.fields(_section_type(LEAVES[p].tp))} for p in SECTIONS})

#: Key names the original tool's files use: the legacy translation reads them (at any level, to be
#: safe), so they are no "unknown key" (config/legacy.py).
LEGACY_NAMES = {
    *("memory_optimization", "base_config", "photophysics", "simulation", "experiment", "emitter"),
    *("intensity_mu_sig", "xy_unit", "z_range", "lifetime", "density_mu_sig", "chunk_size", "enable_gc"),
    *("QE", "EMGain", "A2D", "e_adu", "offset", "max_adu", "chipszh", "chipszw", "var", "cam_pxszx"),
    *("cam_pxszy", "scmos_var", "cam_pth", "view_type", "autofluorescence_background"),
}

#: Keys whose only accepted value is fixed (plotting keys of the original tool, D8, emitters.h5).
FIXED = {
    "emitters.no_plot": True,
    "zernike.no_plot": True,
    "output.generate_plots": False,
    "output.save_intermediate": True,
    "tiff.use_direct_rendering": True,
}
OPTICS_VALUES = ("wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "NA", "n_medium", "n_immersion")
GEOMETRY = {
    *("tiff.roi_size", "tiff.roi_width", "tiff.roi_height", "tiff.crop_offset", "zernike.crop_offset"),
    *("zernike.crop_size", "zernike.synthetic_shape", "camera.chip_height", "camera.chip_width"),
}
#: Issue 12 keys with rules across sections (indices > NA, focus depth >= z range, fixed dipoles need the
#: vectorial model, dipole angles need fixed dipoles): drawn by _draw_psf_optics.
PSF_OPTICS = {
    *(f"optical.{k}" for k in ("n_immersion_design", "n_coverslip", "n_coverslip_design", "focus_depth_um")),
    *("psf.vectorial", "emitters.dipole", "emitters.dipole_polar_deg", "emitters.dipole_azimuth_deg"),
}
#: Leaves drawn by dedicated code below (rules across sections, or no generic type).
SPECIAL = {
    *GEOMETRY,
    *FIXED,
    *(f"optical.{k}" for k in (*OPTICS_VALUES, "use_default_config")),
    *("psf.patch_size", "psf.fast_subpixel", "psf.n_modes", "psf.fixed_zernike"),
    *("camera.model", "tiff.add_noise", "tiff.filename", "emitters.area_px"),
    *("camera.scmos_offset", "camera.scmos_variance", "camera.scmos_gain", "provenance", "zmap_path"),
    "output.exports",
    *PSF_OPTICS,
    # issue 13: channels need two or more entries and species need channels (rules across keys); drawn at
    # their defaults here, their valid space is tests/test_channels*.py's
    *("channels", "channels_layout", "emitters.species"),
}
#: Upper ends of valid draws where the schema has none (keeps samples plausible; the schema allows more).
INT_CAP = {
    "emitters.frames": 10_000,
    "emitters.num_emitters": 100_000,
    "emitters.seed": 2**63 - 1,
    "zernike.synthetic_seed": 2**32 - 1,
    "psf.oversampling": 16,
    "psf.batch_size": 10_000,
    "render.chunk_frames": 10_000,
    "render.tile_size": 10_000,
    "render.gc_frequency": 10_000,
}
DEFAULT_INT_CAP = 10**6
FLOAT_CAP = 1e6
BIG = 10**18  # magnitude bound of drawn integers (far beyond every limit, far below float overflow)

# What the generators leave out because the validator gets it wrong: nothing. The gaps found earlier
# are fixed, drawn by the generators below and kept as cases of test_known_validator_gaps:
# * any bad key inside tiff.noise_params (cases noise_params_leaf, noise_params_unknown_key);
# * a float key given an integer beyond the float range (huge_int_float, huge_int_fixed_zernike);
# * non-finite or out-of-range numbers in keys typed Any or dict: camera.scmos_* (scmos_*),
#   emitters.area_px = inf (area_px_inf), NaN Zernike coefficients (fixed_zernike_nan);
# * booleans in zernike.synthetic_shape (synthetic_shape_bool);
# * tiff.add_noise false over another camera given as an override (add_noise_override), or beside a
#   camera section that is not a mapping (camera_scalar_add_noise); optics given as overrides while
#   optical.use_default_config is true (optics_override_with_defaults);
# * a ROI larger than the synthetic Zmap named by the key that set its size (roi_width_beyond_zmap).
# * an integer key beyond 64 bits (int64_seed).
# zernike.num_plot is any integer >= 0: it has no effect, as in the original with no_plot true
# (tests/test_config.py::test_num_plot_is_accepted_and_has_no_effect).


def _bounds(leaf: Leaf) -> tuple[Any, Any, Any]:
    return leaf.meta.get("gt"), leaf.meta.get("ge"), leaf.meta.get("le")


def _generic(tp: Any) -> bool:
    """Whether the generic value strategies handle annotation ``tp``."""
    inner, _ = _non_none(tp)
    return typing.get_origin(inner) is Literal or inner in (bool, int, float, str)


GENERIC = sorted(p for p, leaf in LEAVES.items() if p not in SPECIAL and _section_type(leaf.tp) is None)


def test_every_schema_key_is_generated():
    """A new schema key needs a generic type (bool, int, float, str, Literal, optional) or code here."""
    assert [p for p in GENERIC if not _generic(LEAVES[p].tp)] == []
    assert SPECIAL <= set(LEAVES), sorted(SPECIAL - set(LEAVES))
    assert set(FIXED) | {"tiff.noise_params"} <= set(LEAVES)
    # every key gets invalid values: generic ones by type, the others from SPECIAL_INVALID
    no_invalid = [p for p in INVALID_LEAVES if not (_generic(LEAVES[p].tp) or p in SPECIAL_INVALID or p in SECTIONS)]
    assert no_invalid == []


# =============================================================================================
# document helpers
# =============================================================================================


def _get(d: Mapping[str, Any], path: str) -> Any:
    for k in path.split("."):
        d = d[k]
    return d


def _put(d: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for k in parents:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    d[last] = value


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` applied on ``base`` section by section (as documented for ``load_config(overrides=)``)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _paths(err: ConfigError) -> list[str]:
    return [p for p, _ in err.problems]


DEFAULT = builtin_default_dict()
SCHEMA_DEFAULTS = config_to_dict(SimulationConfig())


def _effective(ov: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` after ``ov`` is applied over the built-in default (schema default if unset)."""
    for source in (ov, DEFAULT, SCHEMA_DEFAULTS):
        try:
            return _get(source, path)
        except (KeyError, TypeError):
            continue
    raise KeyError(path)


# =============================================================================================
# valid values
# =============================================================================================

FINITE = {"allow_nan": False, "allow_infinity": False, "allow_subnormal": False}
#: Free text without control characters and line/paragraph separators: PyYAML does not round-trip
#: some of them (a key "\x85" comes back as " "), which is PyYAML's limit, not the validator's.
TEXT = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))


def _int_lo_hi(leaf: Leaf) -> tuple[int, int]:
    gt, ge, le = _bounds(leaf)
    lo = ge if ge is not None else (math.floor(gt) + 1 if gt is not None else -DEFAULT_INT_CAP)
    return int(lo), int(le if le is not None else INT_CAP.get(leaf.path, DEFAULT_INT_CAP))


def _valid_numbers(leaf: Leaf, tp: Any) -> st.SearchStrategy[Any]:
    gt, ge, le = _bounds(leaf)
    if tp is int:  # an integer, or a float with an integer value (coerced)
        lo, hi = _int_lo_hi(leaf)
        ints = st.integers(lo, hi)
        return ints | ints.map(float)
    lo = ge if ge is not None else gt
    hi = le if le is not None else FLOAT_CAP
    floats = st.floats(-FLOAT_CAP if lo is None else lo, hi, exclude_min=ge is None and gt is not None, **FINITE)
    ilo = -DEFAULT_INT_CAP if lo is None else (math.floor(lo) + 1 if ge is None else math.ceil(lo))
    return floats | st.integers(ilo, math.floor(hi))  # integers are coerced to floats


def valid_value(leaf: Leaf) -> st.SearchStrategy[Any]:
    """Any value of a generic leaf that the schema admits."""
    tp, optional = _non_none(leaf.tp)
    if typing.get_origin(tp) is Literal:
        out = st.sampled_from(typing.get_args(tp))
    elif tp is bool:
        out = st.booleans()
    elif tp in (int, float):
        out = _valid_numbers(leaf, tp)
    elif tp is str:
        out = st.text(TEXT, max_size=12)
    else:  # pragma: no cover - test_every_schema_key_is_generated
        raise TypeError(leaf)
    return st.none() | out if optional else out


JSON_SCALARS = st.none() | st.booleans() | st.integers(-BIG, BIG) | st.floats(**FINITE) | st.text(TEXT, max_size=8)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(TEXT, max_size=6), c, max_size=3),
    max_leaves=6,
)


class Valid(NamedTuple):
    """A valid override document and what loading it must give."""

    overrides: dict[str, Any]
    expect: dict[str, Any]  # key path -> value as given (compared with ==, types checked)
    image_shape: tuple[int, int]  # (rows, columns) px
    crop_offset: list[int]  # [x, y] px
    fixed_zernike: dict[int, float] | None  # None: not set


def _draw_geometry(draw: Any, ov: dict[str, Any]) -> tuple[tuple[int, int], list[int]]:
    """ROI size, offset, synthetic Zmap and chip: the ROI within both, consistent keys."""
    mode = draw(st.sampled_from(["default", "size", "width_height", "all_three"]))
    side = st.integers(1, 256)
    if mode == "default":
        rw = rh = 64
    elif mode == "size":
        rw = rh = draw(side)
        _put(ov, "tiff.roi_size", draw(st.sampled_from([rw, float(rw)])))
    else:
        rw, rh = draw(side), draw(side)
        if mode == "all_three":
            rh = rw
        _put(ov, "tiff.roi_size", rw if mode == "all_three" else None)
        _put(ov, "tiff.roi_width", rw)
        _put(ov, "tiff.roi_height", rh)
    if draw(st.booleans()):  # a synthetic Zmap (the chip) of another size; the ROI inside it
        zh, zw = rh + draw(st.integers(0, 1500)), rw + draw(st.integers(0, 1500))
        _put(ov, "zernike.synthetic_shape", [zh, zw])
    else:
        zh = zw = 1200
    offset = [draw(st.integers(0, zw - rw)), draw(st.integers(0, zh - rh))]
    where = draw(st.sampled_from(["tiff", "zernike", "both", "tiff_zernike_none"]))
    if where == "zernike":  # tiff.crop_offset [0, 0] takes zernike.crop_offset
        _put(ov, "tiff.crop_offset", [0, 0])
        _put(ov, "zernike.crop_offset", offset)
    else:
        _put(ov, "tiff.crop_offset", offset)
        if where != "tiff":
            _put(ov, "zernike.crop_offset", list(offset) if where == "both" else None)
    if rw == rh and draw(st.booleans()):
        _put(ov, "zernike.crop_size", rw)
    for key, need in (("chip_height", offset[1] + rh), ("chip_width", offset[0] + rw)):
        chip = draw(st.none() | st.integers(need, need + 2000) | st.just("unset"))
        if chip != "unset":
            _put(ov, f"camera.{key}", chip)
    return (rh, rw), offset


def _draw_optics(draw: Any, ov: dict[str, Any], expect: dict[str, Any]) -> None:
    """Optics values with NA < n_immersion; use_default_config false whenever one differs from its default."""
    for key in draw(st.lists(st.sampled_from(OPTICS_VALUES), unique=True)):
        expect[f"optical.{key}"] = draw(valid_value(LEAVES[f"optical.{key}"]))
        _put(ov, f"optical.{key}", expect[f"optical.{key}"])
    n_imm = _effective(ov, "optical.n_immersion")
    if _effective(ov, "optical.NA") >= n_imm:
        expect["optical.NA"] = n_imm * draw(st.floats(0.05, 0.99))
        _put(ov, "optical.NA", expect["optical.NA"])
    explicit = any(_effective(ov, f"optical.{k}") != SCHEMA_DEFAULTS["optical"][k] for k in OPTICS_VALUES)
    use_default = False if explicit else draw(st.sampled_from([True, False, "unset"]))
    if use_default != "unset":
        _put(ov, "optical.use_default_config", use_default)


def _draw_psf_optics(draw: Any, ov: dict[str, Any], expect: dict[str, Any]) -> None:
    """The PSF_OPTICS keys (each maybe unset), every rule across sections kept (after the NA and z range)."""
    values: dict[str, Any] = {}
    na = _effective(ov, "optical.NA")
    for key in ("n_immersion_design", "n_coverslip", "n_coverslip_design"):
        values[f"optical.{key}"] = st.none() | st.floats(max(1.0, na + 1e-3), na + 2.0, **FINITE)
    z_range = _effective(ov, "emitters.z_range_um")
    values["optical.focus_depth_um"] = st.none() | st.floats(z_range, z_range + 1e3, **FINITE)
    vectorial = draw(st.sampled_from(["unset", True, False]))
    dipole = draw(st.sampled_from(["unset", "isotropic"] if vectorial is False else ["unset", "isotropic", "fixed"]))
    for path, value in (("psf.vectorial", vectorial), ("emitters.dipole", dipole)):
        if value != "unset":
            expect[path] = value
            _put(ov, path, value)
    if dipole == "fixed":
        values["emitters.dipole_polar_deg"] = st.none() | st.floats(0, 90, **FINITE)
        values["emitters.dipole_azimuth_deg"] = st.none() | st.floats(0, 360, **FINITE)
    for path in draw(st.lists(st.sampled_from(sorted(values)), unique=True)):
        expect[path] = draw(values[path])
        _put(ov, path, expect[path])


@st.composite
def valid_documents(draw: Any) -> Valid:
    """Random keys over the built-in default, each a valid value, every rule across sections kept."""
    ov: dict[str, Any] = {}
    expect: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(GENERIC), unique=True, max_size=16)):
        expect[path] = draw(valid_value(LEAVES[path]))
        _put(ov, path, expect[path])
    image_shape, offset = _draw_geometry(draw, ov)
    _draw_optics(draw, ov, expect)
    _draw_psf_optics(draw, ov, expect)
    extra: dict[str, st.SearchStrategy[Any]] = {
        "psf.patch_size": st.integers(1, 60).map(lambda k: 2 * k + 1),
        "psf.fast_subpixel": st.integers(1, 32).map(lambda k: 2 * k),
        "psf.n_modes": st.integers(1, 66),
        "camera.scmos_offset": st.floats(-1e4, 1e5, **FINITE) | st.integers(-1000, 10**5),
        "camera.scmos_variance": st.floats(0, 1e4, **FINITE) | st.integers(0, 10**4),
        "camera.scmos_gain": st.floats(1e-3, 1e3, **FINITE) | st.integers(1, 1000),
        "emitters.area_px": st.none()
        | st.floats(1e-3, 1e4, **FINITE)
        | st.integers(1, 10**4)
        | st.lists(st.floats(1e-3, 1e4, **FINITE) | st.integers(1, 10**4), min_size=2, max_size=2),
        "tiff.filename": st.from_regex(r"[A-Za-z0-9_-]{1,16}\.ome\.tiff", fullmatch=True),
        "provenance": st.dictionaries(st.text(TEXT, max_size=8), JSON_VALUES, max_size=4),
        "zmap_path": st.none(),  # a Zmap file must exist: the synthetic Zmap throughout
        **{path: st.just(value) for path, value in FIXED.items()},
    }
    for path in draw(st.lists(st.sampled_from(sorted(extra)), unique=True, max_size=8)):
        expect[path] = draw(extra[path])
        _put(ov, path, expect[path])
    fixed = None
    if draw(st.booleans()):
        keys = st.integers(1, _effective(ov, "psf.n_modes"))
        coeffs = draw(st.dictionaries(keys, st.floats(-3, 3, **FINITE) | st.integers(-3, 3), max_size=6))
        fixed = {int(j): float(v) for j, v in coeffs.items()}
        _put(ov, "psf.fixed_zernike", {draw(st.sampled_from([j, str(j)])): v for j, v in coeffs.items()})
    model = draw(st.sampled_from(["unset", *typing.get_args(LEAVES["camera.model"].tp)]))
    if model != "unset":
        expect["camera.model"] = model
        _put(ov, "camera.model", model)
    add_noise = draw(st.sampled_from(["unset", True, False] if model == "none" else ["unset", True]))
    if add_noise != "unset":
        expect["tiff.add_noise"] = add_noise
        _put(ov, "tiff.add_noise", add_noise)
    if _effective(ov, "camera.model") == "original":  # background.photons comes from tiff.noise_params
        expect.pop("background.photons", None)
    return Valid(ov, expect, image_shape, offset, fixed)


def _check_type(path: str, got: Any) -> None:
    tp, _ = _non_none(LEAVES[path].tp) if path in LEAVES else (Any, False)
    if got is None or typing.get_origin(tp) is Literal:
        return
    if tp is float:
        assert type(got) is float, (path, got)
    elif tp in (int, bool, str):
        assert type(got) is tp, (path, got)


def _load_from(d1: dict[str, Any], source: str, folder: Path) -> SimulationConfig:
    text = json.dumps(d1, allow_nan=False)  # a valid config is plain, finite JSON
    if source == "dict":
        return load_config(json.loads(text))
    path = folder / f"config.{source}"
    if source == "json":
        path.write_text(text, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(d1, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(path)


@examples(120)
@given(case=valid_documents(), source=st.sampled_from(["dict", "json", "yaml"]))
def test_random_valid_configs_load_and_round_trip(case, source):
    doc = _merge(DEFAULT, case.overrides)
    before = copy.deepcopy(doc)
    cfg = load_config(doc)
    assert doc == before  # the caller's document is not changed
    assert load_config(None, overrides=case.overrides) == cfg  # overrides == the merged document
    d1 = config_to_dict(cfg)
    for path, value in case.expect.items():
        assert _get(d1, path) == value, path
        _check_type(path, _get(d1, path))
    assert cfg.image_shape == case.image_shape
    assert list(cfg.crop_offset_xy) == case.crop_offset == cfg.zernike.crop_offset
    if case.fixed_zernike is not None:
        assert cfg.psf.fixed_zernike == case.fixed_zernike
    if cfg.camera.model == "original":
        assert cfg.tiff.noise_params is not None
        assert cfg.background.photons == cfg.tiff.noise_params.background
    # round trip: the resolved config, as plain data or a file, loads to the same config
    with tempfile.TemporaryDirectory() as folder:
        cfg2 = _load_from(d1, source, Path(folder))
    assert cfg2 == cfg
    assert config_to_dict(cfg2) == d1
    again = load_config(cfg)
    assert again == cfg and again is not cfg


# =============================================================================================
# invalid leaves
# =============================================================================================

NAN, INF = float("nan"), float("inf")
HUGE = 10**400  # an integer beyond the float range
NOT_A_MAPPING = st.sampled_from([5, 2.5, "x", [1, 2], True])
KEY_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


def _typos(names: set[str]) -> st.SearchStrategy[str]:
    """Near misses of real key names (a letter inserted or dropped)."""
    name = st.sampled_from(sorted(names))
    letter = st.sampled_from("abcdefghijklmnopqrstuvwxyz_")
    inserted = st.tuples(name, st.integers(0, 30), letter).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :])
    dropped = st.tuples(name, st.integers(0, 30)).map(lambda t: t[0][: t[1]] + t[0][t[1] + 1 :])
    return inserted | dropped


def _unknown_key(level: str) -> st.SearchStrategy[str]:
    known = FIELDS[level]
    return (KEY_NAMES | _typos(known)).filter(lambda k: k and k not in known and k not in LEGACY_NAMES)


def invalid_value(leaf: Leaf) -> st.SearchStrategy[Any]:
    """A value the schema refuses for ``leaf`` (its wrong types, its range's outside, other choices)."""
    tp, optional = _non_none(leaf.tp)
    gt, ge, le = _bounds(leaf)
    maybe_none = [] if optional else [None]
    if _section_type(leaf.tp) is not None:
        return NOT_A_MAPPING | st.sampled_from(maybe_none or [[]])
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        others = st.text(max_size=8) | st.integers(-10, 10) | st.sampled_from([None, True, False, 2.5, [], {}])
        return others.filter(lambda v: v not in choices)
    if tp is bool:
        return st.sampled_from([0, 1, 1.0, "true", "false", [], {}, *maybe_none])
    if tp is str:
        return st.sampled_from([1, 2.5, True, [], {}, *maybe_none])
    if tp is int:
        lo, _ = _int_lo_hi(leaf)
        fractional = st.floats(-1e6, 1e6, **FINITE).filter(lambda v: not v.is_integer())
        below = st.integers(-BIG, lo - 1)
        out = st.sampled_from(["1", True, False, [1], {"v": 1}, NAN, INF, -INF, 2**64, HUGE, *maybe_none]) | fractional
        out = out | below | below.map(float)
        return out | st.integers(le + 1, BIG) if le is not None else out
    if tp is float:
        out = st.sampled_from(["1.5", True, False, [1.0], {}, NAN, INF, -INF, HUGE, -HUGE, *maybe_none])
        if gt is not None:
            out = out | st.floats(-1e300, gt, **FINITE) | st.integers(-BIG, math.floor(gt))
        if ge is not None:
            out = out | st.floats(-1e300, ge, exclude_max=True, **FINITE) | st.integers(-BIG, math.ceil(ge) - 1)
        if le is not None:
            out = out | st.floats(le, 1e300, exclude_min=True, **FINITE) | st.integers(math.floor(le) + 1, BIG)
        return out
    raise TypeError(leaf)  # pragma: no cover


def _bad_pairs(element_ok: Any) -> st.SearchStrategy[Any]:
    """Lists that are not ``[a, b]`` with both elements passing ``element_ok``."""
    elements = st.integers(-5, 5) | st.floats(-5, 5, **FINITE) | st.sampled_from(["1", None, NAN, -INF])
    return (
        st.lists(st.integers(0, 50), max_size=4).filter(lambda v: len(v) != 2)
        | st.lists(elements, min_size=2, max_size=2).filter(lambda v: not all(element_ok(a) for a in v))
        | st.sampled_from(["0,0", 5, {"x": 1}, True])
    )


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: Invalid values of the keys without a generic type (Any, list, dict, and the legacy mapping rules).
SPECIAL_INVALID: dict[str, st.SearchStrategy[Any]] = {
    "tiff.crop_offset": _bad_pairs(lambda a: _is_index(a) and a >= 0),
    "zernike.crop_offset": _bad_pairs(lambda a: _is_index(a) and a >= 0),
    "zernike.synthetic_shape": _bad_pairs(lambda a: _is_index(a) and a > 0)
    | st.none()
    | st.sampled_from([[True, 64], [64, True], [True, True]]),
    "emitters.area_px": st.sampled_from(
        [0, -1, 0.0, -2.5, NAN, INF, -INF, HUGE, "10", True, [1], [1, 2, 3], [0, 5], [5, NAN], [5, INF], [HUGE, 5]]
    )
    | st.floats(-1e6, 0, **FINITE),
    "provenance": NOT_A_MAPPING | st.none(),
    "psf.fixed_zernike": NOT_A_MAPPING | st.none(),
    "zmap_path": st.sampled_from([5, 2.5, True, [], {}]),
    "output.exports": st.sampled_from(["picasso", 5, 2.5, True, None, {"picasso": 1}]),  # names: test_exporters
    "channels": st.sampled_from([5, 2.5, True, "a", {"a": 1}, [5], [{}], [{"name": "a"}]]),
    "channels_layout": st.sampled_from(["split-view", "side", 5, True, None]),  # split-view needs channels
    "emitters.species": st.sampled_from([5, True, "a", {"a": 1}, [5], [{}]]),  # species need channels
    **{
        f"camera.scmos_{k}": st.sampled_from([None, True, False, [1.0], {"a": 1}, NAN, INF, -INF, HUGE, -HUGE])
        for k in ("offset", "variance", "gain")
    },
}
SPECIAL_INVALID["camera.scmos_variance"] |= st.floats(-1e6, 0, exclude_max=True, **FINITE) | st.integers(-BIG, -1)
SPECIAL_INVALID["camera.scmos_gain"] |= st.floats(-1e6, 0, **FINITE) | st.integers(-BIG, 0)
for _k in ("tiff.crop_offset", "zernike.crop_offset"):
    SPECIAL_INVALID[_k] |= st.sampled_from([[True, 0], [0, False]])

#: Every key (those inside tiff.noise_params too).
INVALID_LEAVES = sorted(LEAVES)


class Invalid(NamedTuple):
    overrides: dict[str, Any]
    path: str


@st.composite
def invalid_documents(draw: Any) -> Invalid:
    """A valid document with one bad key: a value of the wrong type or range, or an unknown key."""
    ov = copy.deepcopy(draw(valid_documents()).overrides)
    kind = draw(st.sampled_from(["leaf", "unknown_key", "noll_index"]))
    if kind == "leaf":
        path = draw(st.sampled_from(INVALID_LEAVES))
        value = draw(SPECIAL_INVALID[path] if path in SPECIAL_INVALID else invalid_value(LEAVES[path]))
        if path.startswith("camera") and ov.get("tiff", {}).get("add_noise") is False:
            # tiff.add_noise false is checked against camera.model (which a bad camera value hides)
            del ov["tiff"]["add_noise"]
        _put(ov, path, value)
    elif kind == "unknown_key":
        level = draw(st.sampled_from(["", *SECTIONS]))
        key = draw(_unknown_key(level))
        path = f"{level}.{key}" if level else key
        _put(ov, path, draw(JSON_VALUES))
    else:  # psf.fixed_zernike: a key that is no Noll index 1..n_modes, or a value that is no number
        n_modes = _effective(ov, "psf.n_modes")
        bad_key = st.integers(-BIG, 0) | st.integers(n_modes + 1, BIG) | KEY_NAMES
        key = draw(bad_key.map(str) | bad_key | st.integers(1, n_modes).map(str))
        good_key = isinstance(key, str) and key.isdigit() and 1 <= int(key) <= n_modes
        bad_value = st.sampled_from(["0.1", None, True, [0.1], {}, NAN, INF, -INF, HUGE])
        value = draw(bad_value if good_key else st.floats(-1, 1))
        coeffs = {k: v for k, v in _effective(ov, "psf.fixed_zernike").items() if str(k) != str(key)}
        _put(ov, "psf.fixed_zernike", {**coeffs, key: value})
        path = f"psf.fixed_zernike.{key}"
    return Invalid(ov, path)


@examples(250)
@given(case=invalid_documents())
def test_random_invalid_leaf_raises_config_error_naming_its_path(case):
    doc = _merge(DEFAULT, case.overrides)
    note(f"path {case.path}")
    with pytest.raises(ConfigError) as info:
        load_config(doc)
    assert _paths(info.value) == [case.path]
    assert f"\n  {case.path}: " in str(info.value)
    # the same key through overrides= of the built-in default
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides=case.overrides)
    assert _paths(info.value) == [case.path]


# =============================================================================================
# rules across sections
# =============================================================================================


def _free_geometry(draw: Any, ov: dict[str, Any]) -> tuple[int, int, int, int]:
    """A ROI of its own: ``(width, height, x0, y0)`` px, no chip, no crop_size, a 4000 px synthetic Zmap."""
    rw, rh = draw(st.integers(1, 256)), draw(st.integers(1, 256))
    x0, y0 = draw(st.integers(0, 2000)), draw(st.integers(0, 2000))
    for key, value in (
        ("tiff.roi_size", None),
        ("tiff.roi_width", rw),
        ("tiff.roi_height", rh),
        ("tiff.crop_offset", [x0, y0]),
        ("zernike.crop_offset", None),
        ("zernike.crop_size", None),
        ("zernike.synthetic_shape", [4000, 4000]),
        ("camera.chip_height", None),
        ("camera.chip_width", None),
    ):
        _put(ov, key, value)
    return rw, rh, x0, y0


@st.composite
def rule_violations(draw: Any) -> Invalid:
    """A valid document with one rule across keys broken; the path the rule's message must name."""
    valid = draw(valid_documents())
    ov = copy.deepcopy(valid.overrides)
    (rh, rw), (x0, y0) = valid.image_shape, valid.crop_offset
    rule = draw(
        st.sampled_from(
            [
                "NA_not_below_n_immersion",
                "explicit_optics_with_defaults",
                "even_patch_size",
                "odd_fast_subpixel",
                "roi_beyond_chip_rows",
                "roi_beyond_chip_columns",
                "roi_beyond_synthetic_zmap",
                "crop_size_not_roi",
                "roi_size_contradicted",
                "roi_width_without_height",
                "zernike_offset_contradicts_tiff",
                "fixed_value_key",
                "add_noise_false_with_camera",
            ]
        )
    )
    note(f"rule {rule}")
    if rule == "NA_not_below_n_immersion":
        n_imm = draw(st.floats(0.5, 2.0))
        _put(ov, "optical.n_immersion", n_imm)
        _put(ov, "optical.NA", n_imm + draw(st.sampled_from([0.0, 1e-9, 0.3])))
        _put(ov, "optical.use_default_config", False)
        for key in ("n_immersion_design", "n_coverslip", "n_coverslip_design"):  # their own rule vs NA: unset
            _put(ov, f"optical.{key}", None)
        return Invalid(ov, "optical.NA")
    if rule == "explicit_optics_with_defaults":
        key = draw(st.sampled_from(["wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "n_medium"]))
        value = draw(valid_value(LEAVES[f"optical.{key}"]).filter(lambda v: v != SCHEMA_DEFAULTS["optical"][key]))
        _put(ov, f"optical.{key}", value)
        _put(ov, "optical.use_default_config", True)
        return Invalid(ov, "optical.use_default_config")
    if rule == "even_patch_size":
        _put(ov, "psf.patch_size", draw(st.integers(2, 100).map(lambda k: 2 * k)))
        return Invalid(ov, "psf.patch_size")
    if rule == "odd_fast_subpixel":
        _put(ov, "psf.fast_subpixel", draw(st.integers(1, 32).map(lambda k: 2 * k + 1)))
        return Invalid(ov, "psf.fast_subpixel")
    if rule in ("roi_beyond_chip_rows", "roi_beyond_chip_columns"):
        rows = rule.endswith("rows")
        rw, rh, x0, y0 = _free_geometry(draw, ov)
        need = y0 + rh if rows else x0 + rw
        if need < 2:  # a 1 px ROI at 0: no chip is too small; make the ROI overhang a 1 px chip
            _put(ov, "tiff.crop_offset", [x0 + (not rows), y0 + rows])
            need += 1
        _put(ov, "camera.chip_height" if rows else "camera.chip_width", draw(st.integers(1, need - 1)))
        return Invalid(ov, "tiff.crop_offset")
    if rule == "roi_beyond_synthetic_zmap":
        rw, rh, x0, y0 = _free_geometry(draw, ov)
        zh, zw = draw(st.integers(rh, rh + y0)), draw(st.integers(rw, rw + x0))
        if (zh, zw) == (rh + y0, rw + x0):  # the ROI fits: move it by 1 to 5 px beyond
            _put(ov, "tiff.crop_offset", [x0 + draw(st.integers(1, 5)), y0])
        _put(ov, "zernike.synthetic_shape", [zh, zw])
        return Invalid(ov, "tiff.crop_offset")
    if rule == "crop_size_not_roi":
        _put(ov, "zernike.crop_size", draw(st.integers(1, 300).filter(lambda s: not s == rw == rh)))
        return Invalid(ov, "zernike.crop_size")
    if rule == "roi_size_contradicted":
        _free_geometry(draw, ov)
        size = draw(st.integers(2, 256))
        other, third = draw(st.sampled_from([("roi_width", "roi_height"), ("roi_height", "roi_width")]))
        _put(ov, "tiff.roi_size", size)
        _put(ov, f"tiff.{other}", draw(st.integers(1, 256).filter(lambda v: v != size)))
        _put(ov, f"tiff.{third}", draw(st.sampled_from([None, size])))
        return Invalid(ov, f"tiff.{other}")
    if rule == "roi_width_without_height":
        _free_geometry(draw, ov)
        given_key, missing = draw(st.sampled_from([("roi_width", "roi_height"), ("roi_height", "roi_width")]))
        _put(ov, "tiff.roi_size", None)
        _put(ov, f"tiff.{given_key}", draw(st.integers(1, 256)))
        _put(ov, f"tiff.{missing}", None)
        return Invalid(ov, f"tiff.{missing}")
    if rule == "zernike_offset_contradicts_tiff":
        _free_geometry(draw, ov)
        tiff_offset = draw(st.tuples(st.integers(0, 500), st.integers(0, 500)).filter(lambda o: o != (0, 0)))
        zernike_offset = draw(st.tuples(st.integers(0, 500), st.integers(0, 500)).filter(lambda o: o != tiff_offset))
        _put(ov, "tiff.crop_offset", list(tiff_offset))
        _put(ov, "zernike.crop_offset", list(zernike_offset))
        return Invalid(ov, "zernike.crop_offset")
    if rule == "fixed_value_key":
        path = draw(st.sampled_from(sorted(FIXED)))
        _put(ov, path, not FIXED[path])
        return Invalid(ov, path)
    # tiff.add_noise false in a document that names a camera model other than 'none'
    _put(ov, "tiff.add_noise", False)
    _put(ov, "camera.model", draw(st.sampled_from(["emccd", "scmos", "ideal", "original"])))
    return Invalid(ov, "tiff.add_noise")


@examples(150)
@given(case=rule_violations())
def test_broken_rule_across_sections_names_its_key(case):
    with pytest.raises(ConfigError) as info:
        load_config(_merge(DEFAULT, case.overrides))
    assert set(_paths(info.value)) == {case.path}
    assert f"\n  {case.path}: " in str(info.value)


# =============================================================================================
# validator gaps found by the properties (fixed; each case says what happened before)
# =============================================================================================


def _gap(
    case_id: str, overrides: dict[str, Any], path: str, was: str, *, as_document: bool = False, words: str = ""
) -> Any:
    """A gap the properties found: ``overrides`` must raise a ConfigError naming only ``path`` (and ``words``)."""
    return pytest.param(overrides, path, as_document, words, id=case_id)


@pytest.mark.parametrize(
    ("overrides", "path", "as_document", "words"),
    [
        _gap(
            "noise_params_leaf",
            {"tiff": {"noise_params": {"background": -1.0}}},
            "tiff.noise_params.background",
            "a bad key inside the optional section tiff.noise_params is reported as 'tiff.noise_params: expected a "
            "mapping (section) or null, got dict {...}' (the Union coercion drops the inner problems)",
        ),
        _gap(
            "noise_params_unknown_key",
            {"tiff": {"noise_params": {"readout_nosie": 5.0}}},
            "tiff.noise_params.readout_nosie",
            "an unknown key inside tiff.noise_params is reported under tiff.noise_params, without 'did you mean'",
            words="did you mean 'readout_noise'",
        ),
        _gap(
            "huge_int_float",
            {"emitters": {"intensity_mu": 10**400}},
            "emitters.intensity_mu",
            "an integer beyond the float range for a float key raises OverflowError (int too large to convert to "
            "float) from validation._coerce, not ConfigError",
        ),
        _gap(
            "huge_int_fixed_zernike",
            {"psf": {"fixed_zernike": {"5": 10**400}}},
            "psf.fixed_zernike.5",
            "a psf.fixed_zernike value beyond the float range raises OverflowError from validation._finalise",
        ),
        _gap(
            "fixed_zernike_nan",
            {"psf": {"fixed_zernike": {"5": float("nan")}}, "optical": {"ignore_fixed_psf_coeffs": False}},
            "psf.fixed_zernike.5",
            "a NaN psf.fixed_zernike coefficient is accepted; simulate() then raises a plain ValueError "
            "'phase contains non-finite values'",
        ),
        _gap(
            "area_px_inf",
            {"emitters": {"area_px": float("inf")}},
            "emitters.area_px",
            "emitters.area_px = inf is accepted as a positive number; simulate() then raises OverflowError "
            "'high - low range exceeds valid bounds'",
        ),
        _gap(
            "scmos_gain_negative",
            {"camera": {"model": "scmos", "scmos_gain": -1.0}},
            "camera.scmos_gain",
            "camera.scmos_gain <= 0 is accepted; simulate() then raises a plain ValueError 'SCMOS gain must be > 0'",
        ),
        _gap(
            "scmos_variance_negative",
            {"camera": {"model": "scmos", "scmos_variance": -2.0}},
            "camera.scmos_variance",
            "a negative camera.scmos_variance is accepted; simulate() then raises a plain ValueError",
        ),
        _gap(
            "scmos_offset_nan",
            {"camera": {"model": "scmos", "scmos_offset": float("nan")}},
            "camera.scmos_offset",
            "a NaN / infinite camera.scmos_* number is accepted; simulate() then raises a plain ValueError "
            "'SCMOS offset must be finite'",
        ),
        _gap(
            "synthetic_shape_bool",
            {
                "zernike": {"synthetic_shape": [True, 64]},
                "tiff": {"roi_size": None, "roi_width": 64, "roi_height": 1, "crop_offset": [0, 0]},
            },
            "zernike.synthetic_shape",
            "booleans pass as positive integers in zernike.synthetic_shape ([True, 64] is a 1 x 64 Zmap: a 64 x 1 "
            "px ROI on it loads and renders)",
        ),
        _gap(
            "add_noise_override",
            {"tiff": {"add_noise": False}},
            "tiff.add_noise",
            "tiff.add_noise false over an EMCCD camera is refused in a document (legacy.translate_pipeline) but "
            "accepted through load_config(overrides=...): the frames are noisy EMCCD ADU, add_noise is ignored",
        ),
        _gap(
            "camera_scalar_add_noise",
            {"tiff": {"add_noise": False}, "camera": "emccd"},
            "camera",
            "a camera section that is not a mapping beside tiff.add_noise false raises TypeError "
            "('str' object does not support item assignment) in legacy.translate_pipeline",
            as_document=True,
        ),
        _gap(
            "int64_seed",
            {"emitters": {"seed": 2**70}},
            "emitters.seed",
            "an emitters.seed beyond 64 bits loads and simulates; Sample.save then raises TypeError (no HDF5 dtype)",
        ),
        _gap(
            "huge_int_area_px",
            {"emitters": {"area_px": [10**400, 5]}},
            "emitters.area_px",
            "an integer beyond the float range in emitters.area_px passes as positive; simulate() then raises "
            "OverflowError",
        ),
        _gap(
            "huge_int_scmos_gain",
            {"camera": {"model": "scmos", "scmos_gain": 10**400}},
            "camera.scmos_gain",
            "an integer beyond the float range for camera.scmos_* is accepted; simulate() then fails",
        ),
        _gap(
            "fixed_zernike_bool_key",
            {"psf": {"fixed_zernike": {True: 0.1}}},
            "psf.fixed_zernike.True",
            "a boolean psf.fixed_zernike key counts as Noll index 1",
        ),
        _gap(
            "fixed_zernike_float_key",
            {"psf": {"fixed_zernike": {5.5: 0.1}}},
            "psf.fixed_zernike.5.5",
            "a fractional psf.fixed_zernike key is truncated to a Noll index (5.5 -> 5)",
        ),
        _gap(
            "crop_offset_bool",
            {"tiff": {"crop_offset": [True, 0]}},
            "tiff.crop_offset",
            "(not a gap: booleans were already refused as offsets; kept beside synthetic_shape_bool)",
        ),
        _gap(
            "optics_override_with_defaults",
            {"optical": {"NA": 1.3}},
            "optical.use_default_config",
            "optics given through overrides= while optical.use_default_config is true were applied silently "
            "(the same keys in a document are refused)",
        ),
        _gap(
            "add_noise_document",
            {"tiff": {"add_noise": False}},
            "tiff.add_noise",
            "(not a gap: the document form of add_noise_override, refused with the same message)",
            as_document=True,
        ),
        _gap(
            "roi_width_beyond_zmap",
            {
                "tiff": {"roi_size": None, "roi_width": 100, "roi_height": 10, "crop_offset": [0, 0]},
                "zernike": {"synthetic_shape": [50, 50]},
            },
            "tiff.roi_width",
            "a ROI wider than the synthetic Zmap was reported under tiff.roi_size, which the user did not give",
        ),
    ],
)
def test_known_validator_gaps(overrides, path, as_document, words):
    with pytest.raises(ConfigError) as info:
        if as_document:
            load_config(_merge(DEFAULT, overrides))
        else:
            load_config(None, overrides=overrides)
    assert _paths(info.value) == [path]
    assert f"\n  {path}: " in str(info.value) and words in str(info.value)


# =============================================================================================
# chunking and tiling: the frames do not depend on them
# =============================================================================================

T = 5  # frames
CAMERAS = ("emccd", "none", "scmos", "ideal", "original")
SHAPES = ((30, 37), (48, 20), (9, 48))  # (rows, columns) px: odd sizes, and rows fewer than the PSF patch


def _chunk_config(camera: str, shape: tuple[int, int], render: Mapping[str, Any] | None = None) -> SimulationConfig:
    """A tiny sample: emitters drawn up to 4 px beyond every edge (they light the border pixels)."""
    h, w = shape
    return tiny_config(
        camera={"model": camera},
        tiff={"roi_width": w, "roi_height": h},
        emitters={"frames": T, "margin_px": 4.0, "num_emitters": 25},
        render=dict(render or {}),
    )


def _border_table(shape: tuple[int, int]) -> Any:
    """Emitters on pixel edges and corners, on the borders of 8/16/24/32 px tiles, on and beyond the edges."""
    h, w = shape
    xs = [-3.0, -0.5, 0.0, 7.5, 8.0, 15.5, 23.5, 31.5, w - 0.5, w + 2.0]
    ys = [-2.0, -0.5, 7.5, 8.0, 15.5, h - 1.0, h - 0.5, h + 1.5]
    xyz = [(x, ys[i % len(ys)], (-0.3, 0.0, 0.25)[i % 3]) for i, x in enumerate(xs)]
    xyz += [(xs[(3 * i + 1) % len(xs)], y, 0.1) for i, y in enumerate(ys)]
    n = len(xyz)
    rng = np.random.default_rng(11)
    return emitter_table(xyz, rng.uniform(2000, 6000, n), t0=rng.uniform(-1, T - 1, n), on_time=rng.uniform(1, T, n))


def _sample(kind: str, camera: str, shape: tuple[int, int], seed: int, render: Mapping[str, Any] | None = None, **kw):
    cfg = _chunk_config(camera, shape, render)
    if kind == "drawn":
        return z2t.simulate(cfg, seed=seed, **kw)
    return sample_from_arrays(cfg, _border_table(shape), seed=seed, **kw)


@functools.cache
def _reference(kind: str, camera: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """The frames rendered as one block (all frames, whole frames)."""
    s = _sample(kind, camera, shape, seed, chunk_frames=T)
    assert s.frames.numblocks == (1, 1, 1)
    out = s.frames.compute(scheduler="sync")
    out.setflags(write=False)
    return out


CHUNK_FRAMES = st.none() | st.integers(1, T + 2)  # more than T is clipped to T
TILE = st.none() | st.integers(8, 64) | st.just(10**6)  # beyond the ROI: whole frames


@st.composite
def windows(draw: Any, shape: tuple[int, int]) -> tuple[slice, slice, slice]:
    out = []
    for n in (T, *shape):
        a = draw(st.integers(0, n - 1))
        out.append(slice(a, draw(st.integers(a + 1, n))))
    return tuple(out)


@examples(25)
@given(
    kind=st.sampled_from(["drawn", "border"]),
    camera=st.sampled_from(CAMERAS),
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2),
    chunk_frames=CHUNK_FRAMES,
    tile=TILE,
    chunk_mb=st.none() | st.floats(1e-4, 16.0),
    via=st.sampled_from(["arguments", "config"]),
    data=st.data(),
)
def test_frames_are_byte_identical_for_every_chunking(
    kind, camera, shape, seed, chunk_frames, tile, chunk_mb, via, data
):
    ref = _reference(kind, camera, shape, seed)
    render = {} if chunk_mb is None else {"chunk_mb": chunk_mb}
    if via == "config":
        render |= {"chunk_frames": chunk_frames, "tile_size": tile}
        s = _sample(kind, camera, shape, seed, render)
    else:
        s = _sample(kind, camera, shape, seed, render, chunk_frames=chunk_frames, tile_size=tile)
    arr = s.frames
    note(f"chunks {arr.chunks}")
    # the chunking asked for is the one used (else this test would prove nothing)
    expected = choose_chunks(
        shape, T, ref.dtype.itemsize, chunk_mb=chunk_mb or DEFAULT_CHUNK_MB, chunk_frames=chunk_frames, tile_size=tile
    )
    assert arr.chunksize == expected
    if chunk_frames is not None and tile is not None:
        assert expected == (min(chunk_frames, T), min(tile, shape[0]), min(tile, shape[1]))
    got = arr.compute(scheduler="sync")
    assert got.dtype == ref.dtype and got.shape == ref.shape == (T, *shape)
    assert got.tobytes() == ref.tobytes()
    # a window computed alone (only the blocks it touches) equals that part of the whole
    win = data.draw(windows(shape))
    assert arr[win].compute(scheduler="sync").tobytes() == np.ascontiguousarray(ref[win]).tobytes()


@pytest.mark.parametrize(("name", "value"), [("chunk_frames", -1), ("chunk_frames", 2.5), ("tile_size", -8)])
def test_chunking_the_api_refuses(name, value):
    with pytest.raises(ValueError, match=f"render.{name}"):
        _sample("drawn", "none", SHAPES[0], 0, **{name: value})
