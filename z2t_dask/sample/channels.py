"""A multi-channel :class:`~z2t_dask.sample.core.Sample`: frames ``(T, C, Y, X)`` and the per-channel truth.

:func:`z2t_dask.sample.simulate` calls :func:`channel_sample` when the config lists ``channels``;
the lazy stack is :mod:`z2t_dask.engine.channels`, the truth columns
:mod:`z2t_dask.physics.channels`. Split-view (``channels_layout: "split-view"``) changes only
what is written (:func:`frames_to_write`): the sample's frames keep their C axis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from z2t_dask.config import SimulationConfig
from z2t_dask.engine.channels import channel_plans, channel_stack, channel_truth, split_view, split_view_origin
from z2t_dask.physics.truth import Truth
from z2t_dask.sample.core import Sample

__all__ = [
    "CHANNEL_UNITS",
    "channel_attrs",
    "channel_sample",
    "channel_table",
    "csv_channel_records",
    "frames_to_write",
    "split_channels",
    "stored_species",
    "with_channel_columns",
]

#: ``units`` attributes of the per-channel datasets of ``emitters.h5``.
CHANNEL_UNITS = {
    "emitters/species": "1 (index into the species attribute: the config's emitters.species)",
    "emitters/ratio": "1 (share of the emitter's photons per channel, (N, C), sums to 1; channel order = "
    "channel_names attribute)",
    "records/phot_ch": "photons (detected in this frame per channel, (M, C) = phot x ratio x efficiency)",
    "records/xy_ch": "camera px of each channel's image ((M, C, 2): x, y through the channel's affine map)",
    "records/inside_ch": "bool ((M, C): the position in that channel lies inside its image)",
}


def channel_table(cfg: SimulationConfig) -> list[dict[str, Any]]:
    """The channel table stored with the outputs: name, wavelength (nm), efficiency, z offset (µm),
    background (photons/px/frame), crop offset (chip px) and the affine map reference px -> channel px."""
    from z2t_dask.engine.channels import channel_geometries

    out = []
    for ch, geo in zip(cfg.channels, channel_geometries(cfg)):
        out.append(
            {
                "name": ch.name,
                "wavelength_nm": ch.wavelength_nm,
                "efficiency": ch.efficiency,
                "z_offset_um": ch.z_offset_um,
                "background": ch.background,
                "crop_offset": list(ch.crop_offset),
                "affine": [list(r) for r in geo.affine],
                "zmap_path": ch.zmap_path,
                "synthetic_seed": ch.synthetic_seed,
            }
        )
    return out


def channel_attrs(cfg: SimulationConfig) -> dict[str, Any]:
    """Root attributes of a multi-channel sample's files (JSON strings)."""
    return {
        "channels": json.dumps(channel_table(cfg)),
        "channel_names": json.dumps([ch.name for ch in cfg.channels]),
        "species": json.dumps(
            [
                {
                    "name": s.name,
                    "fraction": s.fraction,
                    "ratio": s.ratio,
                    "ratio_spread": s.ratio_spread,
                    "brightness": s.brightness,
                    **{k: getattr(s, k) for k in ("t_on", "t_dark", "t_bleach", "lifetime_avg") if getattr(s, k)},
                }
                for s in cfg.emitters.species
            ]
        ),
        "channels_layout": cfg.channels_layout,
        "axes": "TCYX" if cfg.channels_layout == "stack" else "TYX",
    }


def channel_sample(
    cfg: SimulationConfig,
    seed: int,
    base: Truth,
    zmap_info: dict,
    chunk_frames: int | None,
    tile_size: int | None,
    extra_attrs: dict | None = None,
) -> Sample:
    """The multi-channel sample of ``cfg`` over the reference truth ``base`` (lazy ``(T, C, Y, X)`` frames)."""
    truth = channel_truth(cfg, seed, base)
    plans = channel_plans(cfg, seed, truth)
    frames = channel_stack(
        plans,
        cfg.render.chunk_frames if chunk_frames is None else chunk_frames,
        tile_size=cfg.render.tile_size if tile_size is None else tile_size,
        chunk_mb=cfg.render.chunk_mb,
    )
    return Sample(
        config=cfg,
        seed=int(seed),
        truth=truth,
        frames=frames,
        zmap_info=zmap_info,
        extra_attrs={**(extra_attrs or {}), **channel_attrs(cfg)},
        plan=plans[0],
    )


def frames_to_write(sample: Sample) -> Any:
    """The frames a sample's stack file holds: ``(T, C, Y, X)``, or the split-view chip ``(T, H', W')``."""
    cfg = sample.config
    if not cfg.channels or cfg.channels_layout != "split-view":
        return sample.frames
    return split_view(cfg, sample.frames)


