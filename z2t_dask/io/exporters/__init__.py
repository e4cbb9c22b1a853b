"""Ground truth in the formats SMLM tools load: one registry entry per tool.

===================  ===============================  ==================================================
exporter             files in a sample folder          read by
===================  ===============================  ==================================================
``"thunderstorm"``   ``<name>_thunderstorm.csv``       ThunderSTORM's Import results (and Picasso's import_ts)
``"decode"``         ``<name>_decode.h5`` + ``.csv``   DECODE's ``EmitterSet.load`` / ``emitter_io.load_csv``
``"picasso"``        ``<name>_locs.hdf5`` + ``.yaml``  Picasso's ``io.load_locs`` (Render, Filter, ...)
``"smap"``           ``<name>_sml.mat``                SMAP's ``Loader_sml`` (MATLAB)
===================  ===============================  ==================================================

Each module's docstring states its origin, axis order, units, frame base and what anisotropic pixels
become. Every export leaves out records whose emitter lies outside the image unless asked
(``include_outside=True``), and fills the tools' precision columns with each record's Cramér–Rao
bound (:mod:`z2t_dask.physics.crlb`).

>>> from z2t_dask.io.exporters import get_exporter, ExportMeta
>>> meta = ExportMeta(image_shape=(40, 40), frames=100, pixel_size_nm=(100.0, 100.0), background_photons=50.0)
>>> get_exporter("picasso").write("out/s_locs.hdf5", records, meta)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from z2t_dask.config.schema import EXPORT_FORMATS
from z2t_dask.io.exporters import decode, picasso, smap, thunderstorm
from z2t_dask.io.exporters.common import ExportMeta, LocTable, prepare
from z2t_dask.io.exporters.registry import Exporter, get_exporter, register_exporter, registered_exporters
from z2t_dask.physics.emitters import Records

__all__ = [
    "EXPORTERS",
    "ExportMeta",
    "Exporter",
    "LocTable",
    "export_records",
    "get_exporter",
    "prepare",
    "register_exporter",
    "registered_exporters",
]

for _module in (thunderstorm, decode, picasso, smap):
    register_exporter(_module.EXPORTER)

#: The built-in exporter names (``output.exports``, ``z2t export --to``, ``Sample.export(to=...)``).
EXPORTERS = EXPORT_FORMATS


def export_records(
    to: str,
    path: str | os.PathLike[str],
    records: Mapping[str, Any] | Records,
    meta: ExportMeta,
    *,
    include_outside: bool = False,
    key: str = "to",
) -> tuple[Path, ...]:
    """Write ``records`` for the tool ``to`` (main file ``path``, companions beside it); returns the files.

    Raises
    ------
    FormatError
        ``to`` is no registered exporter (the message names ``key`` and the exporters).
    """
    return get_exporter(to, key).write(path, records, meta, include_outside=include_outside)
