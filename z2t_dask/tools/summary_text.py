"""``z2t inspect``'s human text: :func:`format_summary` of a :func:`~z2t_dask.tools.summary.summarize` dict.

Units as in the summary: positions in camera px, z in µm, photons per frame, pixel values in ADU
(camera models) or photons (``none`` / ``original``), sizes in bytes (shown in KiB/MiB/GiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.tools.summary_channels import channel_lines

__all__ = ["format_summary", "optics_summary"]


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def _st(d: Mapping[str, float] | None, unit: str = "") -> str:
    if not d:
        return "-"
    u = f" {unit}" if unit else ""
    return f"median {d['median']:g}{u} (p5 {d['p5']:g}, p95 {d['p95']:g}, min {d['min']:g}, max {d['max']:g})"


def _config_lines(cfg: Mapping[str, Any]) -> list[str]:
    e, t, c = cfg.get("emitters", {}), cfg.get("tiff", {}), cfg.get("camera", {})
    zmap = cfg.get("zmap_path") or "synthetic"
    return [
        f"  config: {e.get('num_emitters')} emitters, model {e.get('model')}, intensity "
        f"{e.get('intensity_mu')}±{e.get('intensity_sigma')} photons, z ±{e.get('z_range_um')} um, "
        f"margin {e.get('margin_px')} px",
        f"          ROI {t.get('roi_width')}x{t.get('roi_height')} px at {t.get('crop_offset')}, camera "
        f"{c.get('model')}, background {cfg.get('background', {}).get('photons')} photons/px, Zmap {zmap}",
    ]


def optics_summary(cfg: Mapping[str, Any] | None, psf: Any = None) -> dict[str, Any] | None:
    """The PSF model and optics of a stored config (and its PSF description), design values resolved.

    Parameters
    ----------
    cfg
        The config a sample stores (plain data), or None (then None is returned).
    psf
        The stored PSF description (``describe()`` of the model: the resolved focus depth), if any.

    Returns
    -------
    dict or None
        ``model`` ("vectorial" / "scalar"; configs written before the vectorial model are scalar),
        ``dipole`` ("isotropic" / "fixed"), ``mode``, ``otf_sigma_nm``, ``NA``, ``wavelength_nm``,
        the indices ``n_medium``, ``n_coverslip``, ``n_coverslip_design``, ``n_immersion``,
        ``n_immersion_design``, thicknesses ``coverslip_um``, ``coverslip_design_um``,
        ``working_distance_um`` (µm), ``focus_depth_um`` (µm above the coverslip, resolved) and
        ``focus_auto`` (whether ``optical.focus_depth_um`` was null).
    """
    if not isinstance(cfg, Mapping):
        return None
    o, p, e = cfg.get("optical") or {}, cfg.get("psf") or {}, cfg.get("emitters") or {}
    d = psf if isinstance(psf, Mapping) else {}
    d = d.get("exact", d) if d.get("mode") == "fast" and isinstance(d.get("exact"), Mapping) else d

    def pick(key: str, default: Any) -> Any:
        return default if o.get(key) is None else o.get(key)

    n_imm = o.get("n_immersion")
    n_cov = pick("n_coverslip", n_imm)
    focus = d.get("focus_depth_um")
    if focus is None:
        focus = pick("focus_depth_um", e.get("z_range_um"))
    return {
        "model": "vectorial" if p.get("vectorial", False) else "scalar",
        "dipole": e.get("dipole", "isotropic"),
        "mode": p.get("mode"),
        "otf_sigma_nm": p.get("otf_sigma_nm", 0.0),
        "NA": o.get("NA"),
        "wavelength_nm": o.get("wavelength_nm"),
        "n_medium": o.get("n_medium"),
        "n_coverslip": n_cov,
        "n_coverslip_design": pick("n_coverslip_design", n_cov),
        "n_immersion": n_imm,
        "n_immersion_design": pick("n_immersion_design", n_imm),
        "coverslip_um": o.get("coverslip_um", 170.0),
        "coverslip_design_um": pick("coverslip_design_um", o.get("coverslip_um", 170.0)),
        "working_distance_um": o.get("working_distance_um", 150.0),
        "focus_depth_um": focus,
        "focus_auto": o.get("focus_depth_um") is None,
    }


def _optics_lines(opt: Mapping[str, Any]) -> list[str]:
    dipole = "fixed dipoles" if opt["dipole"] == "fixed" else "isotropic (freely rotating) emitters"
    blur = f", OTF blur {opt['otf_sigma_nm']:g} nm" if opt.get("otf_sigma_nm") else ""
    return [
        f"  PSF: {opt['model']} model, {dipole}, {opt['mode']} mode{blur}; NA {opt['NA']}, {opt['wavelength_nm']} nm",
        f"  indices: medium {opt['n_medium']}, coverslip {opt['n_coverslip']} (design {opt['n_coverslip_design']}), "
        f"immersion {opt['n_immersion']} (design {opt['n_immersion_design']}); coverslip {opt['coverslip_um']} um "
        f"(design {opt['coverslip_design_um']}), working distance {opt['working_distance_um']} um",
        f"  focal plane {opt['focus_depth_um']} um above the coverslip"
        + (" (auto: emitters.z_range_um)" if opt.get("focus_auto") else "")
        + "; emitter depth = focal plane + z",
    ]


def _sample_lines(info: Mapping[str, Any]) -> list[str]:
    out = []
    st = info.get("stack")
    if st:
        t, h, w = (st["shape"][i] for i in (0, -2, -1))
        h = f"{st['shape'][1]} channels x {h}" if len(st["shape"]) == 4 else h  # (T, C, Y, X)
        out.append(
            f"  stack: {Path(st['path']).name} ({st['format']}), {t} frames of {h}x{w} px, {st['dtype']}, "
            f"{_size(st['bytes'])} on disk (raw {_size(st['raw_bytes'])}, x{st['compression_ratio']})"
        )
        px = st["pixels"]
        out.append(
            f"  pixels (frames {px['frames_read'][0]}..{px['frames_read'][-1]}, {len(px['frames_read'])} read): "
            f"{_st(px)}, std {px['std']:g}"
        )
    tr = info.get("truth")
    if tr:
        out.append(
            f"  truth: {tr.get('emitters')} emitters, {tr['records']} records ({tr['records_inside']} inside, "
            f"{tr['records_edge']} outside lighting the edge), {tr['empty_frames']} empty frames"
        )
        out.append(f"  emitters per frame: {_st(tr['emitters_per_frame'])}")
        out.append(f"  photons per record: {_st(tr['photons_per_record'])}")
        out.extend(channel_lines(info))  # per-channel photons and ratio per species (multi-channel)
        if tr.get("z_um"):
            out.append(f"  z: {tr['z_um'][0]} .. {tr['z_um'][1]} um")
    if info.get("background_photons_per_px") is not None:
        out.append(f"  background: {info['background_photons_per_px']} photons/px/frame")
    snr = info.get("snr")
    if snr:
        out.append(
            f"  estimated SNR (in focus, median emitter): {snr['snr']}"
            if snr.get("snr") is not None
            else f"  estimated SNR: - ({snr.get('note')})"
        )
    if info.get("config"):
        out.extend(_config_lines(info["config"]))
    optics = info.get("optics") or optics_summary(info.get("config"))  # PSF model, indices, focus depth
    if optics:
        out.extend(_optics_lines(optics))
    if info.get("z2t_version") is not None:
        out.append(
            f"  seed: {info.get('seed')}, written by z2t-dask {info.get('z2t_version')} "
            f"(installed: {info.get('package_version')})"
        )
    return out


def format_summary(info: Mapping[str, Any]) -> str:
    """The human-readable text of a :func:`summarize` result."""
    kind = info["kind"]
    lines = [f"{kind} {info['path']}"]
    if "unreadable" in info:  # a damaged folder (inspect --verify): the checksums say which file
        return "\n".join([*lines, f"  not summarized: {info['unreadable']}"])
    if kind == "batch":
        b = info.get("batch") or {}
        if b.get("description"):
            lines.append(f"  description: {b['description']}")
        if b:
            lines.append(
                f"  seed: {b.get('seed')}, retries: {b.get('retries')}, runs: {info.get('runs')}, "
                f"source: {b.get('source')}"
            )
        states = ", ".join(f"{n} {s}" for s, n in sorted(info["states"].items()))
        lines.append(f"  {info['jobs_total']} jobs: {states or 'none'}; {_size(info['bytes'])} on disk")
        width = max([len(n) for n in info["jobs"]] + [3])
        lines.append(f"  {'job':<{width}}  {'state':<12} {'tries':>5} {'seconds':>8} {'size':>9}  error")
        for name, j in info["jobs"].items():
            sec = f"{j['seconds']:.2f}" if isinstance(j.get("seconds"), (int, float)) else "-"
            lines.append(
                f"  {name:<{width}}  {str(j.get('state')):<12} {str(j.get('attempts') or '-'):>5} {sec:>8} "
                f"{_size(j.get('bytes')) if j.get('folder_exists') else 'missing':>9}  {j.get('error') or ''}"
            )
    elif kind == "sample":
        lines += _sample_lines(info)
        lines.append("  files: " + ", ".join(f"{f['name']} ({_size(f['bytes'])})" for f in info["files"]))
        if info.get("job"):
            lines.append(f"  batch job: key {info['job'].get('key')}, {info['job'].get('seconds')} s")
    elif kind == "emitters":
        lines.append(
            f"  {_size(info['bytes'])}"
            + (f"; frames dataset {info['frames_dataset']}" if info.get("frames_dataset") else "")
        )
        if info.get("note"):
            lines.append(f"  note: {info['note']}")
        lines += _sample_lines(info)
        if info["truth"].get("zernike_coeffs"):
            lines.append(f"  zernike_coeffs: {info['truth']['zernike_coeffs']} (emitters x modes)")
    elif kind == "zmap":
        h, w = info["shape"]
        lines.append(
            f"  {_size(info['bytes'])}; maps {info['source_modes']} modes x {h}x{w} px, convention "
            f"{info['convention']}, units {info['units']} (returned as {info['returned']})"
        )
        b = info["beads"]
        lines.append(
            f"  beads: {b['total']} ({b['valid']} valid, {b['rejected']} rejected)"
            + (f", mean NCC {_st(b.get('mean_ncc'))}" if b.get("mean_ncc") else "")
        )
        lines.append(f"  RMS phase over the field: {_st(info['phase_rms_rad'], 'rad')}")
        lines.append(
            "  largest |coefficient| per Noll mode (rad): "
            + ", ".join(f"{k} {v:g}" for k, v in info["modes_max_abs_rad"].items())
        )
    else:
        lines += _sample_lines(info)
        if info.get("pixel_size_nm"):
            lines.append(f"  pixel size: {info['pixel_size_nm'][0]:g} x {info['pixel_size_nm'][1]:g} nm")
        if info.get("note"):
            lines.append(f"  note: {info['note']}")
    return "\n".join(lines)
