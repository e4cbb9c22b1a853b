"""DECODE: ground truth as ``EmitterSet`` files, HDF5 (``emitter_io.save_h5`` layout) and its CSV.

Files ``<name>_decode.h5`` and ``<name>_decode.csv`` (same records, ordered by frame then emitter):

- HDF5, as DECODE's ``decode.utils.emitter_io.save_h5`` writes it and ``load_h5`` /
  ``EmitterSet.load`` read it: group ``data`` with exactly the ``EmitterSet`` arguments — ``xyz``
  (N, 3) float32, ``xyz_cr`` (N, 3) float32 (Cramér–Rao *variance*: px² for x and y, NaN for z),
  ``phot``, ``frame_ix`` int64, ``id`` int64, ``prob`` (1), ``bg`` (background photons per px), and
  ``xyz_sig``, ``phot_cr``, ``phot_sig``, ``bg_cr``, ``bg_sig`` as empty datasets (DECODE's "all NaN");
  group ``meta`` with attributes ``xy_unit = "px"`` and ``px_size`` (2,) float32 nm; group ``decode``
  with ``version`` (z2t's) and ``z2t`` (JSON: conventions and the inputs of the bound). Nothing else
  is under ``data`` or ``meta``: ``EmitterSet.load`` passes every key of both to ``EmitterSet(...)``.
- CSV, as ``emitter_io.save_csv`` writes it and ``load_csv`` (default mapping) reads it: three comment
  rows (``# DECODE EmitterSet``, ``# {decode meta JSON}``, ``# {"xy_unit": "px", "px_size": [...]}``),
  then a header ``x,y,z,phot,frame_ix,id,prob,bg,phot_cr,bg_cr,phot_sig,bg_sig,x_cr,y_cr,z_cr,x_sig,
  y_sig,z_sig`` (empty fields are NaN).

Conventions (DECODE's: frames are tensors ``(N, H, W)`` indexed ``frame[n, x_ix, y_ix]`` and
``frame_extent`` is ``[-0.5, size - 0.5]``):

- **axis order swapped**: DECODE's x indexes image *rows*, so DECODE ``x`` = z2t ``y`` (row) and
  DECODE ``y`` = z2t ``x`` (column); ``px_size`` is given in DECODE's order ``[pixel_size_nm_y,
  pixel_size_nm_x]``, and ``xyz_cr`` likewise;
- **origin** pixel centres at integers (pixel index ``i`` spans ``[i - 0.5, i + 0.5)``): no shift;
- **units** x, y in px (``xy_unit = "px"``), z in nm (z µm x 1000, z2t's sign: positive away from the
  coverslip), photons at the camera;
- **frames** 0-based (``frame_ix``);
- **anisotropic pixels**: positions are in px of each axis and ``px_size`` holds both pitches, so
  DECODE's ``xyz_nm`` is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from z2t_dask import __version__
from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.exporters.common import ExportMeta, LocTable, number_text
from z2t_dask.io.exporters.registry import Exporter

__all__ = ["CSV_COLUMNS", "EXPORTER", "decode_columns", "write_decode"]

#: Header of the DECODE CSV (the order ``emitter_io.save_csv`` writes).
CSV_COLUMNS = (
    "x",
    "y",
    "z",
    "phot",
    "frame_ix",
    "id",
    "prob",
    "bg",
    "phot_cr",
    "bg_cr",
    "phot_sig",
    "bg_sig",
    "x_cr",
    "y_cr",
    "z_cr",
    "x_sig",
    "y_sig",
    "z_sig",
)
#: Datasets of ``data`` that DECODE stores empty when all NaN (nothing to say about them here).
_EMPTY = ("xyz_sig", "phot_cr", "phot_sig", "bg_cr", "bg_sig")


def decode_columns(table: LocTable, meta: ExportMeta) -> dict[str, np.ndarray]:
    """The export's columns in DECODE's axes and units (x = row px, y = column px, z nm; variances px²)."""
    px, py = (float(v) for v in meta.pixel_size_nm)
    n = table.n
    return {
        "xyz": np.stack([table.y, table.x, table.z_um * 1000.0], axis=1).astype(np.float32),
        "xyz_cr": np.stack(
            [(table.crlb_y_nm / py) ** 2, (table.crlb_x_nm / px) ** 2, np.full(n, np.nan)], axis=1
        ).astype(np.float32),
        "phot": table.phot.astype(np.float32),
        "frame_ix": table.frame.astype(np.int64),
        "id": table.id.astype(np.int64),
        "prob": np.ones(n, np.float32),
        "bg": np.full(n, meta.background_photons, np.float32),
    }


def _meta(meta: ExportMeta) -> tuple[dict, dict]:
    """``(emitter meta, decode meta)`` as DECODE stores them (emitter meta: only what EmitterSet accepts)."""
    px, py = (float(v) for v in meta.pixel_size_nm)
    em = {"xy_unit": "px", "px_size": [py, px]}
    info = {
        **meta.describe(),
        "axes": "DECODE x = z2t y (image row), DECODE y = z2t x (column); px_size = [y pitch, x pitch] nm",
        "origin": "pixel centres at integer px (frame extent [-0.5, size - 0.5])",
        "z": "nm; 0 = focal plane; positive = away from the coverslip",
        "xyz_cr": "Cramer-Rao variance: px^2 for x and y, NaN for z",
    }
    return em, {"version": f"z2t-dask {__version__}", "z2t": json.dumps(info, sort_keys=True)}


def _write_h5(path: Path, cols: dict[str, np.ndarray], em: dict, dec: dict) -> None:
    import h5py

    from z2t_dask.io.h5files import create_group, h5_writer

    with atomic_path(path) as tmp, h5_writer(tmp) as f:
        m = create_group(f, "meta")
        m.attrs["xy_unit"] = em["xy_unit"]
        m.attrs["px_size"] = np.asarray(em["px_size"], np.float32)
        d = create_group(f, "decode")
        for k, v in dec.items():
            d.attrs[k] = v
        g = create_group(f, "data")
        for name in ("xyz", "xyz_sig", "xyz_cr", "phot", "phot_cr", "phot_sig", "frame_ix", "id", "prob"):
            if name in _EMPTY:
                g.create_dataset(name, data=h5py.Empty("f"), track_times=False)
            else:
                g.create_dataset(name, data=cols[name], track_times=False)
        g.create_dataset("bg", data=cols["bg"], track_times=False)
        for name in ("bg_cr", "bg_sig"):
            g.create_dataset(name, data=h5py.Empty("f"), track_times=False)


def _write_csv(path: Path, cols: dict[str, np.ndarray], em: dict, dec: dict) -> None:
    n = cols["xyz"].shape[0]
    blank = [""] * n
    text = {
        "x": number_text(cols["xyz"][:, 0]),
        "y": number_text(cols["xyz"][:, 1]),
        "z": number_text(cols["xyz"][:, 2]),
        "phot": number_text(cols["phot"]),
        "frame_ix": cols["frame_ix"].astype(str).tolist(),
        "id": cols["id"].astype(str).tolist(),
        "prob": number_text(cols["prob"]),
        "bg": number_text(cols["bg"]),
        "x_cr": number_text(cols["xyz_cr"][:, 0]),
        "y_cr": number_text(cols["xyz_cr"][:, 1]),
    }
    columns = [text.get(c, blank) for c in CSV_COLUMNS]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(f"# DECODE EmitterSet\n# {json.dumps(dec, sort_keys=True)}\n# {json.dumps(em)}\n")
        fh.write(",".join(CSV_COLUMNS) + "\n")
        fh.writelines(",".join(row) + "\n" for row in zip(*columns))


def write_decode(path: Path, table: LocTable, meta: ExportMeta) -> tuple[Path, ...]:
    """Write the DECODE HDF5 ``path`` and its CSV beside it (``.csv``), atomically."""
    cols = decode_columns(table, meta)
    em, dec = _meta(meta)
    csv = path.with_suffix(".csv")
    _write_csv(csv, cols, em, dec)
    _write_h5(path, cols, em, dec)
    return path, csv


EXPORTER = Exporter(
    name="decode",
    tool="DECODE: decode.generic.emitter.EmitterSet.load (.h5) / decode.utils.emitter_io.load_csv (.csv)",
    suffix="_decode.h5",
    companions=(".csv",),
    writes="HDF5 groups data / meta / decode (EmitterSet layout) and the 3-comment-row CSV",
    conventions="x/y swapped (DECODE x = image row); pixel centres at integer px; xy px, z nm; frames 0-based; "
    "px_size [y, x] nm (anisotropic pixels exact)",
    store=write_decode,
)
