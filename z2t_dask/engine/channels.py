"""The lazy ``(T, C, Y, X)`` stack of a multi-channel sample, and its split-view chip.

Each channel is rendered by the single-channel machinery of :mod:`z2t_dask.engine.render` with
a derived single-channel config (:func:`channel_config`: the channel's Zmap or synthetic seed,
wavelength, extra Zernike terms, background, camera and chip offset) and a
:class:`~z2t_dask.physics.channels.ChannelView` of the truth (emitters through the channel's
affine map, its photons, its aberrations). So every channel follows the same chunking and tiling
rules and the same fixed noise grid; channel ``c`` draws its camera noise from
``(PURPOSE_CHANNEL_NOISE, c, frame, block_row, block_col)``, and a single-channel config never
reaches this module (its keys and bytes are unchanged).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from z2t_dask.config import CameraConfig, SimulationConfig
from z2t_dask.config.coercion import build
from z2t_dask.engine.assembly import aberration_field, make_camera, make_psf_model, make_zmap
from z2t_dask.engine.render import DEFAULT_CHUNK_MB, FramePlan, frames_array
from z2t_dask.errors import ConfigError
from z2t_dask.physics.channels import (
    ChannelGeometry,
    ChannelTruth,
    StoredSpecies,
    affine_matrix,
    apply_affine,
)
from z2t_dask.physics.random_streams import PURPOSE_CHANNEL_NOISE
from z2t_dask.physics.species import species_table
from z2t_dask.physics.truth import Truth

__all__ = [
    "channel_config",
    "channel_geometries",
    "channel_plans",
    "channel_stack",
    "channel_truth",
    "split_view",
    "split_view_origin",
]


def channel_config(cfg: SimulationConfig, c: int) -> SimulationConfig:
    """The single-channel config that renders channel ``c`` of ``cfg``.

    Zmap: the channel's ``zmap_path``, else the config's ``zmap_path``, else the synthetic Zmap
    with the channel's ``synthetic_seed``; phase terms ``psf.fixed_zernike`` (unless
    ``optical.ignore_fixed_psf_coeffs``) plus the channel's ``fixed_zernike``; the channel's
    ``wavelength_nm``, ``background``, ``crop_offset`` (chip position: Zmap lookup and sCMOS
    maps) and ``camera`` keys over the camera section. Its emitter area (margin and z range) covers
    where the channel sees the emitters (through its affine map, z minus its focal offset): what its
    fast PSF library tabulates; the emitters themselves are drawn from ``cfg``.
    """
    ch = cfg.channels[c]
    base_fixed = {} if cfg.optical.ignore_fixed_psf_coeffs else dict(cfg.psf.fixed_zernike)
    fixed = dict(base_fixed)
    for j, v in ch.fixed_zernike.items():
        fixed[int(j)] = fixed.get(int(j), 0.0) + float(v)
    camera = cfg.camera
    if ch.camera:
        problems: list[tuple[str, str]] = []
        merged = {f.name: getattr(cfg.camera, f.name) for f in dataclasses.fields(CameraConfig)}
        camera = build(CameraConfig, {**merged, **ch.camera}, f"channels[{c}].camera", problems)
        if problems:
            raise ConfigError(problems)
    # the fast PSF library of the channel tabulates where the channel sees the emitters: the sampling
    # area mapped by its affine map (a wider margin) and z shifted by its focal offset (a wider z range)
    e = cfg.emitters
    (w, h), m = cfg.area_xy, float(e.margin_px)
    corners = np.array([[-m, -m], [w + m, -m], [-m, h + m], [w + m, h + m]])
    geo = channel_geometries(cfg)[c]
    moved = float(np.abs(apply_affine(geo.matrix, corners) - corners).max())
    emitters = dataclasses.replace(
        e,
        species=[],
        margin_px=m + float(np.ceil(moved)),
        z_range_um=float(e.z_range_um) + abs(float(ch.z_offset_um)),
        area_px=[w, h],
    )
    return dataclasses.replace(
        cfg,
        zmap_path=ch.zmap_path or cfg.zmap_path,
        zernike=dataclasses.replace(
            cfg.zernike, synthetic_seed=int(ch.synthetic_seed or 0), crop_offset=list(ch.crop_offset)
        ),
        optical=dataclasses.replace(
            cfg.optical,
            wavelength_nm=float(ch.wavelength_nm),
            ignore_fixed_psf_coeffs=False,
            # the channel's nominal focal plane: the reference's, shifted deeper by its focal offset (an emitter
            # at z lies z - z_offset_um from it, at the same depth); explicit, as the widened z range below
            # would otherwise move an automatic focus depth
            focus_depth_um=cfg.focus_depth_um + float(ch.z_offset_um),
        ),
        psf=dataclasses.replace(cfg.psf, fixed_zernike=fixed),
        tiff=dataclasses.replace(cfg.tiff, crop_offset=list(ch.crop_offset)),
        background=dataclasses.replace(cfg.background, photons=float(ch.background)),
        camera=camera,
        channels=[],
        channels_layout="stack",
        emitters=emitters,
    )


def channel_geometries(cfg: SimulationConfig) -> tuple[ChannelGeometry, ...]:
    """The registration, focal offset and efficiency of every channel of ``cfg``."""
    out = []
    for ch in cfg.channels:
        t = ch.transform
        a = affine_matrix(t.shift_px, t.rotation_deg, t.scale, t.centre_px, t.affine, cfg.image_shape)
        out.append(
            ChannelGeometry(
                name=ch.name,
                affine=tuple(tuple(float(v) for v in row) for row in a),  # type: ignore[arg-type]
                z_offset_um=float(ch.z_offset_um),
                efficiency=float(ch.efficiency),
                image_shape=cfg.image_shape,
            )
        )
    return tuple(out)


def channel_truth(cfg: SimulationConfig, seed: int, base: Truth) -> ChannelTruth:
    """The multi-channel truth of ``cfg`` over the reference truth ``base``: species and ratios drawn per id
    (:class:`~z2t_dask.physics.channels.SpeciesTable`), or those an in-memory truth's emitters carry (a file's)."""
    part = getattr(base, "part", None)  # an in-memory truth (a file) may carry its species and ratios
    stored = None if part is None else part.emitters.extra
    if stored is not None and "ratio" in stored and "species" in stored:
        return ChannelTruth(base, channel_geometries(cfg), StoredSpecies(stored["species"], stored["ratio"]))
    return ChannelTruth(base, channel_geometries(cfg), species_table(seed, cfg))


def channel_plans(cfg: SimulationConfig, seed: int, truth: ChannelTruth) -> list[FramePlan]:
    """One render plan per channel: its view of the truth, PSF model, camera, background and noise key."""
    plans = []
    for c in range(len(cfg.channels)):
        sub = channel_config(cfg, c)
        try:
            field = aberration_field(sub, make_zmap(sub))
        except ConfigError as exc:  # the channel's image beyond its Zmap: name the channel's key
            raise ConfigError(
                [(f"channels[{c}].crop_offset", f"channel {cfg.channels[c].name!r}: {m}") for _, m in exc.problems]
            ) from None
        plans.append(
            FramePlan(
                seed=int(seed),
                frames=cfg.emitters.frames,
                image_shape=cfg.image_shape,
                truth=truth.channel(c, field),
                psf=make_psf_model(sub),
                camera=make_camera(sub),
                background=float(sub.background.photons),
                psf_batch=int(cfg.psf.batch_size),
                noise_key=(PURPOSE_CHANNEL_NOISE, c),
            )
        )
    return plans


def channel_stack(
    plans: list[FramePlan],
    chunk_frames: int | None = None,
    *,
    tile_size: int | None = None,
    chunk_mb: float = DEFAULT_CHUNK_MB,
) -> Any:
    """The lazy ``(T, C, Y, X)`` stack: each channel's ``(T, Y, X)`` array (same chunking) stacked on axis 1."""
    import dask.array as da

    arrays = [frames_array(p, chunk_frames, tile_size=tile_size, chunk_mb=chunk_mb) for p in plans]
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        raise ConfigError([("channels", f"the channels' cameras give different dtypes {sorted(map(str, dtypes))}")])
    return da.stack(arrays, axis=1)


