"""Translation of the original tool's configuration files into this package's schema.

The original simulator read three kinds of JSON file, with its own key names:

* the *pipeline* config (sections ``zmap_path``, ``emitters``, ``zernike``, ``tiff`` with
  ``noise_params``, ``optical``, ``output``, ``memory_optimization``), also found as the
  ``base_config`` of its batch config (:func:`translate_pipeline`, :func:`unwrap_batch_config`);
* ``default_config.json``: optics, camera and photophysics defaults
  (:func:`translate_default_config`);
* ``camera_parameters.json``: a camera calibration (:func:`translate_camera`).

Everything here works on plain ``dict`` data, before any dataclass is built: the functions return
a document in this package's key names (or append ``(key path, message)`` problems), and
:func:`z2t_dask.config.validation.load_config` then validates it. The original tool's meaning of a
key is settled here and nowhere else, including its float noise model
(:func:`apply_original_noise_model`: ``camera.model = 'original'`` takes its background from
``tiff.noise_params.background``).

Keys the original read but never used are rejected with a message, except a few purely descriptive
keys of ``default_config.json`` (``experiment.*`` ...), kept as provenance and reported with a
:class:`~z2t_dask.errors.LegacyKeyWarning`.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.config.schema import NoiseParams
from z2t_dask.errors import LegacyKeyWarning

__all__ = [
    "apply_original_noise_model",
    "is_camera_parameters",
    "settle_add_noise",
    "is_default_config",
    "translate_camera",
    "translate_default_config",
    "translate_pipeline",
    "unwrap_batch_config",
]


# camera_parameters.json -> camera section (value transforms handled in translate_camera)
_CAMERA_ALIASES = {
    "QE": "qe",
    "EMGain": "em_gain",
    "A2D": "e_per_adu",
    "e_adu": "e_per_adu",
    "offset": "baseline",
    "max_adu": "bit_depth",
    "chipszh": "chip_height",
    "chipszw": "chip_width",
}


def _number(value: Any) -> float | None:
    """``value`` as a finite float (not a bool, not beyond the float range), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def _brief(value: Any) -> str:
    """``repr(value)`` cut to 80 characters (never fails on integers beyond Python's 4300-digit text limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= 80 else text[:77] + "..."


def translate_camera(cam: Mapping[str, Any], out: dict[str, Any], problems: list, prefix: str) -> None:
    """Map original camera names (camera_parameters.json, default_config.json ``camera``).

    Entries go into ``out`` (sections ``camera``, ``optical``, ``background``, ``provenance``);
    bad values are appended to ``problems`` as ``(prefix.key, message)``. Units follow the
    schema: the read-noise variance ``var`` (ADU²) becomes ``read_noise_e`` (e⁻, with ``A2D``
    e⁻/ADU), ``max_adu`` (2**bits - 1) becomes ``bit_depth``, ``cam_pxszx``/``cam_pxszy`` the pixel
    pitch in nm.
    """
    sim_cam = out.setdefault("camera", {})
    optical = out.setdefault("optical", {})
    for key, value in cam.items():
        path = f"{prefix}.{key}"
        if key in ("cam_pxszx", "cam_pxszy"):
            optical["pixel_size_nm_x" if key.endswith("x") else "pixel_size_nm_y"] = value
            optical["use_default_config"] = False
        elif key == "max_adu":
            x = _number(value)
            n = int(x) if x is not None and x.is_integer() else 0  # (2**bits - 1 is exact in a float up to 53 bits)
            if n > 0 and (n + 1) & n == 0:
                sim_cam["bit_depth"] = (n + 1).bit_length() - 1
            else:
                problems.append((path, f"expected 2**bits - 1 (e.g. 65535), got {_brief(value)}"))
        elif key == "var":
            # read-noise variance in ADU^2 -> s.d. in electrons (needs the ADU conversion)
            a2d = cam.get("A2D", cam.get("e_adu", cam.get("e_per_adu")))
            var = _number(value)
            if var is None or var < 0:
                problems.append((path, f"expected a finite variance >= 0 (ADU^2), got {_brief(value)}"))
            elif a2d is None:
                problems.append((path, "read-noise variance in ADU^2 needs A2D (e-/ADU) in the same file"))
            elif "read_noise_e" not in cam and _number(a2d) is not None:  # a bad A2D is reported as e_per_adu
                sim_cam["read_noise_e"] = math.sqrt(var) * float(a2d)
        elif key == "scmos_var":
            if value is True:
                sim_cam["model"] = "scmos"
            elif value is not False:
                problems.append((path, f"expected true/false, got {_brief(value)}"))
        elif key in ("cam_pth", "view_type"):
            prov = out.setdefault("provenance", {})
            prov[f"camera.{key}"] = value
        elif key == "autofluorescence_background":
            out.setdefault("background", {})["photons"] = value
        else:
            sim_cam[_CAMERA_ALIASES.get(key, key)] = value


def is_camera_parameters(d: Mapping[str, Any]) -> bool:
    """Whether a document is the original ``camera_parameters.json`` (a camera calibration)."""
    return any(k in d for k in ("cam_pxszx", "A2D", "EMGain", "chipszh", "scmos_var"))


def is_default_config(d: Mapping[str, Any]) -> bool:
    """Whether a document is the original ``default_config.json`` (optics and camera defaults)."""
    return any(k in d for k in ("photophysics", "simulation", "experiment", "emitter")) and "tiff" not in d


# default_config.json keys with no effect on the simulation (the original ignored them too);
# they are kept as provenance and reported with a LegacyKeyWarning.
_DEFAULT_CONFIG_DESCRIPTIVE = {
    "optical.psf_patch_size",
    "optical.ao_strength_factor",
    "emitter.n_emitters",
    "emitter.total_photons",
    "emitter.full_roi_size",
    "emitter.emitter_on_prob",
    "emitter.min_z_um",
    "emitter.max_z_um",
    "photophysics.quantum_yield",
    "photophysics.laser_power_w_cm2",
    "photophysics.molar_extinction_coeff",
    "photophysics.wavelength_nm",
    "photophysics.sub_frame_resolution",
    "simulation.n_samples",
    "simulation.output_dir",
    "experiment.*",
    "psf.type",
}


def translate_default_config(d: Mapping[str, Any], problems: list) -> dict[str, Any]:
    """Translate the original ``configs/default_config.json`` (optics and camera defaults)."""
    out: dict[str, Any] = {}
    descriptive: dict[str, Any] = {}
    for section, body in d.items():
        if not isinstance(body, Mapping):
            problems.append((section, "expected a mapping (section)"))
            continue
        for key, value in body.items():
            path = f"{section}.{key}"
            if section == "optical":
                if key in ("wavelength_nm", "pixel_size_nm_x", "pixel_size_nm_y", "NA", "n_medium"):
                    out.setdefault("optical", {})[key] = value
                    out["optical"]["use_default_config"] = False
                elif key == "max_noll_coeffs":
                    out.setdefault("psf", {})["n_modes"] = value
                elif key == "defocus_noll_index":
                    if value != 4:
                        problems.append((path, f"defocus is Noll index 4 in this library, got {_brief(value)}"))
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "camera":
                translate_camera(
                    {key: value, **({"e_adu": body["e_adu"]} if key == "var" and "e_adu" in body else {})},
                    out,
                    problems,
                    section,
                )
            elif section == "photophysics":
                mapping = {"T_ON": "t_on", "T_DARK": "t_dark", "T_BLEACH": "t_bleach"}
                if key in mapping:
                    out.setdefault("emitters", {})[mapping[key]] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "simulation":
                if key == "n_frames":
                    out.setdefault("emitters", {})["frames"] = value
                elif key == "random_seed":
                    out.setdefault("emitters", {})["seed"] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section == "psf":
                if key == "zernike_coefficients":
                    out.setdefault("psf", {})["fixed_zernike"] = value
                elif path in _DEFAULT_CONFIG_DESCRIPTIVE:
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            elif section in ("emitter", "experiment"):
                if path in _DEFAULT_CONFIG_DESCRIPTIVE or section == "experiment":
                    descriptive[path] = value
                else:
                    problems.append((path, "unknown key"))
            else:
                problems.append((section, "unknown section of default_config.json"))
                break
    if descriptive:
        out.setdefault("provenance", {}).update({f"default_config.{k}": v for k, v in descriptive.items()})
        warnings.warn(
            "default_config.json keys with no effect on the simulation (the original tool ignored them "
            "too); kept as provenance only: " + ", ".join(sorted(descriptive)),
            LegacyKeyWarning,
            stacklevel=4,
        )
    return out


def translate_pipeline(d: Mapping[str, Any], problems: list) -> dict[str, Any]:
    """Translate the original pipeline config (and its batch ``base_config``) into this schema."""
    out = copy.deepcopy(dict(d))
    # memory_optimization -> render
    mo = out.pop("memory_optimization", None)
    if mo is not None:
        if not isinstance(mo, Mapping):
            problems.append(("memory_optimization", "expected a mapping (section)"))
        else:
            render = out.setdefault("render", {})
            for key, value in mo.items():
                if key == "chunk_size":
                    render["chunk_frames"] = value
                elif key == "gc_frequency":
                    render.setdefault("gc_frequency", value)
                elif key == "enable_gc":
                    if value is False:
                        render["gc_frequency"] = 0
                    elif value is not True:
                        problems.append(("memory_optimization.enable_gc", f"expected true/false, got {_brief(value)}"))
                    else:
                        render.setdefault("gc_frequency", mo.get("gc_frequency", 5))
                else:
                    close = difflib.get_close_matches(key, ["chunk_size", "enable_gc", "gc_frequency"], n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    problems.append((f"memory_optimization.{key}", "unknown key" + hint))
    # emitters: the sample_config.json style keys
    em = out.get("emitters")
    if isinstance(em, Mapping):
        em = dict(em)
        if "intensity_mu_sig" in em:
            v = em.pop("intensity_mu_sig")
            if isinstance(v, (list, tuple)) and len(v) == 2:
                em.setdefault("intensity_mu", v[0])
                em.setdefault("intensity_sigma", v[1])
            else:
                problems.append(("emitters.intensity_mu_sig", f"expected [mean, sd] in photons, got {_brief(v)}"))
        if "xy_unit" in em:
            v = em.pop("xy_unit")
            if v != "px":
                problems.append(("emitters.xy_unit", f"only 'px' (camera pixels) is supported, got {_brief(v)}"))
        if "z_range" in em:
            v = em.pop("z_range")
            z0, z1 = (_number(v[0]), _number(v[1])) if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None)
            if z0 is not None and z1 is not None and z0 == -z1 and z1 >= 0:
                em.setdefault("z_range_um", z1 / 1000.0)  # DECODE-style z range in nm
            else:
                problems.append(
                    ("emitters.z_range", (f"expected a symmetric [-z, z] range in nm, got {_brief(v)}; use z_range_um"))
                )
        if "lifetime" in em:
            problems.append(
                (
                    "emitters.lifetime",
                    ("ambiguous original key (the original ignored it); use lifetime_avg (mean on-time in frames)"),
                )
            )
            em.pop("lifetime")
        if "density_mu_sig" in em:
            problems.append(
                (
                    "emitters.density_mu_sig",
                    ("not supported (the original ignored it and ran with defaults); set num_emitters per movie"),
                )
            )
            em.pop("density_mu_sig")
        out["emitters"] = em
    # camera section may use the original names
    cam = out.get("camera")
    if isinstance(cam, Mapping) and any(
        k in cam
        for k in (
            *_CAMERA_ALIASES,
            "var",
            "cam_pxszx",
            "cam_pxszy",
            "scmos_var",
            "cam_pth",
            "view_type",
            "autofluorescence_background",
        )
    ):
        plain = {
            k: v
            for k, v in cam.items()
            if k not in _CAMERA_ALIASES
            and k
            not in ("var", "cam_pxszx", "cam_pxszy", "scmos_var", "cam_pth", "view_type", "autofluorescence_background")
        }
        legacy = {k: v for k, v in cam.items() if k not in plain}
        out["camera"] = plain
        translate_camera(legacy, out, problems, "camera")
    # the original float noise model when no camera section is given
    tiff = out.get("tiff")
    if isinstance(tiff, Mapping) and "noise_params" in tiff and "camera" not in d:
        out.setdefault("camera", {})["model"] = "original"
    if isinstance(tiff, Mapping) and tiff.get("add_noise") is False:
        # no camera ('none') unless the document names one; a contradiction is reported once every document
        # and override is merged (settle_add_noise), so that a later override may still resolve it
        cam = out.get("camera")
        if cam is None or (isinstance(cam, Mapping) and cam.get("model") is None):
            out["camera"] = {**(cam or {}), "model": "none"}
    return out


def settle_add_noise(data: Mapping[str, Any], problems: list) -> dict[str, Any]:
    """Settle the original ``tiff.add_noise: false`` (no camera) in a document after every merge.

    ``tiff.add_noise`` false means the expected photons without a camera (``camera.model = 'none'``):
    a camera section without a model gets ``'none'``; a camera model other than ``'none'`` (given in
    a document, the built-in default or ``overrides=``) is a problem named ``tiff.add_noise``, the same
    wherever the keys came from. A camera section that is not a mapping is left for validation to
    report under ``camera``.

    Parameters
    ----------
    data
        A document in this package's key names, after every merge.
    problems
        ``(key path, message)`` pairs; a contradiction is appended.

    Returns
    -------
    dict
        A new document; ``data`` is not changed.
    """
    out = dict(data)
    tiff = out.get("tiff")
    if not (isinstance(tiff, Mapping) and tiff.get("add_noise") is False):
        return out
    cam = out.get("camera")
    if cam is None or (isinstance(cam, Mapping) and cam.get("model") is None):
        out["camera"] = {**(cam or {}), "model": "none"}
    elif isinstance(cam, Mapping) and cam.get("model") != "none":
        problems.append(
            (
                "tiff.add_noise",
                f"false (no camera: expected photons) contradicts camera.model {_brief(cam.get('model'))}; "
                "remove one (or set camera.model 'none')",
            )
        )
    return out


def unwrap_batch_config(data: dict[str, Any], source_name: str | None) -> dict[str, Any]:
    """The per-sample config of an original batch config (its ``base_config``), else ``data``.

    The batch keys belong to the batch engine. A relative ``zmap_path`` of the base config is
    resolved against the folder of the file it came from (``source_name``), as the original did.
    """
    if not ("base_config" in data and isinstance(data["base_config"], Mapping)):
        return data
    base = copy.deepcopy(dict(data["base_config"]))
    if source_name and isinstance(base.get("zmap_path"), str) and not os.path.isabs(base["zmap_path"]):
        base["zmap_path"] = str(Path(source_name).parent / base["zmap_path"])
    return base


def _valid_photons(value: Any) -> bool:
    """Whether ``value`` passes validation as a photon count (a finite number >= 0, within the float range)."""
    x = _number(value)
    return x is not None and x >= 0


def apply_original_noise_model(data: Mapping[str, Any]) -> dict[str, Any]:
    """Settle the original float noise model (``camera.model = 'original'``) in a document.

    That model (the original tool's ``tiff.noise_params``) adds its own constant background, so
    ``tiff.noise_params`` gets its defaults when absent or null and ``background.photons``
    (photons/px/frame) takes ``tiff.noise_params.background``. Other camera models leave the
    document as it is. A value of the wrong type or out of range is left in place for validation to
    report (under its own key path, once).

    Parameters
    ----------
    data
        A document in this package's key names, after every merge (the camera model is final).

    Returns
    -------
    dict
        A new document; ``data`` is not changed.
    """
    out = dict(data)
    cam = out.get("camera")
    tiff = out.get("tiff", {})
    if not (isinstance(cam, Mapping) and cam.get("model") == "original") or not isinstance(tiff, Mapping):
        return out
    noise = tiff.get("noise_params")
    noise = {} if noise is None else noise
    if not isinstance(noise, Mapping):
        return out
    out["tiff"] = {**tiff, "noise_params": dict(noise)}
    value = noise.get("background", NoiseParams().background)
    bg = out.get("background", {})
    if isinstance(bg, Mapping) and _valid_photons(value) and _valid_photons(bg.get("photons", 0.0)):
        out["background"] = {**bg, "photons": value}
    return out
