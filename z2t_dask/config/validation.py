"""Validation: a document (file, ``dict`` or nothing) becomes a checked, immutable config.

:func:`load_config` reads a JSON/YAML file, a ``dict``, a :class:`SimulationConfig` or nothing (the
built-in default, :func:`builtin_default_dict`), has :mod:`z2t_dask.config.legacy` translate the
original tool's files into this package's key names, merges the optional camera, optics and
override documents, and then

* builds the dataclasses of :mod:`z2t_dask.config.schema` field by field, checking each value
  against its annotation (type coercion) and its metadata (``gt``/``ge``/``le`` ranges);
* checks what spans sections (ROI geometry and offsets, chip size, optics, PSF numerics, keys the
  simulator cannot honour) and returns a *new* config with the resolved values
  (:func:`dataclasses.replace`): no config is ever changed in place;
* raises one :class:`~z2t_dask.errors.ConfigError` listing every bad key path, what was expected
  and, on a typo, the close key.

Units: lengths of the optics in nm, positions in camera pixels, z in µm, times in frames,
photons per frame.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.config.coercion import build as _build  # private aliases keep the call sites short
from z2t_dask.config.coercion import finite as _finite
from z2t_dask.config.coercion import is_int64 as _is_int64
from z2t_dask.config.coercion import show_value as _show
from z2t_dask.config.documents import read_document as _read_document
from z2t_dask.config.legacy import (
    apply_original_noise_model,
    is_camera_parameters,
    is_default_config,
    settle_add_noise,
    translate_camera,
    translate_default_config,
    translate_pipeline,
    unwrap_batch_config,
)
from z2t_dask.config.schema import EXPORT_FORMATS, OpticalConfig, SimulationConfig, config_to_dict
from z2t_dask.errors import ConfigError

__all__ = ["builtin_default_dict", "default_config", "load_config"]

#: The built-in default sample (also the base of the original ``default_config.json`` and
#: ``camera_parameters.json`` files): synthetic Zmap, EMCCD, 64x64 px, 100 frames.
BUILTIN_DEFAULT_PATH = Path(__file__).parent / "data" / "default_config.json"

#: The optics keys that, given with ``optical.use_default_config`` true, are an error.
_OPTICS_KEYS = ("wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "NA", "n_medium", "n_immersion")


# --------------------------------------------------------------------------------------------
# semantic checks across sections
# --------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    """Whether ``v`` is a 64-bit integer (a bool is not one, anywhere in a config)."""
    return isinstance(v, int) and not isinstance(v, bool) and _is_int64(v)


def _positive(v: Any) -> bool:
    """Whether ``v`` is a finite number > 0."""
    x = _finite(v)
    return x is not None and x > 0


def _noll_index(k: Any) -> int | None:
    """A ``psf.fixed_zernike`` key as an integer (an int, or a string of digits as JSON keys are), else None."""
    if _is_int(k):
        return int(k)
    if isinstance(k, str) and k.strip().lstrip("+-").isdigit() and k.strip().isascii():
        return int(k)
    return None


def _finalise(cfg: SimulationConfig, problems: list[tuple[str, str]], explicit_optics: set[str]) -> SimulationConfig:
    """Check what spans sections; return a new config with the resolved geometry.

    The ROI size (``tiff.roi_size`` / ``roi_width`` / ``roi_height``, px, default 1200 x 1200),
    the ROI offset (``tiff.crop_offset`` = ``zernike.crop_offset``, px) and ``psf.fixed_zernike``
    (Noll index -> rad RMS) are resolved; problems are appended to ``problems``. ``cfg`` is not
    changed.
    """
    t, e, o, z, c = cfg.tiff, cfg.emitters, cfg.optical, cfg.zernike, cfg.camera
    # geometry
    roi_width, roi_height = t.roi_width, t.roi_height
    if t.roi_size is not None:
        for k, v in (("roi_width", roi_width), ("roi_height", roi_height)):
            if v is not None and v != t.roi_size:
                problems.append((f"tiff.{k}", f"contradicts tiff.roi_size={t.roi_size}"))
        roi_width = roi_width or t.roi_size
        roi_height = roi_height or t.roi_size
    if roi_width is None or roi_height is None:
        if roi_width is None and roi_height is None:
            roi_width = roi_height = 1200  # the original default roi_size
        else:
            problems.append(
                (
                    "tiff.roi_width" if roi_width is None else "tiff.roi_height",
                    "give both roi_width and roi_height, or roi_size",
                )
            )
            return cfg
    roi_size = roi_width if roi_width == roi_height else None
    for name, off in (("tiff.crop_offset", t.crop_offset), ("zernike.crop_offset", z.crop_offset)):
        if off is not None and (len(off) != 2 or not all(_is_int(v) and v >= 0 for v in off)):
            problems.append((name, f"expected [x, y] non-negative integers (px), got {_show(off)}"))
            return cfg
    crop_offset = t.crop_offset
    if z.crop_offset is not None and list(z.crop_offset) != list(crop_offset):
        if list(crop_offset) == [0, 0]:
            crop_offset = list(z.crop_offset)
        else:
            problems.append(("zernike.crop_offset", f"{z.crop_offset} contradicts tiff.crop_offset {crop_offset}"))
    if z.crop_size is not None and (z.crop_size != roi_width or z.crop_size != roi_height):
        problems.append(
            (
                "zernike.crop_size",
                (f"must equal the ROI size ({roi_width}x{roi_height}), got {z.crop_size}: the Zmap window is the ROI"),
            )
        )
    if not t.use_direct_rendering:
        problems.append(
            (
                "tiff.use_direct_rendering",
                (
                    "only true is supported: the original high-resolution path "
                    "shrank PSFs and lost photons (defect D8); PSFs here are exact at any pixel size"
                ),
            )
        )
    if c.chip_height is not None and crop_offset[1] + roi_height > c.chip_height:
        problems.append(
            (
                "tiff.crop_offset",
                (f"ROI rows {crop_offset[1]}..{crop_offset[1] + roi_height} exceed the chip height {c.chip_height}"),
            )
        )
    if c.chip_width is not None and crop_offset[0] + roi_width > c.chip_width:
        problems.append(
            (
                "tiff.crop_offset",
                (f"ROI columns {crop_offset[0]}..{crop_offset[0] + roi_width} exceed the chip width {c.chip_width}"),
            )
        )
    # emitters
    a = e.area_px
    if a is not None and not (_positive(a) or (isinstance(a, list) and len(a) == 2 and all(map(_positive, a)))):
        problems.append(
            ("emitters.area_px", f"expected a finite number > 0 or [width, height] of them in px, got {_show(a)}")
        )
    if e.no_plot is not True:
        problems.append(
            (
                "emitters.no_plot",
                (
                    "plots are not produced by the simulator; set true "
                    "(z2t writes the ground truth to emitters.h5 / CSV)"
                ),
            )
        )
    if z.no_plot is not True:
        problems.append(("zernike.no_plot", "coefficient plots are not produced by the simulator; set true"))
    if cfg.output.generate_plots:
        problems.append(("output.generate_plots", "plots are not produced by the simulator; set false"))
    if not cfg.output.save_intermediate:
        problems.append(("output.save_intermediate", "emitters.h5 (the ground truth) is always written; set true"))
    for i, name in enumerate(cfg.output.exports):  # the exporters of z2t_dask.io.exporters
        if not isinstance(name, str) or name.lower() not in EXPORT_FORMATS:
            known = ", ".join(EXPORT_FORMATS)
            problems.append((f"output.exports[{i}]", f"unknown export {name!r}; use any of {known}"))
    # optics
    if o.use_default_config and explicit_optics:
        problems.append(
            (
                "optical.use_default_config",
                "is true but optical " + ", ".join(sorted(explicit_optics)) + " given; set it false to use them",
            )
        )
    if o.NA >= o.n_immersion:
        problems.append(("optical.NA", f"must be < n_immersion ({o.n_immersion}), got {o.NA}"))
    _check_psf_optics(cfg, problems)
    # psf
    p = cfg.psf
    if p.patch_size % 2 == 0:
        problems.append(("psf.patch_size", f"must be odd, got {p.patch_size}"))
    if p.fast_subpixel % 2:
        problems.append(("psf.fast_subpixel", f"must be even, got {p.fast_subpixel}"))
    fixed: dict[int, float] = {}
    for k, v in p.fixed_zernike.items():
        j = _noll_index(k)
        name = f"psf.fixed_zernike.{k if isinstance(k, str) else _show(k, 30)}"
        if j is None:
            problems.append((name, "keys must be Noll indices (integers >= 1)"))
        elif j < 1 or j > p.n_modes:
            problems.append((name, f"Noll index must be in 1..psf.n_modes={p.n_modes}"))
        elif _finite(v) is None:
            problems.append((name, f"expected a finite number (rad RMS), got {_show(v)}"))
        else:
            fixed[j] = float(v)
    # zmap shape
    zs = z.synthetic_shape
    if not (isinstance(zs, list) and len(zs) == 2 and all(_is_int(v) and v > 0 for v in zs)):
        problems.append(("zernike.synthetic_shape", f"expected [height, width] positive integers, got {_show(zs)}"))
    elif cfg.zmap_path is None:  # the synthetic Zmap is the chip's aberrations: the ROI must lie on it
        _check_on_synthetic_zmap(t, zs, crop_offset, roi_width, roi_height, problems)
    # camera (the original float noise model was settled in the document: legacy.apply_original_noise_model);
    # numbers here, the values of .npy maps where they are read (engine.assembly.make_camera)
    for k, bound in (("scmos_offset", None), ("scmos_variance", "ge"), ("scmos_gain", "gt")):
        v = getattr(c, k)
        if isinstance(v, str):
            continue
        x = _finite(v)
        if x is None:
            problems.append((f"camera.{k}", f"expected a finite number or a .npy path, got {_show(v)}"))
        elif (bound == "ge" and x < 0) or (bound == "gt" and x <= 0):
            unit = "ADU^2" if k == "scmos_variance" else "ADU/e-"
            problems.append((f"camera.{k}", f"must be {'>=' if bound == 'ge' else '>'} 0 {unit}, got {_show(v)}"))
    tiff = dataclasses.replace(
        t, roi_width=roi_width, roi_height=roi_height, roi_size=roi_size, crop_offset=crop_offset
    )
    zernike = dataclasses.replace(z, crop_offset=list(crop_offset))
    return dataclasses.replace(cfg, tiff=tiff, zernike=zernike, psf=dataclasses.replace(p, fixed_zernike=fixed))


def _check_psf_optics(cfg: SimulationConfig, problems: list[tuple[str, str]]) -> None:
    """Checks of the PSF model's optics and the emitters' dipoles (appended to ``problems``).

    The NA must stay below every index it passes through in the objective's design and the actual
    coverslip and immersion (``n_medium`` below NA is allowed: supercritical light); an explicit
    ``optical.focus_depth_um`` must keep the deepest drawn emitter (``z = -emitters.z_range_um``)
    above the coverslip; fixed dipoles need the vectorial model; dipole angles need fixed dipoles.
    """
    o, e, p = cfg.optical, cfg.emitters, cfg.psf
    for key in ("n_immersion_design", "n_coverslip", "n_coverslip_design"):
        value = getattr(o, key)
        if value is not None and o.NA >= value:
            problems.append((f"optical.{key}", f"must exceed optical.NA ({o.NA}), got {value}"))
    if o.focus_depth_um is not None and o.focus_depth_um < e.z_range_um:
        problems.append(
            (
                "optical.focus_depth_um",
                f"{o.focus_depth_um} um is below emitters.z_range_um ({e.z_range_um} um): emitters drawn at z down to "
                f"-{e.z_range_um} um would lie below the coverslip (emitter depth focus_depth_um + z must be >= 0); "
                "give focus_depth_um >= emitters.z_range_um, or null (= emitters.z_range_um)",
            )
        )
    if e.dipole == "fixed" and not p.vectorial:
        problems.append(
            ("emitters.dipole", "'fixed' needs psf.vectorial true (the scalar model has no dipole orientation)")
        )
    for key in ("dipole_polar_deg", "dipole_azimuth_deg"):
        if getattr(e, key) is not None and e.dipole != "fixed":
            problems.append(
                (f"emitters.{key}", "is only used with emitters.dipole 'fixed'; set it null, or the dipole 'fixed'")
            )


def _check_on_synthetic_zmap(
    t: Any, shape: list, crop_offset: list, roi_width: int, roi_height: int, problems: list[tuple[str, str]]
) -> None:
    """The ROI (``tiff.crop_offset`` + size, px) must lie on the synthetic Zmap (``zernike.synthetic_shape``).

    A ROI larger than the Zmap is reported under the key that set its size (``tiff.roi_width`` /
    ``tiff.roi_height`` when given, else ``tiff.roi_size``); a ROI that fits but is placed beyond the
    Zmap under ``tiff.crop_offset``. ``t`` is the unresolved tiff section (what the user gave).
    """
    (zh, zw), (x0, y0) = shape, crop_offset
    if x0 + roi_width <= zw and y0 + roi_height <= zh:
        return
    where = (
        f"the ROI (tiff.crop_offset [{x0}, {y0}] + {roi_width}x{roi_height} px) covers chip columns "
        f"{x0}..{x0 + roi_width - 1}, rows {y0}..{y0 + roi_height - 1}, beyond the synthetic Zmap of "
        f"{zh}x{zw} px (zernike.synthetic_shape [height, width])"
    )
    keys: list[str] = []
    for too_big, own in ((roi_width > zw, "tiff.roi_width"), (roi_height > zh, "tiff.roi_height")):
        key = own if too_big and getattr(t, own.split(".")[1]) is not None else "tiff.roi_size"
        if too_big and key not in keys:
            keys.append(key)
    for key in keys:
        problems.append((key, f"{where}: the ROI is larger than the Zmap; make it smaller or enlarge synthetic_shape"))
    if not keys:
        problems.append(("tiff.crop_offset", f"{where}; move the ROI or enlarge synthetic_shape"))


# --------------------------------------------------------------------------------------------
# documents and loading
# --------------------------------------------------------------------------------------------


def builtin_default_dict() -> dict[str, Any]:
    """The built-in default sample as a document (a new ``dict`` each call), before validation.

    It is :data:`BUILTIN_DEFAULT_PATH` (``z2t_dask/config/data/default_config.json``): synthetic
    Zmap, EMCCD, 64x64 px, 100 frames. ``z2t simulate`` without ``--config`` uses it.
    """
    data: dict[str, Any] = json.loads(BUILTIN_DEFAULT_PATH.read_text("utf-8"))
    return data


def default_config() -> SimulationConfig:
    """The built-in default sample (synthetic Zmap, EMCCD, 64x64 px, 100 frames)."""
    return load_config(None)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``over`` applied on top, section by section."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Section ``name`` of a document, or an empty mapping if absent or not a mapping (reported later)."""
    sec = data.get(name)
    return sec if isinstance(sec, Mapping) else {}


