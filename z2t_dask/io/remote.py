"""Outputs on object stores and other fsspec file systems: ``s3://``, ``gs://``, ``memory://``, ``file://`` ...

A URL (``<protocol>://...``) is passed as is, never resolved against the current folder; a plain
path is made absolute on the client (:func:`resolve_output`). :class:`RemoteFolder` is a folder
(a key prefix) addressed by URL with the few operations the package needs (exists, read, write
one object, list, remove, upload a local folder, download into a local cache); it pickles as its
URL and storage options, so Dask workers open the same store.

Storage options (credentials, ``endpoint_url``, ...) come from fsspec's own defaults (for S3:
``AWS_*`` variables, ``~/.aws``, ``FSSPEC_S3_*``), then from the environment variable
``Z2T_STORAGE_OPTIONS`` (a JSON mapping), then from the caller (a batch config's
``storage_options``); later ones win.

Commit rule on stores without rename (S3, GCS): an output folder is complete when its marker
object, written last in one PUT (all or nothing), exists; a folder without its marker is
incomplete and is cleared and redone by the next write (:data:`SAMPLE_MARKER`; a batch job's
``z2t_job.json`` likewise). The files themselves are written straight at their final keys
(OME-Zarr chunks from the workers, see :mod:`z2t_dask.io.remote_zarr`) or written locally in a
temporary folder and uploaded (OME-TIFF, HDF5, ``emitters.h5``).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Container, Iterator, Mapping
from pathlib import Path
from typing import Any

from z2t_dask.errors import FormatError, RemoteStoreError, Z2TError

__all__ = [
    "SAMPLE_MARKER",
    "STORAGE_OPTIONS_ENV",
    "RemoteFolder",
    "cache_root",
    "check_remote_files",
    "env_storage_options",
    "is_url",
    "local_copy",
    "resolve_output",
    "staging_dir",
    "store_errors",
]

#: The marker of a complete sample folder on a store (written last): its files, sizes and sha256.
SAMPLE_MARKER = "z2t_sample.json"
#: Environment variable holding extra storage options as a JSON mapping.
STORAGE_OPTIONS_ENV = "Z2T_STORAGE_OPTIONS"
#: ``<protocol>://`` at the start of a URL (a Windows drive letter ``C:\\`` is no URL).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://b/p``, ``memory://p``, ``file:///p``), not a plain path."""
    return isinstance(path, (str, RemoteFolder)) and bool(_URL.match(str(path)))


def resolve_output(path: str | os.PathLike) -> str | Path:
    """A user's output location resolved on the client: a URL as is (no trailing ``/``), a path absolute."""
    if is_url(path):
        return str(path).rstrip("/")
    return Path(os.path.abspath(path))


#: Modules whose exceptions are failures of a store (credentials, network, bucket), not bugs of ours.
_STORE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "adlfs", "azure", "fsspec")


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """Turn a store's failure (no bucket, no credentials, unreachable endpoint, permission) into a
    :class:`RemoteStoreError` naming ``url``; errors of ours and messages already naming it pass."""
    try:
        yield
    except (Z2TError, FileExistsError):
        raise
    except Exception as exc:
        store = isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in _STORE_MODULES
        if not store or url in str(exc):
            raise
        raise RemoteStoreError(f"{url}: {type(exc).__name__}: {exc}") from exc