def split_view_origin(cfg: SimulationConfig) -> tuple[int, int]:
    """``(x0, y0)``: chip pixel of the split-view image's pixel (0, 0) (the channels' smallest offsets)."""
    return min(ch.crop_offset[0] for ch in cfg.channels), min(ch.crop_offset[1] for ch in cfg.channels)


def split_view(cfg: SimulationConfig, frames: Any) -> Any:
    """The split-view chip ``(T, H', W')`` of a ``(T, C, Y, X)`` stack: each channel at its ``crop_offset``.

    The chip spans the channels' images (from :func:`split_view_origin`); pixels no channel
    covers are 0. Lazy, chunked like the channels along T.
    """
    import dask.array as da

    h, w = cfg.image_shape
    x0, y0 = split_view_origin(cfg)
    x1 = max(ch.crop_offset[0] for ch in cfg.channels) + w
    y1 = max(ch.crop_offset[1] for ch in cfg.channels) + h
    out = None
    for c, ch in enumerate(cfg.channels):
        ox, oy = ch.crop_offset[0] - x0, ch.crop_offset[1] - y0
        part = da.pad(frames[:, c], ((0, 0), (oy, y1 - y0 - oy - h), (ox, x1 - x0 - ox - w)), constant_values=0)
        out = part if out is None else out + part
    assert out is not None
    return out.astype(frames.dtype) if np.dtype(out.dtype) != np.dtype(frames.dtype) else out
