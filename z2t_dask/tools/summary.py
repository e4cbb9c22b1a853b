"""``z2t inspect``: what is in a sample folder, a batch output folder, a Zmap or an ``emitters.h5``.

:func:`summarize` returns a JSON-able dict; :func:`~z2t_dask.tools.summary_text.format_summary`
turns it into the human text.

=================  ===========================================================================
kind               recognised by
=================  ===========================================================================
``batch``          a folder with ``manifest.json`` (every job with its state) or the original
                   ``batch_status.json``
``sample``         a folder with ``emitters.h5`` and/or a frame stack
``zmap``           an HDF5 file with ``z_maps/phase``
``emitters``       an HDF5 file with ``emitters/*`` and ``records/*``
``stack``          a ``.ome.tiff`` / ``.ome.zarr`` / ``.h5`` frame stack
=================  ===========================================================================

Units: positions in camera px, z in µm, photons per frame, pixel values in ADU (camera models)
or photons (``none`` / ``original``), sizes in bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from z2t_dask.errors import FormatError, InspectError
from z2t_dask.tools.remote import is_url, summarize_url
from z2t_dask.tools.summary_channels import channel_stats
from z2t_dask.tools.summary_text import format_summary, optics_summary

if TYPE_CHECKING:
    from z2t_dask.physics.emitters import Records

__all__ = [
    "InspectError",
    "detect_kind",
    "summarize",
    "format_summary",
    "truth_stats",
    "estimate_snr",
    "pixel_stats",
    "disk_usage",
]

#: Frames read (evenly spaced) for the pixel statistics of a stack.
PIXEL_FRAMES = 8


def _package_version() -> str:
    from z2t_dask import __version__

    return __version__


def disk_usage(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder (e.g. an ``.ome.zarr``)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _h5_groups(path: Path) -> set[str]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names: set[str] = set()
            f.visit(names.add)
            return names
    except OSError as exc:
        raise InspectError(f"{path}: cannot open as HDF5: {exc}") from None


def detect_kind(path: str | os.PathLike) -> str:
    """``"batch"``, ``"sample"``, ``"zmap"``, ``"emitters"`` or ``"stack"``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InspectError
        If it is none of these.
    """
    from z2t_dask.io.registry import detect_format
    from z2t_dask.tools.results import find_stack, stack_format

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    stack_entry = detect_format(p)
    if p.is_dir() and not (stack_entry is not None and stack_entry.is_dir):  # a folder that is no stack
        from z2t_dask.batch.manifest import has_manifest

        if has_manifest(p) or (p / "batch_status.json").is_file():
            return "batch"
        if (p / "emitters.h5").is_file() or find_stack(p) is not None:
            return "sample"
        raise InspectError(
            f"{p}: not a sample folder (no emitters.h5 or frame stack) nor a batch folder (no manifest.json)"
        )
    if p.name.lower().endswith((".h5", ".hdf5")):
        names = _h5_groups(p)
        if "z_maps/phase" in names:
            return "zmap"
        if "records/frame_ix" in names and "emitters/xyz" in names:
            return "emitters"
        if "frames" in names:
            return "stack"
        raise InspectError(
            f"{p}: HDF5 file with neither z_maps/phase (Zmap), emitters/ + records/ (emitters.h5) nor frames (stack)"
        )
    try:
        stack_format(p)
    except FormatError as exc:  # not a stack suffix: say what inspect understands
        raise InspectError(str(exc)) from None
    return "stack"


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def _stats(v: np.ndarray, digits: int = 2) -> dict[str, float] | None:
    v = np.asarray(v, np.float64)
    if v.size == 0:
        return None
    q = np.percentile(v, [5, 50, 95])
    r = lambda x: round(float(x), digits)  # noqa: E731
    return {"min": r(v.min()), "p5": r(q[0]), "median": r(q[1]), "mean": r(v.mean()), "p95": r(q[2]), "max": r(v.max())}


def truth_stats(records: Mapping[str, np.ndarray] | Records, frames: int | None = None) -> dict[str, Any]:
    """Ground-truth statistics of ``records/*``.

    Parameters
    ----------
    records
        ``frame_ix`` (M,), ``phot`` (M,) photons, ``xyz`` (M, 3) (x, y px; z µm), optional
        ``inside`` (M,) bool.
    frames
        Frames in the movie (default ``max(frame_ix) + 1``), so empty frames count.

    Returns
    -------
    dict
        ``records``, ``records_inside``, ``records_edge`` (emitters outside the image lighting
        its edge), ``emitters_per_frame`` and ``photons_per_record`` statistics, ``empty_frames``,
        ``z_um`` range.
    """
    fix = np.asarray(records["frame_ix"], np.int64)
    n_frames = int(frames) if frames is not None else (int(fix.max()) + 1 if fix.size else 0)
    inside = np.asarray(records.get("inside", np.ones(fix.size, bool)), bool)
    per_frame = np.bincount(fix[inside], minlength=n_frames) if n_frames else np.zeros(0, int)
    phot = np.asarray(records["phot"], np.float64)
    z = np.asarray(records["xyz"], np.float64)[:, 2] if fix.size else np.zeros(0)
    return {
        "records": int(fix.size),
        "records_inside": int(inside.sum()),
        "records_edge": int((~inside).sum()),
        "emitters_per_frame": _stats(per_frame, 2),
        "empty_frames": int((per_frame == 0).sum()),
        "photons_per_record": _stats(phot[inside], 1),
        "z_um": None if z.size == 0 else [round(float(z.min()), 3), round(float(z.max()), 3)],
    }


def estimate_snr(config: Mapping[str, Any], photons: float) -> dict[str, Any]:
    """Estimated single-emitter SNR of an in-focus emitter with ``photons`` detected photons.

    ``SNR = q N / sqrt(F² q (N + A b) + A s²)``: ``q`` quantum efficiency, ``N`` photons,
    ``b`` background photons/px, ``A = 4π σ²`` the noise-equivalent area of a Gaussian PSF
    with ``σ = 0.21 λ / NA`` (px), ``F² = 2`` for an EMCCD with gain > 1 (else 1), ``s`` the
    read noise referred to the input (e⁻ / EM gain for EMCCD; sCMOS sqrt(variance)/gain).
    An order-of-magnitude figure (defocus and aberrations enlarge ``A``), for comparing samples.

    Parameters
    ----------
    config
        A resolved config as a dict (``config_to_dict``).
    photons
        Signal photons per frame (e.g. the median ``records/phot``).
    """
    cam = config.get("camera", {})
    opt = config.get("optical", {})
    model = cam.get("model", "emccd")
    b = float(config.get("background", {}).get("photons", 0.0))
    px = math.sqrt(float(opt.get("pixel_size_nm_x", 100.0)) * float(opt.get("pixel_size_nm_y", 100.0)))
    sigma_px = 0.21 * float(opt.get("wavelength_nm", 660.0)) / float(opt.get("NA", 1.4)) / px
    area = 4 * math.pi * sigma_px**2
    q, f2, s2 = 1.0, 1.0, 0.0
    if model == "emccd":
        q = float(cam.get("qe", 1.0))
        gain = float(cam.get("em_gain", 1.0))
        f2 = 2.0 if gain > 1 else 1.0
        s2 = (float(cam.get("read_noise_e", 0.0)) / gain) ** 2
    elif model == "scmos":
        q = float(cam.get("qe", 1.0))
        var, gain = cam.get("scmos_variance"), cam.get("scmos_gain")
        if isinstance(var, (int, float)) and isinstance(gain, (int, float)) and gain > 0:
            s2 = float(var) / float(gain) ** 2
    elif model == "original":
        s2 = float((config.get("tiff", {}).get("noise_params") or {}).get("readout_noise", 0.0)) ** 2
    elif model == "none" or (model == "ideal" and not cam.get("poisson", True)):
        return {"snr": None, "note": "noise-free frames (camera.model none / ideal without Poisson)"}
    n = float(photons)
    denom = math.sqrt(f2 * q * (n + area * b) + area * s2)
    return {
        "snr": round(q * n / denom, 2) if denom > 0 else None,
        "photons": round(n, 1),
        "background_photons_per_px": b,
        "psf_area_px": round(area, 2),
        "excess_noise_factor_sq": f2,
        "qe": q,
        "read_noise_input_e": round(math.sqrt(s2), 3),
        "formula": "q N / sqrt(F^2 q (N + A b) + A s^2), A = 4 pi (0.21 lambda/NA)^2 in px^2",
    }


def pixel_stats(frames: Any, n: int = PIXEL_FRAMES) -> dict[str, Any]:
    """Pixel statistics of up to ``n`` evenly spaced frames of a (lazy) ``(T, Y, X)`` stack."""
    t = int(frames.shape[0])
    idx = np.unique(np.linspace(0, t - 1, min(n, t)).round().astype(int))
    block = np.asarray(frames[idx].compute() if hasattr(frames, "compute") else frames[idx], np.float64)
    st: dict[str, Any] = dict(_stats(block, 2) or {})
    st.update({"std": round(float(block.std()), 2), "frames_read": [int(i) for i in idx]})
    return st


# --------------------------------------------------------------------------------------------
# per kind
# --------------------------------------------------------------------------------------------


def _stack_info(path: Path) -> dict[str, Any]:
    from z2t_dask.tools.results import open_stack, stack_format

    frames = open_stack(path)
    info: dict[str, Any] = {
        "path": str(path),
        "format": stack_format(path),
        "shape": [int(v) for v in frames.shape],
        "dtype": str(frames.dtype),
        "chunks": [int(c[0]) for c in frames.chunks],
        "bytes": disk_usage(path),
        "raw_bytes": int(np.prod(frames.shape)) * frames.dtype.itemsize,
    }
    info["compression_ratio"] = round(info["raw_bytes"] / info["bytes"], 2) if info["bytes"] else None
    info["pixels"] = pixel_stats(frames)
    return info


def _attrs_info(attrs: Mapping[str, Any]) -> dict[str, Any]:
    cfg = attrs.get("config")
    return {
        "seed": attrs.get("seed"),
        "z2t_version": attrs.get("z2t_version", attrs.get("z2t_dask_version")),
        "config": cfg if isinstance(cfg, dict) else None,
        "zmap": attrs.get("zmap") if isinstance(attrs.get("zmap"), dict) else None,
        "optics": optics_summary(cfg if isinstance(cfg, dict) else None, attrs.get("psf")),  # PSF model, indices
    }


def _files(folder: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        out.append({"name": p.name + ("/" if p.is_dir() else ""), "bytes": disk_usage(p)})
    return out


def _summarize_sample(p: Path) -> dict[str, Any]:
    from z2t_dask.tools.results import open_sample

    s = open_sample(p)
    info: dict[str, Any] = {"kind": "sample", "path": str(p)}
    frames = None
    if s.stack is not None:
        info["stack"] = _stack_info(s.stack)
        frames = info["stack"]["shape"][0]
        info["frames"], info["height"], info["width"] = [info["stack"]["shape"][i] for i in (0, -2, -1)]
        info["dtype"] = info["stack"]["dtype"]
    if s.truth is not None:
        info.update(_attrs_info(s.truth.attrs))
        if frames is None and info.get("config"):
            frames = info["config"]["emitters"]["frames"]
        recs = s.records
        info["truth"] = truth_stats(recs, frames)
        info["truth"]["emitters"] = int(len(s.truth.emitters["xyz"]))
        info["truth"].update(channel_stats(s.truth.emitters, s.truth.records, s.truth.attrs))  # multi-channel
    _add_snr(info)
    info["files"] = _files(p)
    info["bytes"] = sum(f["bytes"] for f in info["files"])
    from z2t_dask.batch.jobs import read_marker

    try:
        job = read_marker(p)
    except FormatError:
        info["job"] = {"error": "unreadable z2t_job.json"}
    else:
        if job is not None:
            info["job"] = {k: job.get(k) for k in ("key", "name", "seconds", "attempt", "host")}
    info["package_version"] = _package_version()
    return info


def _add_snr(info: dict[str, Any]) -> None:
    cfg = info.get("config")
    phot = (info.get("truth") or {}).get("photons_per_record") or {}
    if cfg and phot.get("median"):
        info["snr"] = estimate_snr(cfg, phot["median"])
        info["background_photons_per_px"] = cfg.get("background", {}).get("photons")


def _summarize_emitters(p: Path) -> dict[str, Any]:
    from z2t_dask.io.emitters_h5 import read_emitters_h5
    from z2t_dask.physics.emitters import inside_image

    truth = read_emitters_h5(p)
    info: dict[str, Any] = {"kind": "emitters", "path": str(p), "bytes": disk_usage(p)}
    info.update(_attrs_info(truth.attrs))
    cfg = info.get("config")
    frames = int(cfg["emitters"]["frames"]) if cfg else None
    rec = dict(truth.records)
    if "inside" not in rec and cfg:
        t = cfg["tiff"]
        rec["inside"] = inside_image(rec["xyz"][:, :2], (int(t["roi_height"]), int(t["roi_width"])))
    info["truth"] = truth_stats(rec, frames)
    info["truth"]["emitters"] = int(len(truth.emitters["xyz"]))
    info["truth"].update(channel_stats(truth.emitters, rec, truth.attrs))  # multi-channel
    zc = truth.zernike_coeffs
    info["truth"]["zernike_coeffs"] = list(zc["phase"].shape) if zc and "phase" in zc else None
    info["frames_dataset"] = list(truth.frames_shape) if truth.frames_shape else None
    info["units"] = truth.units or None
    if not truth.attrs:
        info["note"] = "no provenance attributes (written by the original tool?)"
    _add_snr(info)
    info["package_version"] = _package_version()
    return info


def _summarize_zmap(p: Path, grid: int = 24) -> dict[str, Any]:
    from z2t_dask.physics.zmap import read_zmap

    zm = read_zmap(p)
    h, w = zm.shape
    info: dict[str, Any] = {
        "kind": "zmap",
        "path": str(p),
        "bytes": disk_usage(p),
        "shape": [h, w],
        "source_modes": zm.n_source_modes,
        "convention": zm.convention,
        "units": zm.units,
        "returned": f"Noll order, rad RMS, {zm.n_modes} modes",
    }
    beads = zm.beads()
    import h5py

    with h5py.File(p, "r") as f:
        total = int(f["coords"].shape[0]) if "coords" in f else 0
    info["beads"] = {
        "total": total,
        "valid": int(len(beads.get("x", []))),
        "rejected": total - int(len(beads.get("x", []))),
    }
    if "mean_ncc" in beads:
        info["beads"]["mean_ncc"] = _stats(beads["mean_ncc"], 3)
    ys = np.linspace(0, h - 1, min(grid, h))
    xs = np.linspace(0, w - 1, min(grid, w))
    import warnings

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy21 dropped-mode warnings: reported below
        for y in ys:
            ph, _ = zm.coefficients(xs, np.full_like(xs, y), method="linear")
            rows.append(ph)
    ph = np.concatenate(rows)
    rms = np.sqrt((ph[:, 1:] ** 2).sum(axis=1))  # piston excluded
    info["phase_rms_rad"] = _stats(rms, 3)
    peak = np.abs(ph).max(axis=0)
    info["modes_max_abs_rad"] = {f"Z{j + 1}": round(float(v), 4) for j, v in enumerate(peak) if v > 1e-9}
    info["package_version"] = _package_version()
    return info


def _summarize_stack(p: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": "stack", "path": str(p)}
    info["stack"] = _stack_info(p)
    info["frames"], info["height"], info["width"] = [info["stack"]["shape"][i] for i in (0, -2, -1)]
    info["dtype"] = info["stack"]["dtype"]
    info["bytes"] = info["stack"]["bytes"]
    from z2t_dask.io.formats import read_stack_info

    meta = read_stack_info(p, info["stack"]["format"])  # what the format registry reads of any stack
    info["pixel_size_nm"] = list(meta.pixel_size_nm) if meta.pixel_size_nm else None
    info["provenance"] = meta.attrs or None
    n_series = meta.extra.get("n_series")
    if n_series is not None:
        info["tiff_series"] = n_series
        if n_series > 1:
            info["note"] = (
                f"{n_series} TIFF series: only the first is read (the original streaming writer's defect D14)"
            )
    info["package_version"] = _package_version()
    return info


def _summarize_batch(p: Path) -> dict[str, Any]:
    from z2t_dask.batch.folders import batch_summary

    return {**batch_summary(p), "package_version": _package_version()}


def summarize(path: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """A JSON-able summary of a sample folder, batch folder, Zmap, ``emitters.h5`` or frame stack.

    With ``verify`` (batch and sample folders), ``info["verify"]`` holds the check of every
    finished job's outputs against their recorded sha256 (:func:`z2t_dask.batch.verify.verify_folder`;
    ``info["verify"]["ok"]`` is False when a file is damaged). A folder whose damage keeps it from being
    summarized gives ``{"kind", "path", "unreadable": <the error>, "verify"}``.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    InspectError
        If it is none of the known kinds (see :func:`detect_kind`).
    """
    if is_url(path):  # a sample folder or batch on a store: tools/remote.py
        return summarize_url(str(path), verify=verify)
    p = Path(path)
    kind = detect_kind(p)
    if verify and kind not in ("batch", "sample"):
        raise InspectError(f"{p}: a {kind}; --verify checks the recorded checksums of batch and sample folders")
    fn = {
        "batch": _summarize_batch,
        "sample": _summarize_sample,
        "zmap": _summarize_zmap,
        "emitters": _summarize_emitters,
        "stack": _summarize_stack,
    }[kind]
    if not verify:
        return fn(p)
    from z2t_dask.batch.verify import verify_folder

    checked = verify_folder(p)  # first: a damaged file may not even summarize
    try:
        info = fn(p)
    except FormatError as exc:
        if checked["ok"]:
            raise
        info = {"kind": kind, "path": str(p), "unreadable": str(exc)}
    info["verify"] = checked
    return info
