"""Reading outputs on a store: ``open_sample("s3://...")`` and ``z2t inspect s3://...`` (see :mod:`z2t_dask.io.remote`).

A sample folder on a store is read only when complete (its marker ``z2t_sample.json``, or a batch
job's ``z2t_job.json``, exists). An OME-Zarr stack is read lazily from the store (chunks fetched
when computed); an OME-TIFF / HDF5 stack and ``emitters.h5`` are copied once into the local read
cache (``$Z2T_CACHE_DIR``, else ``~/.cache/z2t``; reused while their sha256 matches the marker) and
opened from there. A batch on a store is summarised from its mirrored ``manifest.json`` and one
listing of its job markers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from z2t_dask.errors import FormatError, InspectError, RemoteStoreError
from z2t_dask.io.remote import SAMPLE_MARKER, RemoteFolder, check_remote_files, is_url, local_copy, store_errors
from z2t_dask.tools.results import SampleFolder, open_sample, stack_format

__all__ = ["RemoteSampleFolder", "is_url", "open_remote_sample", "summarize_url"]

#: A batch job's marker (:data:`z2t_dask.batch.jobs.JOB_MARKER`; tools may import batch, kept literal here).
_JOB_MARKER = "z2t_job.json"


@dataclass
class RemoteSampleFolder(SampleFolder):
    """A sample folder on a store (:class:`SampleFolder` with its URL and marker).

    ``path`` is the local copy in the read cache (the truth, and the stack unless it is an
    OME-Zarr read from the store); ``url`` the folder on the store.
    """

    url: str = ""
    image: RemoteFolder | None = None
    marker: dict | None = None

    @cached_property
    def frames(self) -> Any:
        if self.image is None:
            return super().frames
        from z2t_dask.io.remote_zarr import read_ome_zarr_url

        return read_ome_zarr_url(self.image)

    @cached_property
    def stack_info(self) -> Any:
        if self.image is None:
            return super().stack_info
        from z2t_dask.io.remote_zarr import remote_zarr_info

        return remote_zarr_info(self.image)


def _marker(folder: RemoteFolder) -> dict:
    """The folder's sample marker (or the job marker's outputs), refusing an incomplete folder."""
    doc = (folder / SAMPLE_MARKER).read_json()
    if doc is not None:
        return doc
    job = (folder / _JOB_MARKER).read_json()
    if job is not None and isinstance(job.get("outputs"), Mapping):
        inner = (folder / str(job.get("sample_marker", SAMPLE_MARKER))).read_json()
        if inner is not None:
            return inner
    if not folder.exists():
        raise FileNotFoundError(f"sample folder not found: {folder.url}")
    raise RemoteStoreError(
        f"{folder.url}: no {SAMPLE_MARKER} (the marker a complete sample folder on a store is written with, "
        "last): an interrupted write; write it again (the rerun of a batch redoes it)"
    )


def open_remote_sample(url: str | RemoteFolder, storage_options: Mapping[str, Any] | None = None) -> SampleFolder:
    """Open a complete sample folder on a store lazily (see the module docstring).

    Raises
    ------
    FileNotFoundError
        Nothing at ``url``.
    RemoteStoreError
        The folder has no marker (an interrupted write), a cached file's sha256 differs from the
        marker, or the URL's file system is not installed.
    """
    folder = RemoteFolder(url, storage_options)
    with store_errors(folder.url):
        return _open(folder)


def _open(folder: RemoteFolder) -> SampleFolder:
    marker = _marker(folder)
    raw = marker.get("files")
    files: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    stack = marker.get("stack") if isinstance(marker.get("stack"), str) else None
    fmt = marker.get("format") if isinstance(marker.get("format"), str) else None
    direct = fmt == "ome-zarr" and stack is not None
    local = local_copy(folder, files, skip=(stack,) if direct and stack else ())
    if not direct:
        base = open_sample(local)
        return RemoteSampleFolder(
            path=base.path, stack=base.stack, format=base.format, truth=base.truth, url=folder.url, marker=marker
        )
    from z2t_dask.io.emitters_h5 import read_emitters_h5

    truth = read_emitters_h5(local / "emitters.h5") if (local / "emitters.h5").is_file() else None
    return RemoteSampleFolder(
        path=local,
        stack=local / str(stack),
        format=stack_format(str(stack)),
        truth=truth,
        url=folder.url,
        image=folder / str(stack),
        marker=marker,
    )


def summarize_url(url: str, *, verify: bool = False, storage_options: Mapping[str, Any] | None = None) -> dict:
    """``z2t inspect`` of a URL: a sample folder (its marker) or a batch (its mirrored ``manifest.json``).

    Raises
    ------
    FileNotFoundError
        Nothing at the URL.
    InspectError
        Neither a complete sample folder nor a batch.
    """
    folder = RemoteFolder(url, storage_options)
    with store_errors(folder.url):
        return _summarize(folder, verify)


def _summarize(folder: RemoteFolder, verify: bool) -> dict:
    if (folder / SAMPLE_MARKER).exists() or (folder / _JOB_MARKER).exists():
        return _summarize_remote_sample(folder, verify)
    if (folder / "manifest.json").exists():
        return _summarize_remote_batch(folder, verify)
    if not folder.exists():
        raise FileNotFoundError(f"not found: {folder.url}")
    raise InspectError(
        f"{folder.url}: neither a complete sample folder ({SAMPLE_MARKER}) nor a batch (manifest.json); "
        "an interrupted write has no marker yet"
    )


def _summarize_remote_sample(folder: RemoteFolder, verify: bool) -> dict[str, Any]:
    from z2t_dask.tools.summary import _add_snr, _attrs_info, _package_version, pixel_stats, truth_stats

    s = open_remote_sample(folder)
    assert isinstance(s, RemoteSampleFolder)
    marker = s.marker or {}
    listing = folder.listing()
    info: dict[str, Any] = {"kind": "sample", "path": folder.url, "cache": str(s.path)}
    frames = None
    if s.stack is not None:
        arr = s.frames
        name = str(marker.get("stack", s.stack.name))
        size = sum(n for rel, n in listing.items() if rel == name or rel.startswith(name + "/"))
        raw = int(arr.size) * arr.dtype.itemsize
        info["stack"] = {
            "path": f"{folder.url}/{name}",
            "format": s.format,
            "shape": [int(v) for v in arr.shape],
            "dtype": str(arr.dtype),
            "chunks": [int(c[0]) for c in arr.chunks],
            "bytes": size,
            "raw_bytes": raw,
            "compression_ratio": round(raw / size, 2) if size else None,
            "pixels": pixel_stats(arr),
        }
        frames = info["stack"]["shape"][0]
        info["frames"], info["height"], info["width"] = info["stack"]["shape"]
        info["dtype"] = info["stack"]["dtype"]
    if s.truth is not None:
        info.update(_attrs_info(s.truth.attrs))
        if frames is None and info.get("config"):
            frames = info["config"]["emitters"]["frames"]
        info["truth"] = truth_stats(s.records, frames)
        info["truth"]["emitters"] = int(len(s.truth.emitters["xyz"]))
    _add_snr(info)
    tops: dict[str, int] = {}
    for rel, n in listing.items():
        top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
        if not top.startswith("."):
            tops[top] = tops.get(top, 0) + n
    info["files"] = [{"name": k, "bytes": v} for k, v in sorted(tops.items())]
    info["bytes"] = sum(tops.values())
    job = (folder / _JOB_MARKER).read_json()
    if job is not None:
        info["job"] = {k: job.get(k) for k in ("key", "name", "seconds", "attempt", "host")}
    if verify:
        recorded = marker.get("files") or {}
        damaged = check_remote_files(folder, recorded, full=True)
        info["verify"] = {"files_verified": len(recorded), "jobs_verified": 1, "damaged": damaged, "ok": not damaged}
    info["package_version"] = _package_version()
    return info


def _summarize_remote_batch(folder: RemoteFolder, verify: bool) -> dict[str, Any]:
    from z2t_dask.tools.summary import _package_version

    try:
        manifest = (folder / "manifest.json").read_json() or {}
    except FormatError as exc:
        raise InspectError(str(exc)) from None
    raw = manifest.get("jobs")
    raw_jobs: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    listing = folder.listing()
    sizes, markers = _job_sizes(listing, raw_jobs)
    jobs: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    n_files = n_jobs = 0
    for name, j in sorted(raw_jobs.items(), key=lambda kv: (kv[1].get("index", 0), kv[0])):
        err = (j.get("error") or "").strip().splitlines()
        jobs[name] = {
            "state": j.get("state"),
            "attempts": j.get("attempts"),
            "seconds": j.get("seconds"),
            "seed": j.get("seed"),
            "key": j.get("key"),
            "params": j.get("params"),
            "frames": j.get("frames"),
            "records": j.get("records"),
            "error": err[-1] if err else None,
            "folder_exists": name in sizes,
            "marker": name in markers,
            "bytes": sizes.get(name, 0),
        }
        if verify and j.get("state") in ("done", "skipped"):
            outputs = j.get("outputs") if isinstance(j.get("outputs"), Mapping) else {}
            n_jobs, n_files = n_jobs + 1, n_files + len(outputs)
            problems += (
                check_remote_files(folder / name, outputs, full=True)
                if name in markers
                else [f"{folder.url}/{name}: no {_JOB_MARKER}"]
            )
    counts: dict[str, int] = {}
    for j in jobs.values():
        counts[str(j["state"])] = counts.get(str(j["state"]), 0) + 1
    info: dict[str, Any] = {
        "kind": "batch",
        "path": folder.url,
        "batch": manifest.get("batch", {}),
        "runs": len(manifest.get("runs", [])),
        "jobs_total": len(jobs),
        "states": counts,
        "jobs": jobs,
        "bytes": sum(listing.values()),
        "package_version": _package_version(),
    }
    if verify:
        info["verify"] = {"files_verified": n_files, "jobs_verified": n_jobs, "damaged": problems, "ok": not problems}
    return info


def _job_sizes(listing: Mapping[str, int], jobs: Mapping[str, Any]) -> tuple[dict[str, int], set[str]]:
    """Bytes under each job folder (a job name may hold ``/``: grid and shard folders) and the jobs with a marker."""
    sizes: dict[str, int] = {}
    markers: set[str] = set()
    for rel, n in listing.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            name = "/".join(parts[:i])
            if name in jobs:
                sizes[name] = sizes.get(name, 0) + n
                if i == len(parts) - 1 and parts[-1] == _JOB_MARKER:
                    markers.add(name)
                break
    return sizes, markers
