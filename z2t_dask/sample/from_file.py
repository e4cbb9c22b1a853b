"""A sample rendering an existing ``emitters.h5`` (e.g. one the original tool wrote).

Every value that reaches the image is checked first: a file that is not HDF5 or is truncated,
a missing dataset, a wrong shape, NaN or infinite positions, photons or coefficients, negative
photons, frame indices outside the movie and emitter ids outside the table are each a
:class:`~z2t_dask.errors.FormatError` naming the file, the dataset and how many rows are bad,
never a silent image.

The config: an ``emitters.h5`` written by z2t stores the config it was simulated with (root
attribute ``config``) and is rendered with it by default; a given config overrides it, and any
difference in geometry (ROI size, crop offset, pixel size, frames) is logged as a warning. Files
of the original tool store none: they use the built-in default unless a config is given.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from z2t_dask.config import SimulationConfig, load_config
from z2t_dask.engine.assembly import aberration_field
from z2t_dask.engine.budget import check_resources
from z2t_dask.errors import ConfigError, FormatError, Z2TError
from z2t_dask.physics.emitters import (
    DIPOLE_COLUMNS,
    EmitterTable,
    Records,
    dipole_angles,
    inside_image,
    truth_columns,
)
from z2t_dask.physics.zmap import legacy_to_noll
from z2t_dask.sample.core import Sample, sample_from_truth

__all__ = ["GEOMETRY_KEYS", "geometry_differences", "load_sample_h5", "render_emitters", "stored_config"]

log = logging.getLogger(__name__)

#: Config keys compared between a given config and the one an ``emitters.h5`` stores.
GEOMETRY_KEYS = (
    "tiff.roi_width",
    "tiff.roi_height",
    "tiff.crop_offset",
    "optical.pixel_size_nm_x",
    "optical.pixel_size_nm_y",
    "emitters.frames",
)


def _value(cfg: SimulationConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def geometry_differences(given: SimulationConfig, stored: SimulationConfig) -> list[str]:
    """``"<key> <given> (given) vs <stored> (stored)"`` for each of :data:`GEOMETRY_KEYS` that differs."""
    out = []
    for key in GEOMETRY_KEYS:
        a, b = _value(given, key), _value(stored, key)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{key} {a} (given) vs {b} (stored)")
    return out


def stored_config(h5_path: str | os.PathLike, attrs: dict[str, Any] | None = None) -> SimulationConfig | None:
    """The config z2t stored in an ``emitters.h5`` (root attribute ``config``), validated; None if it has none.

    Parameters
    ----------
    h5_path
        The file (named in errors).
    attrs
        Its root attributes, if already read (JSON decoded); default: read them.

    Raises
    ------
    FormatError
        The attribute is not a JSON mapping.
    ConfigError
        The stored config is not valid (its source named as the file's attribute).
    """
    if attrs is None:
        from z2t_dask.io.emitters_h5 import read_emitters_h5

        attrs = _read(h5_path, read_emitters_h5).attrs
    raw = attrs.get("config")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise FormatError(f"{h5_path}: root attribute 'config' must be a JSON mapping (a z2t config), got {raw!r:.80}")
    try:
        return load_config(raw)
    except ConfigError as exc:
        raise ConfigError(exc.problems, f"{h5_path} (its stored attribute 'config')") from None


def _read(h5_path: str | os.PathLike, reader: Any) -> Any:
    """``reader(h5_path)``, with a damaged or truncated file as a FormatError naming it."""
    try:
        return reader(h5_path)
    except (Z2TError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        raise FormatError(f"{h5_path}: cannot be read as an emitters.h5 (damaged or truncated HDF5: {exc})") from None


def _array(path: Any, name: str, value: Any, rows: int | None, width: int | None, kind: str) -> np.ndarray:
    """Dataset ``name`` checked: numeric of ``kind`` ("f" real, "i" integer), ``rows`` x ``width`` (None: any/1-D)."""
    arr = np.asarray(value)
    expect = "integers" if kind == "i" else "real numbers"
    if arr.dtype.kind not in ("iu" if kind == "i" else "iuf"):
        raise FormatError(f"{path}: dataset '{name}' must hold {expect}, got dtype {arr.dtype}")
    want = (rows,) if width is None else (rows, width)
    if arr.ndim != len(want) or any(e is not None and a != e for a, e in zip(arr.shape, want)):
        shown = tuple("N" if e is None else e for e in want)
        raise FormatError(f"{path}: dataset '{name}' must have shape {shown}, got {arr.shape}")
    if kind == "f":
        finite = np.isfinite(arr) if arr.ndim == 1 else np.all(np.isfinite(arr), axis=1)
        bad = int(arr.shape[0] - np.count_nonzero(finite))
        if bad:
            first = int(np.flatnonzero(~finite)[0])
            raise FormatError(
                f"{path}: dataset '{name}' has {bad} of {arr.shape[0]} rows with NaN or infinite values "
                f"(first: row {first}); every value must be finite"
            )
    return arr


def _bad_rows(path: Any, name: str, bad: np.ndarray, total: int, what: str, values: np.ndarray) -> None:
    """A FormatError when any of ``bad`` (a boolean mask) is set: the count and the first bad value."""
    count = int(np.count_nonzero(bad))
    if count:
        first = int(np.flatnonzero(bad)[0])
        raise FormatError(
            f"{path}: dataset '{name}' has {count} of {total} rows {what} (first: row {first}, value {values[first]})"
        )


def _depth_and_dipoles(
    path: Any,
    cfg: SimulationConfig,
    seed: int,
    em: dict[str, Any],
    table: EmitterTable,
    records: Records,
    report: Callable[[str], Any] | None,
) -> SimulationConfig:
    """Add ``depth_um`` (and fixed-dipole angles) to the table and records read from a file, in place.

    Every emitter must lie above the coverslip: ``focus_depth_um + z >= 0`` (µm). An automatic
    focus depth (``optical.focus_depth_um`` null: the emitters lie just above the coverslip) is
    ``max(emitters.z_range_um, -min z)`` for a file's emitters (said in a warning when the file
    reaches deeper than the z range; the returned config holds the value); an explicit one that
    leaves an emitter below the coverslip is a FormatError naming the file, the dataset and the
    focus depth. With ``emitters.dipole = "fixed"`` the file's
    ``emitters/dipole_polar_rad`` and ``emitters/dipole_azimuth_rad`` are used when it has them
    (checked: finite, polar in [0, pi], one row per emitter), else the orientations are drawn
    (:func:`~z2t_dask.physics.emitters.dipole_angles`, from ``seed``, or the config's angles).
    """
    focus = cfg.focus_depth_um
    n = len(table)
    deepest = float(-table.xyz[:, 2].min()) if n else 0.0
    if cfg.optical.focus_depth_um is None and deepest > focus:
        focus = deepest  # a new config: the caller's is never changed
        cfg = replace(cfg, optical=replace(cfg.optical, focus_depth_um=focus))
        (report or log.warning)(
            f"{path}: emitters reach z = {-deepest:.6g} um, below -emitters.z_range_um: the automatic "
            f"optical.focus_depth_um is {focus:.6g} um (the deepest emitter on the coverslip)"
        )
    depth = focus + table.xyz[:, 2]
    _bad_rows(
        path,
        "emitters/xyz",
        depth < 0,
        n,
        f"below the coverslip: depth = optical.focus_depth_um ({focus} um) + z must be >= 0; give a config with "
        f"optical.focus_depth_um >= {deepest:.6g}, or null",
        table.xyz[:, 2],
    )
    dipole = None
    if cfg.emitters.dipole == "fixed":
        if all(k in em for k in DIPOLE_COLUMNS):
            polar, azimuth = (
                _array(path, f"emitters/{k}", em[k], n, None, "f").astype(np.float64) for k in DIPOLE_COLUMNS
            )
            _bad_rows(path, "emitters/dipole_polar_rad", (polar < 0) | (polar > np.pi), n, "outside [0, pi]", polar)
            dipole = (polar, azimuth)
        else:
            dipole = dipole_angles(seed, table.id, cfg.emitters)
    truth_columns(table, records, focus_depth_um=focus, dipole=dipole)
    return cfg


def load_sample_h5(
    h5_path: str | os.PathLike,
    config: str | os.PathLike | dict | SimulationConfig | None = None,
    *,
    seed: int = 0,
    chunk_frames: int | None = None,
    tile_size: int | None = None,
    report: Callable[[str], Any] | None = None,
) -> Sample:
    """A :class:`Sample` rendering the emitters and records of an existing ``emitters.h5``.

    Files written by the original tool carry legacy 21-index coefficients (read through the
    ``legacy21`` convention); files written by z2t declare Noll/rad. Without ``zernike_coeffs``
    the coefficients come from the config's Zmap. Positions are ROI pixels.

    Parameters
    ----------
    h5_path
        The ``emitters.h5``.
    config
        Optics, geometry and camera (path, dict or :class:`SimulationConfig`). None: the config the
        file stores (a file z2t wrote), else the built-in default (a file of the original tool).
        A given config overrides the stored one; differences in geometry (:data:`GEOMETRY_KEYS`)
        are logged as a warning.
    seed
        Seed of the camera-noise streams.
    chunk_frames, tile_size
        Chunking, as for :func:`~z2t_dask.sample.simulate`.
    report
        Called with the geometry-difference message instead of logging it (``z2t render`` prints it).

    Returns
    -------
    Sample
        Its movie has ``emitters.frames`` of the config, or the file's own (stored) frame count
        when that is larger; a record beyond the movie is an error. A file without a stored
        config (the original tool's) rendered without a config has as many frames as its
        records reach (said in a warning), within the memory and disk budget.

    Raises
    ------
    FormatError
        The file is not HDF5, is truncated, lacks a dataset, or holds bad values: NaN/inf
        positions, photons or coefficients, negative photons, ``records/frame_ix`` outside
        ``[0, frames)``, ``records/id`` outside ``[0, N)``; the message names the file, the
        dataset and the number of bad rows.
    ConfigError
        A bad config (given or stored), or a movie whose memory cannot fit.
    """
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError([("seed", f"must be a non-negative integer, got {seed!r}")])
    f = _read(h5_path, read_emitters_h5)
    stored = stored_config(h5_path, f.attrs)
    if config is None:
        cfg = stored if stored is not None else load_config(None)
        source = "the config stored in the file" if stored is not None else "the built-in default config (give one)"
    else:
        cfg = config if isinstance(config, SimulationConfig) else load_config(config)
        source = "the given config"
        if stored is not None:
            diffs = geometry_differences(cfg, stored)
            if diffs:
                keeps = stored.emitters.frames > cfg.emitters.frames
                message = (
                    f"{h5_path}: the given config differs in geometry from the config the file was simulated with: "
                    f"{', '.join(diffs)}; rendering with the given config"
                    + (f" (the movie keeps the file's {stored.emitters.frames} frames)" if keeps else "")
                )
                (report or log.warning)(message)
            if stored.emitters.frames > cfg.emitters.frames:  # a new config: the caller's is never changed
                cfg = replace(cfg, emitters=replace(cfg.emitters, frames=stored.emitters.frames))
    infer_frames = config is None and stored is None  # an original-tool file: its records say how long it is
    frames = int(cfg.emitters.frames)

    em, rec = f.emitters, f.records
    xyz = _array(h5_path, "emitters/xyz", em["xyz"], None, 3, "f").astype(np.float64)
    n = xyz.shape[0]
    ids = _array(h5_path, "emitters/id", em.get("id", np.arange(n)), n, None, "i").astype(np.int64)
    if not np.array_equal(ids, np.arange(n)):
        raise FormatError(f"{h5_path}: dataset 'emitters/id' must be 0..N-1 in order (N = {n})")
    columns = {
        key: _array(h5_path, f"emitters/{key}", em.get(key, np.zeros(n)), n, None, "f").astype(np.float64)
        for key in ("intensity", "t0", "on_time")
    }
    rec_xyz = _array(h5_path, "records/xyz", rec["xyz"], None, 3, "f").astype(np.float64)
    m = rec_xyz.shape[0]
    phot = _array(h5_path, "records/phot", rec["phot"], m, None, "f").astype(np.float64)
    _bad_rows(h5_path, "records/phot", phot < 0, m, "with negative photons", phot)
    frame_ix = _array(h5_path, "records/frame_ix", rec["frame_ix"], m, None, "i").astype(np.int64)
    _bad_rows(h5_path, "records/frame_ix", frame_ix < 0, m, "with a negative frame index", frame_ix)
    if infer_frames and m and int(frame_ix.max()) >= frames:
        # The original tool's files store no config: the movie is as long as their records (the original's
        # own rule), said aloud; an absurd length is refused below by the memory and disk budget.
        frames = int(frame_ix.max()) + 1
        cfg = replace(cfg, emitters=replace(cfg.emitters, frames=frames))
        (report or log.warning)(
            f"{h5_path}: no config stored in the file (the original tool's) and none given: the movie has "
            f"{frames} frames, as far as records/frame_ix reaches (geometry and optics: the built-in default)"
        )
    _bad_rows(
        h5_path,
        "records/frame_ix",
        frame_ix >= frames,
        m,
        f"at frames >= {frames}, beyond the movie (emitters.frames of {source}; give a config with emitters.frames "
        f">= {int(frame_ix.max()) + 1 if m else 0})",
        frame_ix,
    )
    rec_ids = _array(h5_path, "records/id", rec["id"], m, None, "i").astype(np.int64)
    _bad_rows(h5_path, "records/id", (rec_ids < 0) | (rec_ids >= n), m, f"outside the emitters 0..{n - 1}", rec_ids)
    check_resources(cfg, n_emitters=n, n_records=m, chunk_frames=chunk_frames, tile_size=tile_size)

    inside = inside_image(rec_xyz[:, :2], cfg.image_shape)
    records = Records(xyz=rec_xyz, phot=phot, frame_ix=frame_ix, id=rec_ids, inside=inside)
    table = EmitterTable(xyz=xyz, intensity=columns["intensity"], t0=columns["t0"], on_time=columns["on_time"], id=ids)
    cfg = _depth_and_dipoles(h5_path, cfg, int(seed), em, table, records, report)
    if cfg.channels:  # a multi-channel file's species and ratios are rendered as stored
        from z2t_dask.sample.channels import stored_species

        stored_species(h5_path, cfg, em, table)
    zc = f.zernike_coeffs
    k = cfg.psf.n_modes
    declared = str(f.attrs.get("zernike_convention", "")) if f.attrs else ""
    if zc and "phase" in zc and np.ndim(zc["phase"]) == 2 and zc["phase"].shape[0] == n:
        ph = _array(h5_path, "zernike_coeffs/phase", zc["phase"], n, zc["phase"].shape[1], "f").astype(np.float64)
        mg = np.zeros_like(ph)
        if "mag" in zc:
            mg = _array(h5_path, "zernike_coeffs/mag", zc["mag"], n, ph.shape[1], "f").astype(np.float64)
        if "z2t_version" in f.attrs or declared == "noll-rad":
            phase = np.zeros((n, k))
            phase[:, : min(k, ph.shape[1])] = ph[:, :k]
            mag = np.zeros((n, k))
            mag[:, : min(k, mg.shape[1])] = mg[:, :k]
            info = {"kind": "emitters.h5", "source_convention": "noll", "path": str(h5_path)}
        else:
            if ph.shape[1] != 21:
                raise FormatError(
                    f"{h5_path}: dataset 'zernike_coeffs/phase' has {ph.shape[1]} columns; a file without z2t's "
                    "provenance holds the original's 21 legacy modes"
                )
            phase = legacy_to_noll(ph, k)
            mag = legacy_to_noll(mg, k, warn=False)
            mag[:, 0] = 0.0
            info = {"kind": "emitters.h5", "source_convention": "legacy21", "path": str(h5_path)}
        phase = phase * cfg.zernike.scale
        mag_or_none: np.ndarray | None = mag if np.any(np.abs(mag) > 1e-9) else None
    elif zc and "phase" in zc:
        raise FormatError(
            f"{h5_path}: zernike_coeffs/phase has shape {np.shape(zc['phase'])} for {n} emitters (expected (N, K); "
            "a row count off is the original's crop bug, D13); drop zernike_coeffs to recompute them from the Zmap"
        )
    else:
        field = aberration_field(cfg)
        phase, mag_or_none = field(xyz[:, :2])
        info = field.describe()
    return sample_from_truth(
        cfg,
        seed,
        table,
        records,
        phase,
        mag_or_none,
        info,
        chunk_frames,
        extra_attrs={"rendered_from": str(h5_path)},
        tile_size=tile_size,
    )


def render_emitters(h5_path: str | os.PathLike, config=None, *, seed: int = 0, chunk_frames: int | None = None):
    """Lazy frames ``(T, H, W)`` of an existing ``emitters.h5`` (e.g. one the original wrote)."""
    return load_sample_h5(h5_path, config, seed=seed, chunk_frames=chunk_frames).frames
