"""What every exporter shares: the metadata of an export, the selected records and their Cramér–Rao bound.

An export is written from **records** (the per-frame ground truth: ``xyz`` (x, y camera px with pixel
``(r, c)`` centred at ``(y=r, x=c)``; z µm, positive away from the coverslip), ``phot``, ``frame_ix``
(0-based), ``id``, ``inside``) and an :class:`ExportMeta` (image, pixel size, camera, background and
PSF width): never from a sample object, so any caller (a simulated sample, a sample folder, a file of
another tool) can export. :func:`prepare` selects the records (inside the image unless asked
otherwise), orders them by frame then emitter id, and computes each one's Cramér–Rao bound
(:func:`z2t_dask.physics.crlb.crlb_xy_nm`); the format modules only convert units and axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z2t_dask.physics.crlb import crlb_xy_nm
from z2t_dask.physics.emitters import Records

__all__ = ["ExportMeta", "LocTable", "number_text", "prepare"]


@dataclass(frozen=True)
class ExportMeta:
    """Everything an exporter needs besides the records.

    Attributes
    ----------
    image_shape : (int, int)
        ``(height, width)`` of the frames in camera pixels (the ROI).
    frames : int
        Number of frames ``T`` (frame indices 0..T-1).
    pixel_size_nm : (float, float)
        Camera pixel pitch ``(x, y)`` in nm (object plane).
    background_photons : float
        Background photons per pixel per frame reaching the camera (``background.photons``).
    qe : float
        Quantum efficiency: detected photons = ``qe`` x photons (1 for cameras without one).
    excess_noise : float
        F² of the camera (2 for an EMCCD at high gain, 1 otherwise;
        :func:`~z2t_dask.physics.crlb.excess_noise_factor`).
    readout_variance : float
        Read-noise variance per pixel in photo-electrons², referred to the camera input (sCMOS:
        variance / gain², EMCCD: (read noise / EM gain)², original model: its read noise²).
    camera : str
        ``camera.model`` (``"emccd"``, ``"scmos"``, ...), for the files' metadata.
    sigma_z_um, sigma_x_nm, sigma_y_nm : tuple of float
        Effective Gaussian PSF width along x and y (nm) tabulated at ``sigma_z_um`` (µm, increasing),
        linearly interpolated at each record's z and held constant beyond the table; one entry for a
        constant width.
    sigma_source : str
        How the width was obtained (stored with the export).
    provenance : dict
        JSON-able facts stored in each file's metadata (seed, package version, sample name, ...).
    """

    image_shape: tuple[int, int]
    frames: int
    pixel_size_nm: tuple[float, float]
    background_photons: float
    qe: float = 1.0
    excess_noise: float = 1.0
    readout_variance: float = 0.0
    camera: str = "ideal"
    sigma_z_um: tuple[float, ...] = (0.0,)
    sigma_x_nm: tuple[float, ...] = (100.0,)
    sigma_y_nm: tuple[float, ...] = (100.0,)
    sigma_source: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_shape)
        px, py = (float(v) for v in self.pixel_size_nm)
        if h < 1 or w < 1 or self.frames < 1 or not (px > 0 and py > 0):
            raise ValueError(f"ExportMeta: bad image {self.image_shape}, frames {self.frames} or pixel size")
        n = len(self.sigma_z_um)
        if n < 1 or len(self.sigma_x_nm) != n or len(self.sigma_y_nm) != n:
            raise ValueError("ExportMeta: sigma_z_um, sigma_x_nm and sigma_y_nm must have the same length >= 1")

    def sigma_nm(self, z_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian PSF width ``(sigma_x, sigma_y)`` in nm at each z (µm)."""
        z = np.asarray(z_um, dtype=np.float64)
        zs = np.asarray(self.sigma_z_um, dtype=np.float64)
        sx = np.interp(z, zs, np.asarray(self.sigma_x_nm, dtype=np.float64))
        sy = np.interp(z, zs, np.asarray(self.sigma_y_nm, dtype=np.float64))
        return sx, sy

    def describe(self) -> dict[str, Any]:
        """The export's conventions and inputs of the bound, JSON-able (written into each file)."""
        return {
            "image_shape_hw": [int(v) for v in self.image_shape],
            "frames": int(self.frames),
            "pixel_size_nm_xy": [float(v) for v in self.pixel_size_nm],
            "camera": self.camera,
            "background_photons_per_px": float(self.background_photons),
            "qe": float(self.qe),
            "excess_noise_F2": float(self.excess_noise),
            "readout_variance_e2": float(self.readout_variance),
            "psf_sigma": self.sigma_source,
            "precision": "Cramer-Rao bound, Mortensen et al. 2010 Eq. 5 (z2t_dask.physics.crlb)",
            **self.provenance,
        }


