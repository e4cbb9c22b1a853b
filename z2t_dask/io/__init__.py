"""Readers and writers: OME-TIFF, ``emitters.h5`` (original layout), CSV ground truth, atomic file handling."""
