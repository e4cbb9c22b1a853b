"""The exporter registry: one :class:`Exporter` entry per SMLM tool, as the stack-format registry has per format.

An entry knows the tool it writes for, the file name endings it writes, what each file holds and its
conventions (origin, axis order, units, frame base, anisotropic pixels), and a ``store`` function
taking the prepared records (:class:`~z2t_dask.io.exporters.common.LocTable`) and the export's
:class:`~z2t_dask.io.exporters.common.ExportMeta` — never a sample. Everything that exports asks the
registry (:func:`get_exporter`): ``Sample.export``, ``output.exports`` in ``Sample.save`` and
``z2t export``. Adding a tool is adding one entry (:func:`register_exporter`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from z2t_dask.errors import FormatError
from z2t_dask.io.exporters.common import ExportMeta, LocTable, prepare
from z2t_dask.physics.emitters import Records

__all__ = ["Exporter", "get_exporter", "register_exporter", "registered_exporters"]


@dataclass(frozen=True)
class Exporter:
    """One SMLM tool's ground-truth format.

    Attributes
    ----------
    name : str
        Registry name (``--to``, ``output.exports``, ``Sample.export(to=...)``).
    tool : str
        The tool and the loader that reads the files.
    suffix : str
        Ending of the main file in a sample folder: ``<sample name><suffix>``.
    companions : tuple of str
        Extensions of the files written beside the main one (its extension replaced), e.g. ``(".yaml",)``.
    writes : str
        One line: what the files hold.
    conventions : str
        Origin, axis order, units, frame base and what anisotropic pixels become.
    store : callable
        ``store(path, table, meta) -> tuple of Path``: writes the main file ``path`` and its companions,
        each atomically and byte-identically for the same input.
    """

    name: str
    tool: str
    suffix: str
    companions: tuple[str, ...]
    writes: str
    conventions: str
    store: Callable[[Path, LocTable, ExportMeta], tuple[Path, ...]]

    def filename(self, stem: str) -> str:
        """The main file of a sample folder called ``stem`` (``<stem><suffix>``)."""
        return f"{stem}{self.suffix}"

    def files(self, path: str | os.PathLike[str]) -> tuple[Path, ...]:
        """The main file ``path`` and the companions written beside it."""
        p = Path(path)
        return (p, *(p.with_suffix(ext) for ext in self.companions))

    def write(
        self,
        path: str | os.PathLike[str],
        records: Mapping[str, Any] | Records,
        meta: ExportMeta,
        *,
        include_outside: bool = False,
    ) -> tuple[Path, ...]:
        """Write ``records`` in this tool's format: the main file ``path`` and its companions.

        Parameters
        ----------
        path : path-like
            Main file (its folder must exist); companions go beside it (:meth:`files`).
        records : mapping
            ``xyz`` (x, y camera px, z µm), ``phot``, ``frame_ix`` (0-based), ``id``, ``inside``
            (e.g. :class:`~z2t_dask.physics.emitters.Records`).
        meta : ExportMeta
            Image, pixel size, camera, background and PSF width.
        include_outside : bool
            Keep records whose emitter lies outside the image (default: left out).

        Returns
        -------
        tuple of pathlib.Path
            The files written.

        Raises
        ------
        FormatError
            ``path`` is one of its own companions (e.g. a Picasso export named ``.yaml``).
        """
        files = self.files(path)
        if len(set(files)) != len(files):
            raise FormatError(
                f"{path}: the {self.name} export writes {', '.join(self.companions)} beside its main file; "
                f"give the main file another extension (e.g. {self.suffix})"
            )
        table = prepare(records, meta, include_outside=include_outside)
        return self.store(Path(path), table, meta)


_REGISTRY: dict[str, Exporter] = {}
_LOCK = threading.Lock()


def register_exporter(entry: Exporter, *, replace: bool = False) -> Exporter:
    """Add an exporter (its name becomes known to ``z2t export``, ``Sample.export``, ``output.exports``).

    Raises
    ------
    ValueError
        The name is taken (and ``replace`` is False).
    """
    with _LOCK:
        if _REGISTRY.get(entry.name) is entry:
            return entry
        if entry.name in _REGISTRY and not replace:
            raise ValueError(f"exporter {entry.name!r} is already registered")
        _REGISTRY[entry.name] = entry
    return entry


def registered_exporters() -> tuple[str, ...]:
    """Names of the registered exporters, in registration order."""
    return tuple(_REGISTRY)


def get_exporter(name: str | Exporter, key: str = "--to") -> Exporter:
    """The registry entry of an exporter name (case-insensitive).

    Raises
    ------
    FormatError
        Naming ``key``, the unknown name and the registered exporters.
    """
    if isinstance(name, Exporter):
        return name
    entry = _REGISTRY.get(str(name).lower().strip())
    if entry is None:
        raise FormatError(f"{key}: unknown export format {name!r}; use one of {', '.join(_REGISTRY)}")
    return entry
