"""SMAP (MATLAB): ground truth as an ``_sml.mat`` localisation file.

File ``<name>_sml.mat``, MATLAB 5 MAT-file (zlib-compressed elements, what SMAP's default ``-v7`` save
gives; written by :func:`scipy.io.savemat` with a fixed header text, so it is byte-identical for the
same sample), holding the variables SMAP's ``Loader_sml`` reads with ``load``:

- ``saveloc.loc``: column vectors ordered by frame then emitter — ``xnm``, ``ynm``, ``znm`` (single),
  ``phot`` (photons at the camera), ``bg`` (background photons per px), ``frame`` (double, **1-based**),
  ``locprecnm`` (``sqrt((crlb_x² + crlb_y²)/2)``), ``xerr``, ``yerr`` (Cramér–Rao bound per axis, nm),
  ``PSFxnm``, ``PSFynm`` (effective Gaussian PSF width, nm), ``filenumber`` (uint16, 1), ``channel``
  (single, 0) and ``id`` (int32, ground-truth emitter id);
- ``saveloc.file``: ``name``, ``number`` (1), ``numberOfTif`` (0), ``tif`` and ``average`` (empty) and
  ``info`` (``Width``, ``Height``, ``roi = [0 0 W H]``, ``cam_pixelsize_um = [px py]`` µm,
  ``numberOfFrames``, ``EMon``, ``dropped_by_smap``, ``z2t``: the conventions as JSON);
- ``fileformat.name = 'sml'``.

Conventions (SMAP's, from its source: fitters write ``xpix = P - dn + posx`` with pixel centres at
integers, "shift 0 from ground truth", and ``xnm = (xpix + roi(1)) * cam_pixelsize_um(1) * 1000``,
``ynm`` with ``cam_pixelsize_um(end)``; ``load_smlV3`` takes ``saveloc.loc`` as is):

- **origin** pixel centres at integer pixel positions, 0-based, ROI coordinates (``roi(1:2) = 0``):
  ``xnm = x_px · pixel_size_nm_x``, ``ynm = y_px · pixel_size_nm_y``. Not verified in MATLAB: whether
  SMAP's peak finder counts pixels from 0 (as assumed here) or 1;
- **axes** x = column, y = row; **units** nm, photons; ``znm`` = z µm x 1000 with z2t's sign (positive away
  from the coverslip); **frames** 1-based;
- SMAP's ``Loader_sml`` removes localisations with ``locprecnm > 250`` nm or NaN (dim or far defocused
  records): the count is stored in ``saveloc.file.info.dropped_by_smap``;
- **anisotropic pixels**: ``cam_pixelsize_um`` holds both pitches and xnm/ynm each use their own: exact.

SMAP itself is MATLAB (not installable here): the file is checked against a transcription of
``Loader_sml`` / ``load_smlV3`` (fields, types, frame base) in the tests. DECODE's
``emitter_io.load_smap`` reads only MATLAB v7.3 (HDF5) files: use the ``decode`` export for DECODE.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask import __version__
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.exporters.common import ExportMeta, LocTable
from z2t_dask.io.exporters.registry import Exporter

__all__ = ["EXPORTER", "SMAP_MAX_LOCPREC_NM", "smap_variables", "write_smap"]

#: SMAP's loader drops localisations less precise than this (nm).
SMAP_MAX_LOCPREC_NM = 250.0
#: The MAT-file header text (116 bytes, space padded): fixed, so the file has no creation date.
_HEADER = f"MATLAB 5.0 MAT-file, written by z2t-dask {__version__} (SMAP _sml.mat ground truth)".encode("ascii")


def _col(values: Any, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1, 1))


def smap_variables(table: LocTable, meta: ExportMeta, name: str) -> dict[str, Any]:
    """The MATLAB variables of an ``_sml.mat`` export (``saveloc``, ``fileformat``)."""
    px, py = (float(v) for v in meta.pixel_size_nm)
    h, w = meta.image_shape
    n = table.n
    locprec = np.sqrt(0.5 * (table.crlb_x_nm**2 + table.crlb_y_nm**2))
    dropped = int(np.count_nonzero(~(locprec <= SMAP_MAX_LOCPREC_NM)))
    loc = {
        "xnm": _col(table.x * px, np.float32),
        "ynm": _col(table.y * py, np.float32),
        "znm": _col(table.z_um * 1000.0, np.float32),
        "phot": _col(table.phot, np.float32),
        "bg": _col(np.full(n, meta.background_photons), np.float32),
        "frame": _col(table.frame + 1, np.float64),
        "locprecnm": _col(locprec, np.float32),
        "xerr": _col(table.crlb_x_nm, np.float32),
        "yerr": _col(table.crlb_y_nm, np.float32),
        "PSFxnm": _col(table.sigma_x_nm, np.float32),
        "PSFynm": _col(table.sigma_y_nm, np.float32),
        "filenumber": _col(np.ones(n), np.uint16),
        "channel": _col(np.zeros(n), np.float32),
        "id": _col(table.id, np.int32),
    }
    info = {
        "Width": float(w),
        "Height": float(h),
        "roi": np.array([[0.0, 0.0, float(w), float(h)]]),
        "cam_pixelsize_um": np.array([[px / 1000.0, py / 1000.0]]),
        "numberOfFrames": float(meta.frames),
        "EMon": float(meta.camera == "emccd"),
        "dropped_by_smap": float(dropped),
        "z2t": json.dumps(
            {
                **meta.describe(),
                "origin": "pixel centres at integer px, 0-based, ROI coordinates: xnm = x_px * pixel_size_nm_x",
                "frame": "1-based",
                "z": "nm; 0 = focal plane; positive = away from the coverslip",
            },
            sort_keys=True,
        ),
    }
    empty = np.zeros((0, 0))
    file = {
        "name": name,
        "number": 1.0,
        "numberOfTif": 0.0,
        "info": info,
        "tif": {"image": empty, "info": empty},
        "average": empty,
    }
    return {"saveloc": {"loc": loc, "file": file}, "fileformat": {"name": "sml"}}


def write_smap(path: Path, table: LocTable, meta: ExportMeta) -> tuple[Path, ...]:
    """Write the ``_sml.mat`` file ``path`` atomically, byte-identical for the same input."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, smap_variables(table, meta, path.name), do_compression=True, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER[:116].ljust(116, b" ")  # savemat's text holds the creation date
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(bytes(data))
    return (path,)


EXPORTER = Exporter(
    name="smap",
    tool="SMAP (MATLAB): File > Load (Loader_sml: any _sml.mat)",
    suffix="_sml.mat",
    companions=(),
    writes="MATLAB 5 _sml.mat: saveloc.loc (xnm, ynm, znm, phot, bg, frame, locprecnm, ...), saveloc.file.info, "
    "fileformat",
    conventions="pixel centres at integer px times the pitch, 0-based (xnm = x_px * px); x = column; nm; frames "
    "1-based; cam_pixelsize_um [x y] (anisotropic pixels exact); SMAP drops locprecnm > 250 nm",
    store=write_smap,
)
