"""One sample end to end: config → emitters → per-emitter aberrations → lazy frames → files.

================================  ==============================================================
:mod:`~z2t_dask.sample.core`      :class:`Sample` (lazy frames + ground truth), :func:`simulate`
:mod:`~z2t_dask.sample.writing`   the stack (format registry) and ``emitters.h5`` / CSV writers
:mod:`~z2t_dask.sample.from_file` :func:`load_sample_h5`: render an existing ``emitters.h5``
================================  ==============================================================
"""

from z2t_dask.sample.core import CONVENTIONS, Sample, simulate
from z2t_dask.sample.from_file import load_sample_h5, render_emitters
from z2t_dask.sample.writing import stack_fingerprint, write_ground_truth, write_stack

__all__ = [
    "CONVENTIONS",
    "Sample",
    "load_sample_h5",
    "render_emitters",
    "simulate",
    "stack_fingerprint",
    "write_ground_truth",
    "write_stack",
]
