"""Many samples on dask.distributed: batch specs, jobs, the manifest, the runner and clusters."""
from z2t_dask.batch.runner import *  # noqa: F401,F403
from z2t_dask.batch.runner import __all__  # noqa: F401
