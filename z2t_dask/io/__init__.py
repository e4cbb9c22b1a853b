"""Formats, not physics: the stack-format registry (:mod:`~z2t_dask.io.registry`, built-in entries in
:mod:`~z2t_dask.io.formats`: OME-TIFF, OME-Zarr + NGFF, HDF5), frame blocks, ``emitters.h5`` (original
layout), CSV ground truth and atomic file handling. Imports nothing from ``batch`` or ``tools``."""
