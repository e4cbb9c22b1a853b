"""Physics: pure NumPy models of the emitters, the Zmap, the optics and the camera.

Nothing here builds a Dask graph or touches a file other than the Zmap it is asked to read;
nothing here imports :mod:`z2t_dask.engine`, :mod:`z2t_dask.io`, :mod:`z2t_dask.batch` or
:mod:`z2t_dask.tools`.
"""
