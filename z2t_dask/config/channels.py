"""Detection channels and dye species: typed, immutable sections with key-path errors.

A config may list several detection channels (``channels``, absent or empty = today's single
channel, unchanged) and dye species (``emitters.species``) that split each emitter's photons
between them. This module holds their frozen dataclasses and :func:`resolve_channels`, called by
:func:`z2t_dask.config.load_config`, which parses the raw lists into them and checks them,
reporting every problem under its key path (``channels[1].transform.rotation_deg``,
``emitters.species[0].ratio`` ...).

Units: positions and shifts in camera pixels (x = column, y = row), angles in degrees
(counter-clockwise from +x towards +y, i.e. clockwise on screen with y down), wavelengths in
nm, z offsets in µm (positive = the channel's focal plane lies deeper, away from the coverslip),
background in photons/px/frame, ratios and efficiencies dimensionless.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from z2t_dask.config.coercion import build, finite, show_value
from z2t_dask.config.schema import CameraConfig, SimulationConfig

__all__ = [
    "CHANNEL_LAYOUTS",
    "ChannelConfig",
    "SpeciesConfig",
    "TransformConfig",
    "channel_names",
    "resolve_channels",
]

#: Values of ``channels_layout``: ``stack`` = frames (T, C, Y, X); ``split-view`` = one chip with
#: the channels side by side, each at its ``crop_offset``.
CHANNEL_LAYOUTS = ("stack", "split-view")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _meta(doc: str, unit: str = "", **kw: Any) -> dict[str, Any]:
    return {"doc": doc, "unit": unit, **kw}


@dataclass(frozen=True)
class TransformConfig:
    """Registration of a channel: an affine map from reference (ROI) positions to this channel's pixels.

    Without ``affine``: ``x_ch = scale · R(rotation_deg) · (x - centre) + centre + shift``, with
    ``centre`` = ``centre_px`` or the ROI centre ``((W - 1) / 2, (H - 1) / 2)``.
    """

    shift_px: list = field(default_factory=lambda: [0.0, 0.0], metadata=_meta("[dx, dy] shift", "px"))
    rotation_deg: float = field(default=0.0, metadata=_meta("rotation about the centre (x towards y)", "deg"))
    scale: float = field(default=1.0, metadata=_meta("magnification relative to the reference", "", gt=0))
    centre_px: list | None = field(
        default=None, metadata=_meta("[x, y] centre of rotation and scaling; null = the ROI centre", "px")
    )
    affine: list | None = field(
        default=None,
        metadata=_meta("full 2x3 map [[a, b, tx], [c, d, ty]]: x_ch = a x + b y + tx; overrides the others", "px"),
    )


@dataclass(frozen=True)
class ChannelConfig:
    """One detection channel."""

    name: str = field(default="", metadata=_meta("channel name (letters, digits, _ or -; unique)", ""))
    wavelength_nm: float | None = field(
        default=None, metadata=_meta("emission wavelength; null = optical.wavelength_nm", "nm", gt=0)
    )
    zmap_path: str | None = field(
        default=None, metadata=_meta("this channel's Zmap; null = a synthetic Zmap with synthetic_seed", "")
    )
    synthetic_seed: int | None = field(
        default=None, metadata=_meta("synthetic Zmap seed; null = zernike.synthetic_seed + channel index", "", ge=0)
    )
    fixed_zernike: dict = field(
        default_factory=dict, metadata=_meta("extra Noll index -> phase of this channel, on every emitter", "rad RMS")
    )
    efficiency: float = field(default=1.0, metadata=_meta("detection efficiency of this path", "", ge=0, le=1))
    z_offset_um: float = field(
        default=0.0, metadata=_meta("focal plane offset (chromatic focal shift; + = deeper)", "um")
    )
    background: float | None = field(
        default=None, metadata=_meta("background; null = background.photons", "photons/px/frame", ge=0)
    )
    crop_offset: list | None = field(
        default=None,
        metadata=_meta(
            "[x, y] chip pixel of this channel's image pixel (0, 0); null = tiff.crop_offset + [index x ROI width, 0]",
            "px",
        ),
    )
    transform: TransformConfig = field(default_factory=TransformConfig, metadata=_meta("registration", ""))
    camera: dict | None = field(
        default=None, metadata=_meta("camera keys of this channel over the camera section (not in split-view)", "")
    )


@dataclass(frozen=True)
class SpeciesConfig:
    """One dye species: its share of the emitters and how it splits its photons between the channels."""

    name: str = field(default="", metadata=_meta("species name (unique)", ""))
    fraction: float = field(default=1.0, metadata=_meta("share of the emitters (fractions sum to 1)", "", ge=0, le=1))
    ratio: list = field(
        default_factory=list, metadata=_meta("mean share of the photons per channel (one per channel, sum 1)", "")
    )
    ratio_spread: float = field(
        default=0.0,
        metadata=_meta(
            "RMS over channels of the s.d. of an emitter's share (Dirichlet; 0 = every emitter at the mean)", "", ge=0
        ),
    )
    brightness: float = field(
        default=1.0,
        metadata=_meta(
            "photophysics override: photon yield relative to the emitters section (multiplies the photons of this "
            "species' emitters and records)",
            "",
            gt=0,
        ),
    )
    t_on: float | None = field(
        default=None,
        metadata=_meta(
            "photophysics override (blinking): mean on time before going dark; null = emitters.t_on", "frames", gt=0
        ),
    )
    t_dark: float | None = field(
        default=None,
        metadata=_meta("photophysics override (blinking): mean dark time; null = emitters.t_dark", "frames", gt=0),
    )
    t_bleach: float | None = field(
        default=None,
        metadata=_meta(
            "photophysics override (blinking): mean on time before bleaching; null = emitters.t_bleach", "frames", gt=0
        ),
    )
    lifetime_avg: float | None = field(
        default=None,
        metadata=_meta("photophysics override (single): mean on-time; null = emitters.lifetime_avg", "frames", gt=0),
    )


#: Species kinetics overrides and the emitters.model they apply to.
_KINETICS_MODEL = {"t_on": "blinking", "t_dark": "blinking", "t_bleach": "blinking", "lifetime_avg": "single"}


def channel_names(cfg: SimulationConfig) -> tuple[str, ...]:
    """The channel names of a config (empty for a single-channel config)."""
    return tuple(c.name for c in cfg.channels)


def _number_list(value: Any, n: int, path: str, problems: list, what: str) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != n or any(finite(v) is None for v in value):
        problems.append((path, f"expected {what} ({n} finite numbers), got {show_value(value)}"))
        return None
    return [float(v) for v in value]


def _int_pair(value: Any, path: str, problems: list) -> list[int] | None:
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 for v in value)
    if not ok:
        problems.append((path, f"expected [x, y] non-negative integers (px), got {show_value(value)}"))
        return None
    return [int(v) for v in value]


def _transform(t: TransformConfig, path: str, problems: list) -> TransformConfig:
    shift = _number_list(t.shift_px, 2, f"{path}.shift_px", problems, "[dx, dy]") or [0.0, 0.0]
    centre = None if t.centre_px is None else _number_list(t.centre_px, 2, f"{path}.centre_px", problems, "[x, y]")
    affine = None
    if t.affine is not None:
        a = t.affine
        if not (isinstance(a, (list, tuple)) and len(a) == 2):
            problems.append((f"{path}.affine", f"expected [[a, b, tx], [c, d, ty]], got {show_value(a)}"))
        else:
            rows = [_number_list(r, 3, f"{path}.affine[{i}]", problems, "[a, b, t]") for i, r in enumerate(a)]
            if all(r is not None for r in rows):
                affine = rows
                det = rows[0][0] * rows[1][1] - rows[0][1] * rows[1][0]  # type: ignore[index]
                if abs(det) < 1e-9:
                    problems.append((f"{path}.affine", "is singular (determinant 0): a channel image must be 2-D"))
    return dataclasses.replace(t, shift_px=shift, centre_px=centre, affine=affine)


def _channel(raw: Any, i: int, cfg: SimulationConfig, problems: list) -> ChannelConfig | None:
    path = f"channels[{i}]"
    if isinstance(raw, ChannelConfig):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a mapping (a channel), got {type(raw).__name__}"))
        return None
    n0 = len(problems)
    ch = build(ChannelConfig, raw, path, problems)
    if len(problems) > n0:
        return None
    if not isinstance(ch.name, str) or not _NAME.match(ch.name):
        problems.append((f"{path}.name", f"expected a name of letters, digits, _ or - (e.g. 'ch1'), got {ch.name!r}"))
    transform = _transform(ch.transform, f"{path}.transform", problems)
    fixed: dict[int, float] = {}
    for k, v in ch.fixed_zernike.items():
        j = int(k) if isinstance(k, (int, str)) and str(k).strip().isdigit() else None
        key = f"{path}.fixed_zernike.{k}"
        if j is None or not 1 <= j <= cfg.psf.n_modes:
            problems.append((key, f"keys must be Noll indices 1..psf.n_modes={cfg.psf.n_modes}"))
        elif finite(v) is None:
            problems.append((key, f"expected a finite number (rad RMS), got {show_value(v)}"))
        else:
            fixed[j] = float(v)
    offset = ch.crop_offset
    if offset is None:
        x0, y0 = cfg.crop_offset_xy
        offset = [x0 + i * cfg.image_shape[1], y0]
    else:
        offset = _int_pair(offset, f"{path}.crop_offset", problems) or [0, 0]
    camera = None
    if ch.camera is not None:
        merged = {**{f.name: getattr(cfg.camera, f.name) for f in dataclasses.fields(CameraConfig)}, **ch.camera}
        build(CameraConfig, merged, f"{path}.camera", problems)
        camera = dict(ch.camera)
    return dataclasses.replace(
        ch,
        transform=transform,
        fixed_zernike=fixed,
        crop_offset=offset,
        camera=camera,
        synthetic_seed=int(cfg.zernike.synthetic_seed) + i if ch.synthetic_seed is None else ch.synthetic_seed,
        wavelength_nm=float(cfg.optical.wavelength_nm) if ch.wavelength_nm is None else ch.wavelength_nm,
        background=float(cfg.background.photons) if ch.background is None else ch.background,
    )


def _species(raw: Any, i: int, n_channels: int, problems: list, model: str = "single") -> SpeciesConfig | None:
    path = f"emitters.species[{i}]"
    if isinstance(raw, SpeciesConfig):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a mapping (a species), got {type(raw).__name__}"))
        return None
    n0 = len(problems)
    sp = build(SpeciesConfig, raw, path, problems)
    if len(problems) > n0:
        return None
    if not isinstance(sp.name, str) or not _NAME.match(sp.name):
        problems.append((f"{path}.name", f"expected a name of letters, digits, _ or -, got {sp.name!r}"))
    for key, kin_model in _KINETICS_MODEL.items():
        if getattr(sp, key) is not None and kin_model != model:
            problems.append(
                (f"{path}.{key}", f"overrides the {kin_model} model, but emitters.model is {model!r}: remove it")
            )
    ratio = _number_list(sp.ratio, n_channels, f"{path}.ratio", problems, "one mean share per channel")
    if ratio is None:
        return None
    if any(r < 0 or r > 1 for r in ratio) or abs(sum(ratio) - 1.0) > 1e-6:
        problems.append((f"{path}.ratio", f"shares must lie in [0, 1] and sum to 1, got {ratio}"))
        return None
    var = sum(m * (1 - m) for m in ratio) / n_channels  # mean Var of a Dirichlet with concentration 0
    if sp.ratio_spread > 0 and sp.ratio_spread**2 >= var:
        problems.append(
            (
                f"{path}.ratio_spread",
                f"must be < {math.sqrt(var):.4g} for the mean ratio {ratio} (the spread of shares that are either 0 "
                f"or 1), got {sp.ratio_spread}",
            )
        )
    return dataclasses.replace(sp, ratio=ratio)


def _check_split_view(cfg: SimulationConfig, channels: list[ChannelConfig], problems: list) -> None:
    """Split-view: one shared camera; the channels' images on the chip must not overlap."""
    h, w = cfg.image_shape
    for i, ch in enumerate(channels):
        if ch.camera is not None:
            problems.append((f"channels[{i}].camera", "split-view channels share one chip: use the camera section"))
        assert ch.crop_offset is not None
    for i, a in enumerate(channels):
        for j in range(i):
            b = channels[j]
            (ax, ay), (bx, by) = a.crop_offset, b.crop_offset  # type: ignore[misc]
            if ax < bx + w and bx < ax + w and ay < by + h and by < ay + h:
                problems.append(
                    (
                        f"channels[{i}].crop_offset",
                        f"{[ax, ay]} overlaps channels[{j}] at {[bx, by]} on the split-view chip ({w}x{h} px each)",
                    )
                )
    c = cfg.camera
    for i, ch in enumerate(channels):
        x0, y0 = ch.crop_offset  # type: ignore[misc]
        if (c.chip_width is not None and x0 + w > c.chip_width) or (
            c.chip_height is not None and y0 + h > c.chip_height
        ):
            problems.append(
                (
                    f"channels[{i}].crop_offset",
                    f"{[x0, y0]} + {w}x{h} px exceeds the chip {c.chip_width}x{c.chip_height}",
                )
            )