def env_storage_options() -> dict[str, Any]:
    """The storage options in ``$Z2T_STORAGE_OPTIONS`` (a JSON mapping; empty when unset).

    Raises
    ------
    RemoteStoreError
        When the variable is set but holds no JSON mapping.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise RemoteStoreError(f"${STORAGE_OPTIONS_ENV}: expected a JSON mapping of storage options ({exc})") from None
    if not isinstance(value, dict):
        raise RemoteStoreError(f"${STORAGE_OPTIONS_ENV}: expected a JSON mapping, got {type(value).__name__}")
    return value


class RemoteFolder:
    """A folder (key prefix) on an fsspec file system, addressed by URL.

    Parameters
    ----------
    url
        ``<protocol>://<bucket>/<prefix>`` (a trailing ``/`` is dropped).
    storage_options
        Options of the file system (merged over :func:`env_storage_options`).
    """

    url: str
    storage_options: dict[str, Any]

    def __init__(self, url: str | RemoteFolder, storage_options: Mapping[str, Any] | None = None):
        if isinstance(url, RemoteFolder):
            if not storage_options:  # the same folder: shares its file system and prefetched cache
                self.__dict__.update(url.__dict__)
                return
            storage_options = {**url.storage_options, **dict(storage_options)}
            url = url.url
        if not is_url(url):
            raise RemoteStoreError(f"{url!r}: not a URL (expected <protocol>://...)")
        self.url = str(url).rstrip("/")
        self.storage_options: dict[str, Any] = {**env_storage_options(), **dict(storage_options or {})}
        self._fs: Any = None
        self._cache: dict[str, Any] = {}  # shared with children: see prefetch()
        self._path = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteFolder({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFolder) and (self.url, self.storage_options) == (
            other.url,
            other.storage_options,
        )

    def __hash__(self) -> int:
        return hash(self.url)

    def __truediv__(self, rel: str) -> RemoteFolder:
        child = RemoteFolder.__new__(RemoteFolder)
        child.url, child.storage_options = f"{self.url}/{str(rel).strip('/')}", self.storage_options
        child._fs, child._path = self._fs, f"{self._path}/{str(rel).strip('/')}" if self._fs is not None else ""
        child._cache = self._cache
        return child

    @property
    def name(self) -> str:
        """The last component of the URL (the folder's name)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def protocol(self) -> str:
        m = _URL.match(self.url)
        return m.group(1) if m else ""

    def _connect(self) -> None:
        try:
            import fsspec.core
        except ImportError:
            raise RemoteStoreError(
                f"{self.url}: writing to URLs needs fsspec: pip install 'z2t-dask[remote]'"
            ) from None
        try:
            self._fs, self._path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except ImportError as exc:
            raise RemoteStoreError(
                f"{self.url}: the {self.protocol}:// file system is not installed ({exc}); "
                "pip install 'z2t-dask[remote]' (s3fs) or the fsspec package for it (gcsfs, adlfs, ...)"
            ) from None
        except ValueError as exc:
            raise RemoteStoreError(f"{self.url}: not a usable URL ({exc})") from None

    @property
    def fs(self) -> Any:
        """The fsspec file system (created on first use)."""
        if self._fs is None:
            self._connect()
        return self._fs

    @property
    def path(self) -> str:
        """The path of the folder within :attr:`fs` (``bucket/prefix``)."""
        if self._fs is None:
            self._connect()
        return self._path

    @property
    def is_local(self) -> bool:
        """Whether the file system is the local one (``file://``: renames exist)."""
        return "file" in _protocols(self.fs)

    def refresh(self) -> None:
        """Forget listings fsspec cached (objects written by other processes become visible)."""
        self.fs.invalidate_cache()

    def exists(self) -> bool:
        """Whether the object, or any object under the prefix, exists."""
        self.refresh()
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        self.refresh()
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        self.refresh()
        return bool(self.fs.isdir(self.path))

    def prefetch(self, names: tuple[str, ...]) -> int:
        """List the whole prefix once and fetch every object named in ``names`` concurrently (one
        batched ``cat``): until the next write through this folder or a child, :meth:`listing` and
        :meth:`read_bytes` of the folder and its children answer from memory (e.g. resuming a batch
        of 10⁵ jobs on a store reads its job markers in a few requests, not 2 per job).

        Returns the number of objects fetched.
        """
        listing = self.listing()
        wanted = [self.path + "/" + rel for rel in listing if rel.rsplit("/", 1)[-1] in names]
        blobs = self.fs.cat(wanted) if wanted else {}
        self._cache.clear()
        self._cache.update(
            {
                "root": self.path.rstrip("/") + "/",
                "listing": listing,
                "keys": sorted(listing),
                "names": set(names),
                "blobs": {_norm(k): v for k, v in blobs.items()},
            }
        )
        return len(blobs)

    def _cached(self) -> tuple[str, dict] | None:
        """This folder's path relative to a prefetched ancestor, and that ancestor's cache."""
        cache = self._cache
        if not cache or not (self.path + "/").startswith(cache["root"]):
            return None
        return self.path[len(cache["root"]) :], cache

    def read_bytes(self) -> bytes:
        """The object's bytes (FileNotFoundError when absent)."""
        hit = self._cached()
        if hit is not None:
            rel, cache = hit
            if _norm(self.path) in cache["blobs"]:
                return bytes(cache["blobs"][_norm(self.path)])
            if rel not in cache["listing"] and rel.rsplit("/", 1)[-1] in cache["names"]:
                raise FileNotFoundError(self.url)  # a prefetched name that was not there
        return bytes(self.fs.cat_file(self.path))  # anything else (e.g. attempt counters) is read fresh

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_json(self) -> dict | None:
        """The object as a JSON mapping, None when absent (FormatError, naming it, when it is no mapping)."""
        try:
            raw = self.read_bytes()
        except FileNotFoundError:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise FormatError(f"{self.url}: unreadable JSON ({exc})") from None
        if not isinstance(value, dict):
            raise FormatError(f"{self.url}: expected a JSON object")
        return value

    def write_bytes(self, data: bytes) -> None:
        """Write the object whole: one PUT on an object store; temporary + rename on a local disk."""
        self._cache.clear()
        fs, path = self.fs, self.path
        if self.is_local:
            parent = path.rsplit("/", 1)[0]
            fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{self.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
            fs.pipe_file(tmp, data)
            fs.mv(tmp, path)
        else:
            fs.pipe_file(path, data)
        fs.invalidate_cache()

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def write_json(self, doc: Mapping[str, Any]) -> None:
        self.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))

    def unlink(self, missing_ok: bool = False) -> None:
        """Remove the object (FileNotFoundError when absent, unless ``missing_ok``)."""
        self._cache.clear()
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        self.fs.invalidate_cache()

    def rmtree(self, keep: Container[str] = ()) -> int:
        """Remove every object under the prefix except those under the top-level names in ``keep``.

        Returns the number of objects removed.
        """
        self._cache.clear()
        doomed = [self.path + "/" + rel for rel in self.listing() if rel.split("/", 1)[0] not in keep]
        if doomed:
            self.fs.rm(doomed)
        if not keep and self.is_local and self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)
        self.fs.invalidate_cache()
        return len(doomed)

    def listing(self) -> dict[str, int]:
        """``{relative key: bytes}`` of every object under the prefix (fresh, unless prefetched: :meth:`prefetch`)."""
        hit = self._cached()
        if hit is not None:
            rel, cache = hit
            start, keys, out = rel + "/" if rel else "", cache["keys"], {}
            for i in range(bisect.bisect_left(keys, start), len(keys)):  # the keys under start: one range
                if not keys[i].startswith(start):
                    break
                out[keys[i][len(start) :]] = cache["listing"][keys[i]]
            return out
        self.refresh()
        try:
            found = self.fs.find(self.path, detail=True)
        except FileNotFoundError:
            return {}
        root = self.path.rstrip("/") + "/"
        out = {}
        for key, meta in found.items():
            if key.startswith(root) and meta.get("type", "file") != "directory":
                out[key[len(root) :]] = int(meta.get("size") or 0)
        return dict(sorted(out.items()))

    def upload(self, local: str | os.PathLike, exclude: Container[str] = ()) -> dict[str, dict[str, Any]]:
        """Upload every file under the local folder ``local`` (names in ``exclude`` left out).

        Returns
        -------
        dict
            ``{relative path: {"bytes": size, "sha256": hex digest}}`` of what was uploaded.
        """
        root = Path(local)
        record: dict[str, dict[str, Any]] = {}
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.name in exclude:
                continue
            rel = p.relative_to(root).as_posix()
            target = self / rel
            if self.is_local:
                self.fs.makedirs(target.path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(p), target.path)
            record[rel] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        self.fs.invalidate_cache()
        return record

    def download(self, dest: str | os.PathLike) -> Path:
        """Copy the object to the local file ``dest`` (written under a temporary name, then renamed)."""
        final = Path(dest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            self.fs.get_file(self.path, str(tmp))
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final


def _norm(path: str) -> str:
    """A path as fsspec keys it, without a leading ``/`` (memory:// lists ``/b/k``, s3 ``b/k``)."""
    return path.lstrip("/")


def _protocols(fs: Any) -> tuple[str, ...]:
    p = getattr(fs, "protocol", ())
    return (p,) if isinstance(p, str) else tuple(p)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a local file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    """Where remote outputs are cached for reading: ``$Z2T_CACHE_DIR``, else ``~/.cache/z2t``."""
    return Path(os.environ.get("Z2T_CACHE_DIR") or Path.home() / ".cache" / "z2t")


def staging_dir() -> tempfile.TemporaryDirectory:
    """A local temporary folder for files written before their upload (``$Z2T_STAGING_DIR``, else the
    system's temporary folder); removed when the context ends."""
    return tempfile.TemporaryDirectory(prefix="z2t-stage-", dir=os.environ.get("Z2T_STAGING_DIR") or None)


def local_copy(folder: RemoteFolder, files: Mapping[str, Mapping[str, Any]], *, skip: Container[str] = ()) -> Path:
    """A local copy of the files of a remote folder, in the read cache (:func:`cache_root`).

    Parameters
    ----------
    folder
        The remote folder.
    files
        ``{relative path: {"bytes", "sha256"}}`` as its marker records them; a cached file is reused
        when its recorded sha256 is the one of this record (else downloaded again).
    skip
        Top-level names not copied (e.g. an OME-Zarr read lazily from the store).

    Returns
    -------
    pathlib.Path
        The local folder (``<cache>/remote/<sha256 of the URL>/<name>``).
    """
    root = cache_root() / "remote" / hashlib.sha256(folder.url.encode()).hexdigest()[:24] / folder.name
    index_path = root / ".z2t-cache.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    for rel, meta in _wanted(files, skip):
        dest = root / rel
        sha = meta.get("sha256")
        if sha and index.get(rel) == sha and dest.is_file() and dest.stat().st_size == meta.get("bytes"):
            continue
        (folder / rel).download(dest)
        index[rel] = file_sha256(dest)
        if sha and index[rel] != sha:
            dest.unlink()
            raise RemoteStoreError(f"{folder.url}/{rel}: sha256 differs from its marker (damaged or rewritten)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f".z2t-cache.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, sort_keys=True))
    os.replace(tmp, index_path)
    return root


def _wanted(files: Mapping[str, Mapping[str, Any]], skip: Container[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for rel, meta in sorted(files.items()):
        if rel.split("/", 1)[0] not in skip:
            yield rel, meta if isinstance(meta, Mapping) else {}


def check_remote_files(folder: RemoteFolder, files: Mapping[str, Any], *, full: bool = False) -> list[str]:
    """What differs between a folder on a store and its recorded files (empty: all match).

    Sizes come from one listing; with ``full`` every file recorded with a sha256 is read and hashed.
    """
    listing = folder.listing()
    problems = []
    for rel, meta in sorted(files.items()):
        meta = meta if isinstance(meta, Mapping) else {}
        if rel not in listing:
            problems.append(f"{folder.url}/{rel}: missing")
        elif listing[rel] != meta.get("bytes"):
            problems.append(f"{folder.url}/{rel}: {listing[rel]} bytes, expected {meta.get('bytes')}")
        elif full and meta.get("sha256"):
            h = hashlib.sha256()
            with (folder / rel).fs.open((folder / rel).path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != meta["sha256"]:
                problems.append(f"{folder.url}/{rel}: sha256 differs from the recorded checksum")
    return problems
