"""``z2t inspect``'s human text: :func:`format_summary` of a :func:`~z2t_dask.tools.summary.summarize` dict.

Units as in the summary: positions in camera px, z in µm, photons per frame, pixel values in ADU
(camera models) or photons (``none`` / ``original``), sizes in bytes (shown in KiB/MiB/GiB).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["format_summary"]


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


def _sample_lines(info: Mapping[str, Any]) -> list[str]:
    out = []
    st = info.get("stack")
    if st:
        t, h, w = st["shape"]
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