def resolve_channels(cfg: SimulationConfig, problems: list[tuple[str, str]]) -> SimulationConfig:
    """Parse and check ``channels``, ``channels_layout`` and ``emitters.species``; return a new config.

    A config without channels must have no species (a single channel has nothing to split).
    With channels and no species, every emitter splits its photons equally (one species
    ``"default"``, spread 0). Problems are appended to ``problems`` under their key paths.
    """
    raw_channels = cfg.channels
    raw_species = cfg.emitters.species
    if not isinstance(raw_channels, list):
        problems.append(("channels", f"expected a list of channels, got {type(raw_channels).__name__}"))
        return cfg
    if not raw_channels:
        if raw_species:
            problems.append(("emitters.species", "needs at least two detection channels (the channels list)"))
        if cfg.channels_layout != "stack":
            problems.append(("channels_layout", "split-view needs at least two detection channels (channels)"))
        return cfg
    if len(raw_channels) < 2:
        problems.append(("channels", "give at least two channels, or none for a single channel"))
        return cfg
    channels = [_channel(r, i, cfg, problems) for i, r in enumerate(raw_channels)]
    if any(c is None for c in channels):
        return cfg
    chans: list[ChannelConfig] = [c for c in channels if c is not None]
    seen: dict[str, int] = {}
    for i, ch in enumerate(chans):
        if ch.name in seen:
            problems.append((f"channels[{i}].name", f"{ch.name!r} repeats channels[{seen[ch.name]}].name"))
        seen.setdefault(ch.name, i)
    if cfg.channels_layout == "split-view":
        _check_split_view(cfg, chans, problems)
    for i, ch in enumerate(chans):  # a channel's focal plane (the reference's + z_offset_um) above the coverslip
        if cfg.focus_depth_um + ch.z_offset_um < 0:
            problems.append(
                (
                    f"channels[{i}].z_offset_um",
                    f"{ch.z_offset_um} puts the channel's focal plane below the coverslip (focal plane depth "
                    f"{cfg.focus_depth_um} um + offset < 0)",
                )
            )
    n = len(chans)
    if not isinstance(raw_species, list):
        problems.append(("emitters.species", f"expected a list of species, got {type(raw_species).__name__}"))
        return cfg
    if not raw_species:
        raw_species = [{"name": "default", "fraction": 1.0, "ratio": [1.0 / n] * n, "ratio_spread": 0.0}]
    species = [_species(r, i, n, problems, cfg.emitters.model) for i, r in enumerate(raw_species)]
    if any(s is None for s in species):
        return cfg
    sps: list[SpeciesConfig] = [s for s in species if s is not None]
    total = sum(s.fraction for s in sps)
    if abs(total - 1.0) > 1e-6:
        problems.append(("emitters.species", f"the fractions must sum to 1, got {total:.6g}"))
    names = [s.name for s in sps]
    for i, nm in enumerate(names):
        if nm in names[:i]:
            problems.append((f"emitters.species[{i}].name", f"{nm!r} repeats an earlier species"))
    return dataclasses.replace(cfg, channels=chans, emitters=dataclasses.replace(cfg.emitters, species=sps))