def with_channel_columns(sample: Sample, parts: Iterator[tuple[dict, dict, Any]]) -> Iterator[tuple[dict, dict, Any]]:
    """Truth parts ``(emitters, records, zernike)`` as written, with the per-channel columns added
    (:func:`z2t_dask.physics.channels.channel_columns`, from the parts' ids, photons and positions)."""
    from z2t_dask.physics.channels import ChannelTruth, channel_columns

    truth = sample.truth
    if not isinstance(truth, ChannelTruth):
        yield from parts
        return
    for em, rec, zc in parts:
        em_cols, rec_cols = channel_columns(truth.channels, truth.species, em["id"], rec["id"], rec["phot"], rec["xyz"])
        yield {**em, **em_cols}, {**rec, **rec_cols}, zc


def csv_channel_records(sample: Sample, parts: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """Records of each truth part for the CSV: the per-channel columns as ``photons_<name>``,
    ``x_px_<name>``, ``y_px_<name>``, ``inside_<name>`` (1-D, channel order)."""
    names = [ch.name for ch in sample.config.channels]
    for p in parts:
        rec = p.records.as_dict()
        phot_ch, xy_ch, inside_ch = rec.pop("phot_ch"), rec.pop("xy_ch"), rec.pop("inside_ch")
        for c, name in enumerate(names):
            rec[f"photons_{name}"] = phot_ch[:, c]
            rec[f"x_px_{name}"] = xy_ch[:, c, 0]
            rec[f"y_px_{name}"] = xy_ch[:, c, 1]
            rec[f"inside_{name}"] = inside_ch[:, c].astype(np.float32)
        yield rec


def split_channels(chip: Any, attrs: dict[str, Any]) -> Any:
    """The ``(T, C, Y, X)`` stack of a split-view chip ``(T, H', W')`` from its provenance attributes.

    ``attrs`` are the stack's (:meth:`Sample.attrs`): ``channels`` (each channel's ``crop_offset``)
    and ``image_shape`` ``[C, Y, X]``. Lazy when ``chip`` is a dask array.
    """
    import dask.array as da

    from z2t_dask.io.channels import channel_table_from_attrs

    table = channel_table_from_attrs(attrs)
    shape = attrs.get("image_shape")
    if isinstance(shape, str):
        shape = json.loads(shape)
    if not table or not isinstance(shape, list) or len(shape) != 3:
        return chip
    _, h, w = (int(v) for v in shape)
    x0 = min(int(c["crop_offset"][0]) for c in table)
    y0 = min(int(c["crop_offset"][1]) for c in table)
    parts = []
    for c in table:
        ox, oy = int(c["crop_offset"][0]) - x0, int(c["crop_offset"][1]) - y0
        parts.append(chip[:, oy : oy + h, ox : ox + w])
    return da.stack(parts, axis=1)


def stored_species(path: Any, cfg: SimulationConfig, em: dict[str, Any], table: Any) -> None:
    """Put a multi-channel ``emitters.h5``'s ``emitters/species`` and ``emitters/ratio`` into ``table.extra``
    (rendered as stored: :class:`~z2t_dask.physics.channels.StoredSpecies`); absent, they are drawn from the
    seed as :func:`~z2t_dask.sample.simulate` draws them.

    Raises
    ------
    FormatError
        A ratio that is not (N, C) for the config's C channels, not finite, negative or not summing to 1
        (tolerance 1e-4), or species outside the config's species (the message names the file and dataset).
    """
    from z2t_dask.errors import FormatError

    if "ratio" not in em:
        return
    n, c = len(table), len(cfg.channels)
    ratio = np.asarray(em["ratio"], np.float64)
    if ratio.shape != (n, c) or not np.all(np.isfinite(ratio)):
        raise FormatError(
            f"{path}: emitters/ratio must be finite with shape ({n}, {c}) (C = channels), got {ratio.shape}"
        )
    if ratio.size and (ratio.min() < 0 or np.abs(ratio.sum(1) - 1).max() > 1e-4):
        raise FormatError(f"{path}: emitters/ratio rows must be >= 0 and sum to 1 (each emitter's photon split)")
    species = np.asarray(em.get("species", np.zeros(n)), np.int64)
    if species.shape != (n,) or (n and (species.min() < 0 or species.max() >= len(cfg.emitters.species))):
        raise FormatError(
            f"{path}: emitters/species must be ({n},) indices into the {len(cfg.emitters.species)} species"
        )
    table.extra["species"] = species.astype(np.int16)
    table.extra["ratio"] = ratio.astype(np.float32)


def split_view_offset(cfg: SimulationConfig) -> tuple[int, int]:
    """Chip pixel ``(x0, y0)`` of the split-view image's pixel (0, 0)."""
    return split_view_origin(cfg)