def _explicit_optics(data: Mapping[str, Any]) -> set[str]:
    """Optics keys a document sets to values other than the schema defaults."""
    opt = _section(data, "optical")
    defaults = OpticalConfig()
    return {k for k in opt if k in _OPTICS_KEYS and opt[k] != getattr(defaults, k)}


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | SimulationConfig | None = None,
    *,
    camera: str | os.PathLike | Mapping[str, Any] | None = None,
    optics: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SimulationConfig:
    """Load and validate a sample configuration.

    Parameters
    ----------
    source
        A JSON/YAML path, a ``dict``, a :class:`SimulationConfig` (returned as a validated copy:
        equal, never the same object), or ``None`` for the built-in default (no user data
        needed). The original pipeline config and a batch config's ``base_config`` are
        accepted; so are the original ``default_config.json`` and ``camera_parameters.json``
        (each applied over the defaults).
    camera
        Optional ``camera_parameters.json`` (path or dict) applied over ``source``.
    optics
        Optional original ``default_config.json`` (path or dict) applied under ``source``.
    overrides
        Nested mapping applied last (e.g. ``{"emitters": {"frames": 50}}``).

    Returns
    -------
    SimulationConfig
        A new, immutable config; no argument is changed.

    Raises
    ------
    ConfigError
        Listing every bad key path with what was expected.
    """
    src_name = str(source) if isinstance(source, (str, os.PathLike)) else None
    problems: list[tuple[str, str]] = []
    if source is None:
        data: dict[str, Any] = builtin_default_dict()
    elif isinstance(source, SimulationConfig):
        data = config_to_dict(source)  # new plain data: the config itself is never touched
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        data = _read_document(source)
    data = unwrap_batch_config(data, src_name)
    if is_camera_parameters(data):
        cam_out: dict[str, Any] = {}
        translate_camera(data, cam_out, problems, "camera_parameters")
        data = _merge(builtin_default_dict(), cam_out)
    elif is_default_config(data):
        data = _merge(builtin_default_dict(), translate_default_config(data, problems))
    else:
        data = translate_pipeline(data, problems)
    # optics values given in the document or the overrides (not the optics= file, which sets
    # use_default_config false under them): an error if use_default_config is still true at the end
    explicit_optics = _explicit_optics(data)
    if optics is not None:
        odata = optics if isinstance(optics, Mapping) else _read_document(optics)
        under = translate_default_config(odata, problems)
        data = _merge(under, data)
    if camera is not None:
        cdata = camera if isinstance(camera, Mapping) else _read_document(camera)
        cam_out = {}
        translate_camera(cdata, cam_out, problems, "camera_parameters")
        data = _merge(data, cam_out)
        if "model" not in cam_out.get("camera", {}) and _section(data, "camera").get("model") in (None, "original"):
            data["camera"]["model"] = "emccd"
    if overrides:
        data = _merge(data, overrides)
        explicit_optics |= _explicit_optics(overrides)  # as if they were in the document
    if _section(data, "optical").get("use_default_config") is False:
        explicit_optics = set()
    data = settle_add_noise(data, problems)
    data = apply_original_noise_model(data)
    cfg = _build(SimulationConfig, data, "", problems)
    if not problems:
        cfg = _finalise(cfg, problems, explicit_optics)
    if not problems:  # detection channels and dye species (z2t_dask.config.channels)
        from z2t_dask.config.channels import resolve_channels

        cfg = resolve_channels(cfg, problems)
    if problems:
        raise ConfigError(problems, src_name)
    if (
        isinstance(cfg.zmap_path, str)
        and src_name
        and not os.path.isabs(cfg.zmap_path)
        and not Path(cfg.zmap_path).exists()
        and (Path(src_name).parent / cfg.zmap_path).exists()
    ):
        cfg = dataclasses.replace(cfg, zmap_path=str(Path(src_name).parent / cfg.zmap_path))
    return cfg
