"""``Sample.save`` to a URL (``s3://``, ``gs://``, ``memory://``, ``file://`` ...): see :mod:`z2t_dask.io.remote`.

The sample folder is written at its final prefix and committed by its marker
:data:`~z2t_dask.io.remote.SAMPLE_MARKER`, written last in one PUT:

1. an existing complete folder is refused (``FileExistsError``) unless ``overwrite``; then its
   marker is removed first, so from that moment the folder reads as incomplete;
2. leftovers of an interrupted write are cleared (an OME-Zarr image of the same content is kept
   and resumed block by block);
3. an OME-Zarr stack is written straight to the store (by the workers, with a Client); an
   OME-TIFF / HDF5 stack, ``emitters.h5`` and the exports are written in a local temporary
   folder and uploaded;
4. the marker (every file with its size and, for the uploaded ones, sha256) is written.

Why a marker and not "temporary prefix + copy": a store has no rename, a copy of many objects is no
more atomic than the upload itself and doubles its cost (and a whole zarr image would be copied);
one PUT is all or nothing. Readers (:func:`z2t_dask.tools.remote.open_remote_sample`) and batch
resume trust only a folder with its marker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from z2t_dask import __version__
from z2t_dask.io.remote import SAMPLE_MARKER, RemoteFolder, staging_dir, store_errors

if TYPE_CHECKING:
    from z2t_dask.sample.core import Sample

__all__ = ["save_to_url"]

log = logging.getLogger("z2t_dask")


def save_to_url(
    sample: Sample,
    url: str | RemoteFolder,
    *,
    format: str | None = None,
    compression: str | None = None,
    overwrite: bool = False,
    scheduler: Any = "auto",
    prefetch: int = 2,
    streaming: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write a sample folder at a URL (the steps of the module docstring); returns the URL.

    Parameters
    ----------
    sample
        The sample.
    url
        The folder, e.g. ``s3://bucket/run1/sample_001`` (its last component names the stack).
    format, compression, overwrite, scheduler, prefetch, streaming
        As :meth:`z2t_dask.sample.core.Sample.save`.
    storage_options
        File-system options (credentials, ``endpoint_url``), over ``$Z2T_STORAGE_OPTIONS`` and fsspec's
        defaults.

    Raises
    ------
    FileExistsError
        A complete folder (with its marker) is there and ``overwrite`` is False.
    RemoteStoreError
        The URL's file system is not installed or the URL is unusable.
    """
    from z2t_dask.io.formats import get_format

    entry = get_format(format or sample.config.output.format, "format")
    entry.check_compression(compression)
    folder = RemoteFolder(url, storage_options)
    with store_errors(folder.url):
        return _save(sample, folder, entry, compression, overwrite, scheduler, prefetch, streaming)


def _save(
    sample: Sample,
    folder: RemoteFolder,
    entry: Any,
    compression: str | None,
    overwrite: bool,
    scheduler: Any,
    prefetch: int,
    streaming: bool,
) -> str:
    from z2t_dask.sample.exports import write_exports
    from z2t_dask.sample.writing import write_ground_truth, write_stack

    marker = folder / SAMPLE_MARKER
    if marker.exists():
        if not overwrite:
            raise FileExistsError(f"{folder.url} already exists (pass overwrite=True to replace it)")
        marker.unlink(missing_ok=True)  # first: the folder reads as incomplete from here on
    stack_name = entry.filename(folder.name)
    direct = entry.name == "ome-zarr"
    removed = folder.rmtree(keep=(stack_name,) if direct else ())
    if removed:
        log.info("%s: cleared %d objects of an incomplete or replaced write", folder.url, removed)
    t0 = time.time()
    files: dict[str, dict[str, Any]] = {}
    with staging_dir() as tmp:
        stack: tuple[Path, str] | None = None
        if direct:
            _write_zarr(sample, folder / stack_name, compression, scheduler)
        else:
            path = write_stack(
                sample,
                Path(tmp) / stack_name,
                format=entry.name,
                compression=compression,
                scheduler=scheduler,
                prefetch=prefetch,
                streaming=streaming,
            )
            stack = (Path(path), entry.name)
        write_ground_truth(sample, Path(tmp), stack=stack)  # frames_in_h5 with a zarr on the store: rendered again
        write_exports(sample, Path(tmp), folder.name)
        files.update(folder.upload(tmp))
    if direct:
        files.update({f"{stack_name}/{rel}": {"bytes": n} for rel, n in (folder / stack_name).listing().items()})
    (folder / SAMPLE_MARKER).write_json(
        {
            "stack": stack_name,
            "format": entry.name,
            "files": files,
            "seed": int(sample.seed),
            "z2t_version": __version__,
            "seconds": round(time.time() - t0, 3),
        }
    )
    log.info("wrote %s", folder.url)
    return folder.url


def _write_zarr(sample: Sample, image: RemoteFolder, compression: str | None, scheduler: Any) -> None:
    """The OME-Zarr stack straight to the store, with the options :func:`~z2t_dask.sample.writing.write_stack`
    gives a local one (same bytes)."""
    from z2t_dask.engine.streaming import resolve_scheduler
    from z2t_dask.io.formats import get_format
    from z2t_dask.io.remote_zarr import write_ome_zarr_url
    from z2t_dask.sample.writing import _format_options, _pixel_size, _release_hook, _units

    comp, options = _format_options(sample, get_format("ome-zarr", "format"), compression)
    report = write_ome_zarr_url(
        image,
        sample.frames,
        pixel_size_nm=_pixel_size(sample),
        zarr_format=options.get("zarr_format", 3),
        compression=comp,
        attrs={**sample.attrs(), "units": _units(sample)},
        fingerprint=options.get("fingerprint"),
        scheduler=resolve_scheduler(scheduler),
        between_batches=_release_hook(sample),
    )
    log.info("%s: %d blocks written, %d already there", image.url, report.blocks_written, report.blocks_skipped)
