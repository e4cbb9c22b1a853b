"""Camera models (EMCCD, sCMOS, ideal, the original float model) and their exact pmf tables."""
from z2t_dask.physics.camera.models import *  # noqa: F401,F403
from z2t_dask.physics.camera.models import __all__  # noqa: F401
