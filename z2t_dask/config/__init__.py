"""Typed, validated, immutable configuration of one simulated sample (see :mod:`.schema`)."""
from z2t_dask.config.schema import *  # noqa: F401,F403
from z2t_dask.config.schema import __all__  # noqa: F401