@dataclass(frozen=True)
class LocTable:
    """Selected records in the package's convention, with their bound; every column has ``n`` rows.

    ``x``, ``y`` camera px (pixel ``(r, c)`` centred at ``(y=r, x=c)``), ``z_um`` µm, ``phot`` photons,
    ``frame`` 0-based, ``id`` emitter id, ``inside`` bool, ``sigma_x_nm``/``sigma_y_nm`` PSF width (nm),
    ``crlb_x_nm``/``crlb_y_nm`` Cramér–Rao bound (nm), ``dropped_outside`` records left out.
    """

    x: np.ndarray
    y: np.ndarray
    z_um: np.ndarray
    phot: np.ndarray
    frame: np.ndarray
    id: np.ndarray
    inside: np.ndarray
    sigma_x_nm: np.ndarray
    sigma_y_nm: np.ndarray
    crlb_x_nm: np.ndarray
    crlb_y_nm: np.ndarray
    dropped_outside: int

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def _column(records: Mapping[str, Any] | Records, key: str) -> np.ndarray:
    try:
        return np.asarray(records[key])
    except KeyError:
        raise ValueError(f"records/{key} is missing (required: xyz, phot, frame_ix, id)") from None


def prepare(records: Mapping[str, Any] | Records, meta: ExportMeta, *, include_outside: bool = False) -> LocTable:
    """Select, order and annotate records for an export.

    Parameters
    ----------
    records : mapping
        ``xyz`` (M, 3), ``phot`` (M,), ``frame_ix`` (M,), ``id`` (M,), optional ``inside`` (M,) bool
        (default: computed from ``meta.image_shape``, ``-0.5 <= x < W - 0.5`` and the same for y).
    meta : ExportMeta
        Image, camera and PSF width.
    include_outside : bool
        Keep the records whose emitter centre lies outside the image (they light its edge).

    Returns
    -------
    LocTable
        Ordered by frame, then emitter id, then the records' own order.
    """
    xyz = _column(records, "xyz")
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"records/xyz must have shape (M, 3), got {xyz.shape}")
    m = xyz.shape[0]
    phot, frame, ids = (_column(records, k) for k in ("phot", "frame_ix", "id"))
    for name, arr in (("phot", phot), ("frame_ix", frame), ("id", ids)):
        if arr.shape != (m,):
            raise ValueError(f"records/{name} must have shape ({m},), got {arr.shape}")
    x, y, z = (xyz[:, i].astype(np.float64) for i in range(3))
    if "inside" in records:
        inside = np.asarray(records["inside"], dtype=bool)
    else:
        h, w = meta.image_shape
        inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    keep = np.ones(m, bool) if include_outside else inside
    order = np.flatnonzero(keep)
    order = order[np.lexsort((order, ids[order], frame[order]))]
    x, y, z, inside = x[order], y[order], z[order], inside[order]
    phot = phot[order].astype(np.float64)
    sx, sy = meta.sigma_nm(z)
    cx, cy = crlb_xy_nm(
        meta.qe * phot,
        meta.qe * meta.background_photons,
        (sx, sy),
        meta.pixel_size_nm,
        excess_noise=meta.excess_noise,
        readout_variance=meta.readout_variance,
    )
    return LocTable(
        x=x,
        y=y,
        z_um=z,
        phot=phot,
        frame=frame[order].astype(np.int64),
        id=ids[order].astype(np.int64),
        inside=inside,
        sigma_x_nm=sx,
        sigma_y_nm=sy,
        crlb_x_nm=cx,
        crlb_y_nm=cy,
        dropped_outside=int(m - order.size),
    )


def number_text(values: np.ndarray) -> list[str]:
    """Shortest round-trip decimal text of float64 values (``NaN`` / ``Infinity`` spelled as Java parses them)."""
    out = np.asarray(values, dtype=np.float64).astype(str).tolist()
    return [{"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(v, v) for v in out]
