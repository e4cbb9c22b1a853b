"""``z2t export``: a sample folder's (or every finished job's) ground truth for an SMLM tool.

>>> from z2t_dask.tools.export import export_path
>>> export_path("output/sample_000", "picasso")          # doctest: +SKIP
[('sample_000', (PosixPath('output/sample_000/sample_000_locs.hdf5'), PosixPath('.../sample_000_locs.yaml')))]

A **sample folder** (``emitters.h5`` + its stack) is exported from its records, the config stored in
its ``emitters.h5`` (the original tool's files, which store none, get the built-in config's optics and
camera) and the image size and pixel size its stack declares. A **batch folder** (``manifest.json``)
is exported job by job: every finished job (state ``done`` or ``skipped``), one export each. Files go
into the sample folder (``<name>_<tool suffix>``) unless ``-o`` names another main file (a sample) or
folder (a sample or a batch). Formats, conventions and the Cramér–Rao precision columns:
:mod:`z2t_dask.io.exporters`. Files written into a finished job folder afterwards are not listed in its
marker (``output.exports`` in the batch config writes them inside the job, with checksums).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "export_folder", "export_path", "run"]

#: Job states whose folder is complete (see :mod:`z2t_dask.batch.manifest`).
FINISHED = ("done", "skipped")


def _exporter_name(text: str) -> str:
    """argparse ``type`` of ``--to``: a registered exporter (else argparse's error naming ``--to``, exit 2)."""
    from z2t_dask.errors import FormatError
    from z2t_dask.io.exporters import get_exporter

    try:
        return get_exporter(text, "--to").name
    except FormatError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--to: ")) from None


_exporter_name.__name__ = "export format"


def add_parser(sub: Any) -> None:
    """The ``export`` sub-command of ``z2t`` (called by :func:`z2t_dask.tools.cli.build_parser`)."""
    from z2t_dask.config.schema import EXPORT_FORMATS

    e = sub.add_parser(
        "export",
        help="write a sample folder's (or every finished job's) ground truth for ThunderSTORM, DECODE, Picasso or SMAP",
    )
    e.add_argument("path", help="sample folder (emitters.h5 + stack) or batch folder (manifest.json)")
    e.add_argument(
        "--to",
        required=True,
        type=_exporter_name,
        metavar="{" + ",".join(EXPORT_FORMATS) + "}",
        help="the tool: thunderstorm (CSV), decode (HDF5 + CSV), picasso (locs HDF5 + YAML), smap (_sml.mat)",
    )
    e.add_argument(
        "-o",
        "--output",
        default=None,
        help="main file (a sample) or folder (a sample or batch: <name><suffix> inside); default: in each sample "
        "folder",
    )
    e.add_argument("--include-outside", action="store_true", help="keep records whose emitter lies outside the image")


def _target(folder: Path, entry: Any, output: str | os.PathLike[str] | None, *, as_folder: bool) -> Path:
    """The main file of one export: in the sample folder, in the ``-o`` folder, or the ``-o`` file."""
    name = entry.filename(folder.name)
    if output is None:
        return folder / name
    out = Path(output)
    if as_folder or out.is_dir() or str(output).endswith(("/", os.sep)):
        out.mkdir(parents=True, exist_ok=True)
        return out / name
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def export_folder(
    folder: str | os.PathLike[str],
    to: str,
    output: str | os.PathLike[str] | None = None,
    *,
    include_outside: bool = False,
    output_is_folder: bool = False,
) -> tuple[Path, ...]:
    """Export one sample folder for the tool ``to``; returns the files written.

    Raises
    ------
    FileNotFoundError
        The folder has no ``emitters.h5`` (naming it).
    FormatError, ConfigError
        An unknown ``to``, or an ``emitters.h5`` whose stored config is not valid (naming the file).
    """
    from z2t_dask.config import load_config
    from z2t_dask.io.exporters import get_exporter
    from z2t_dask.sample.exports import export_meta
    from z2t_dask.sample.from_file import stored_config
    from z2t_dask.tools.results import open_sample

    entry = get_exporter(to, "--to")
    p = Path(folder)
    sample = open_sample(p)
    if sample.truth is None:
        raise FileNotFoundError(f"{p}: no emitters.h5 (the ground truth to export)")
    attrs = dict(sample.truth.attrs or {})
    cfg = stored_config(p / "emitters.h5", attrs) or load_config(None)
    shape = sample.image_shape
    frames = int(sample.frames.shape[0]) if sample.stack is not None else None
    seed = attrs.get("seed")
    provenance = {"sample": p.name, **({"seed": int(seed)} if isinstance(seed, (int, np.integer)) else {})}
    meta = export_meta(cfg, image_shape=shape, frames=frames, pixel_size_nm=sample.pixel_size_nm, provenance=provenance)
    target = _target(p, entry, output, as_folder=output_is_folder)
    return entry.write(target, sample.records, meta, include_outside=include_outside)


def export_path(
    path: str | os.PathLike[str],
    to: str,
    output: str | os.PathLike[str] | None = None,
    *,
    include_outside: bool = False,
) -> list[tuple[str, tuple[Path, ...]]]:
    """Export a sample folder, or each finished job of a batch folder; ``[(name, files), ...]``.

    Jobs that are not finished are left out (the CLI reports them).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        ``path`` is neither a sample folder (``emitters.h5``) nor a batch folder (``manifest.json``),
        or a batch has no finished job.
    """
    from z2t_dask.batch.manifest import MANIFEST, ordered_jobs, read_manifest
    from z2t_dask.errors import FormatError

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    if (p / MANIFEST).is_file():
        jobs = [(name, e) for name, e in ordered_jobs(read_manifest(p)) if e.get("state") in FINISHED]
        done = [(name, p / name) for name, _ in jobs if (p / name / "emitters.h5").is_file()]
        if not done:
            raise FormatError(f"{p}: no finished job to export (see z2t inspect {p})")
        opts = {"include_outside": include_outside, "output_is_folder": output is not None}
        return [(name, export_folder(folder, to, output, **opts)) for name, folder in done]
    if p.is_dir() and (p / "emitters.h5").is_file():
        return [(p.name, export_folder(p, to, output, include_outside=include_outside))]
    raise FormatError(f"{p}: not a sample folder (no emitters.h5) nor a batch folder (no {MANIFEST})")


def run(args: argparse.Namespace) -> int:
    """``z2t export``: write the exports and print each file; exit 0."""
    from z2t_dask.batch.manifest import MANIFEST, ordered_jobs, read_manifest

    done = export_path(args.path, args.to, args.output, include_outside=args.include_outside)
    for _, files in done:
        print("wrote " + ", ".join(str(f) for f in files))
    p = Path(args.path)
    if (p / MANIFEST).is_file():
        names = {name for name, _ in done}
        left = [name for name, _ in ordered_jobs(read_manifest(p)) if name not in names]
        if left:
            print(f"left out {len(left)} unfinished job(s): {', '.join(left[:10])}{' ...' if len(left) > 10 else ''}")
    return 0
