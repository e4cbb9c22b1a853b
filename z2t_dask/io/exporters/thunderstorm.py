"""ThunderSTORM (Fiji plugin): ground truth as the CSV its "Import results" reads.

File ``<name>_thunderstorm.csv``: a header of quoted ``"name [unit]"`` labels, then one row per record,
comma-separated, ordered by frame then emitter::

    "id","frame","x [nm]","y [nm]","z [nm]","sigma1 [nm]","sigma2 [nm]","intensity [photon]",
    "offset [photon]","bkgstd [photon]","uncertainty [nm]","uncertainty_xy [nm]","emitter"

Conventions (ThunderSTORM's own, from its source: ``MultipleLocationsImageFitting`` adds ``+ 0.5`` to
the fitted pixel position, and ``DLMImportExport`` adds ``startingFrame - 1`` to ``frame``):

- **origin** the image corner: the centre of pixel ``(r, c)`` is at ``x = (c + 0.5) · px``,
  ``y = (r + 0.5) · py`` nm, i.e. ``x_nm = (x_px + 0.5) · pixel_size_nm_x`` (and y with its own pitch);
- **axes** x = column, y = row (as the image is displayed in Fiji);
- **units** nm for x, y, z, sigma and uncertainty; photons for intensity, offset and bkgstd;
  ``z [nm]`` = z µm x 1000 with z2t's sign (0 = focal plane, positive away from the coverslip);
- **frames** 1-based (``frame = frame_ix + 1``); ``id`` is the 1-based row number (ThunderSTORM
  renumbers it on import); ``emitter`` the ground-truth emitter id;
- ``intensity`` the record's photons in that frame (at the camera), ``offset`` the background photons
  per pixel, ``bkgstd`` its Poisson s.d. ``sqrt(offset)``; ``sigma1``/``sigma2`` the effective Gaussian
  PSF width along x/y; ``uncertainty`` and ``uncertainty_xy`` (the name of newer ThunderSTORM builds and
  of Picasso's ``import_ts``) both ``sqrt((crlb_x² + crlb_y²)/2)``, the Cramér–Rao bound;
- **anisotropic pixels**: x and y are converted with their own pitch, so the nm values are exact.
  ThunderSTORM's camera setup holds one pixel size: set it to ``pixel_size_nm_x``; its own nm → px
  conversions of y are then off by ``py / px`` (the file's nm values are not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from z2t_dask.io.atomic import atomic_path
from z2t_dask.io.exporters.common import ExportMeta, LocTable, number_text
from z2t_dask.io.exporters.registry import Exporter

__all__ = ["COLUMNS", "EXPORTER", "write_thunderstorm"]

#: The header labels, in order (written quoted).
COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "z [nm]",
    "sigma1 [nm]",
    "sigma2 [nm]",
    "intensity [photon]",
    "offset [photon]",
    "bkgstd [photon]",
    "uncertainty [nm]",
    "uncertainty_xy [nm]",
    "emitter",
)


def write_thunderstorm(path: Path, table: LocTable, meta: ExportMeta) -> tuple[Path, ...]:
    """Write the ThunderSTORM CSV ``path`` atomically (see the module notes for the conventions)."""
    px, py = (float(v) for v in meta.pixel_size_nm)
    n = table.n
    bg = float(meta.background_photons)
    uncertainty = np.sqrt(0.5 * (table.crlb_x_nm**2 + table.crlb_y_nm**2))
    columns = [
        [str(i) for i in range(1, n + 1)],
        (table.frame + 1).astype(str).tolist(),
        number_text((table.x + 0.5) * px),
        number_text((table.y + 0.5) * py),
        number_text(table.z_um * 1000.0),
        number_text(table.sigma_x_nm),
        number_text(table.sigma_y_nm),
        number_text(table.phot),
        number_text(np.full(n, bg)),
        number_text(np.full(n, np.sqrt(bg))),
        number_text(uncertainty),
        number_text(uncertainty),
        table.id.astype(str).tolist(),
    ]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(f'"{c}"' for c in COLUMNS) + "\n")
        fh.writelines(",".join(row) + "\n" for row in zip(*columns))
    return (path,)


EXPORTER = Exporter(
    name="thunderstorm",
    tool="ThunderSTORM (Fiji): Plugins > ThunderSTORM > Import/Export > Import results (CSV)",
    suffix="_thunderstorm.csv",
    companions=(),
    writes='CSV with quoted "name [unit]" headers: frame, x/y/z nm, sigma, intensity, offset, bkgstd, uncertainty',
    conventions="origin the image corner (pixel (r, c) centre at ((c + 0.5) px, (r + 0.5) py) nm); x = column; "
    "nm and photons; frames 1-based; nm exact per axis (ThunderSTORM's single pixel size: use the x pitch)",
    store=write_thunderstorm,
)
