"""Optics: Zernike polynomials and pupil-function PSFs (pure array code, no Dask, no files)."""
