"""Typed, validated, immutable configuration of one simulated sample.

* :mod:`z2t_dask.config.schema`: the sections (frozen dataclasses with documented, unit-carrying
  fields) and :class:`SimulationConfig`;
* :mod:`z2t_dask.config.validation`: :func:`load_config` (type and range checks, checks across
  sections, the built-in default);
* :mod:`z2t_dask.config.legacy`: translation of the original tool's files and key names.
"""

from __future__ import annotations

from z2t_dask.config.schema import (
    BackgroundConfig,
    CameraConfig,
    EmittersConfig,
    NoiseParams,
    OpticalConfig,
    OutputConfig,
    PSFConfig,
    RenderConfig,
    SimulationConfig,
    TiffConfig,
    ZernikeConfig,
    config_to_dict,
)
from z2t_dask.config.validation import builtin_default_dict, default_config, load_config
from z2t_dask.errors import ConfigError, LegacyKeyWarning

__all__ = [
    "BackgroundConfig",
    "CameraConfig",
    "ConfigError",
    "EmittersConfig",
    "LegacyKeyWarning",
    "NoiseParams",
    "OpticalConfig",
    "OutputConfig",
    "PSFConfig",
    "RenderConfig",
    "SimulationConfig",
    "TiffConfig",
    "ZernikeConfig",
    "builtin_default_dict",
    "config_to_dict",
    "default_config",
    "load_config",
]
