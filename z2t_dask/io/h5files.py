"""HDF5 files as this package writes them: no timestamps, and a full disk is an error, never a crash.

Every HDF5 file the package writes (``<name>.h5`` stacks, ``emitters.h5``) is opened with
:func:`h5_writer`:

- **Same inputs, same bytes.** The root group, groups (:func:`create_group`) and datasets are
  created without timestamps (``track_times=False``).
- **A failed write is an exception, not a segfault.** Once one of its writes has failed (disk full,
  quota, ``RLIMIT_FSIZE``), the HDF5 library cannot close a file: h5py crashes at the close or at
  interpreter exit. So the file is written through h5py's ``fileobj`` driver into a :class:`_Sink`
  that never reports an I/O error to HDF5: it records the first one, keeps the rest of the file's
  writes in memory (metadata) or drops them (data, the file is discarded anyway), and
  :func:`raise_if_write_failed` (called after every block) and the end of :func:`h5_writer` raise
  the recorded ``OSError``, which :mod:`z2t_dask.io.atomic` turns into
  :class:`~z2t_dask.errors.OutputSpaceError` and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

__all__ = [
    "create_group",
    "create_plain_dataset",
    "h5_writer",
    "new_attrs",
    "raise_if_write_failed",
    "write_failure_check",
]

#: Writes kept in memory after a failure (metadata the library may read back before closing); larger
#: writes (chunks of frames) are dropped.
_KEEP_BYTES = 1 << 20

#: A file is assembled in memory up to this size (bytes) and then written at once (see :class:`_Sink`).
MEMORY_BYTES = 8 << 20

#: Open sinks by the name h5py reports as the file's ``filename`` (``repr`` of the sink).
_SINKS: dict[str, _Sink] = {}
_SINKS_LOCK = threading.Lock()


class _Sink:
    """A file object for h5py's ``fileobj`` driver that never raises an I/O error to HDF5.

    The first :data:`MEMORY_BYTES` of a file are assembled in memory and written to ``path`` in one
    call when the file is complete (:meth:`finish`) or grows larger (a small ``emitters.h5`` is written
    by ~50 library writes: one system call instead of ~50, the same bytes). Writes go to ``path`` until
    one fails (the error is kept in :attr:`error`); from then on writes and truncations succeed without
    touching the disk, reads see what was written (small writes are kept in memory; the rest reads as
    zeros). The file is then incomplete and must be discarded.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._raw = open(path, "w+b", buffering=0)  # closed by h5_writer
        self._fd = self._raw.fileno()
        self._pos = 0
        self._size = 0
        self._mem: bytearray | None = _take_buffer()  # the file while it is small; None once on disk
        self._kept: list[tuple[int, bytes]] = []
        self.error: OSError | None = None

    def __repr__(self) -> str:
        return f"<z2t_dask HDF5 sink 0x{id(self):x}>"

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else self._size + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        size = self._size - self._pos if size is None or size < 0 else size
        if self._mem is not None:
            data = bytearray(self._mem[self._pos : min(self._pos + size, self._size)])
            data.extend(bytes(size - len(data)))
            self._pos += size
            return bytes(data)
        data = bytearray(os.pread(self._fd, size, self._pos) if size else b"")
        data.extend(bytes(size - len(data)))
        for addr, chunk in self._kept:  # later writes win
            lo, hi = max(addr, self._pos), min(addr + len(chunk), self._pos + size)
            if lo < hi:
                data[lo - self._pos : hi - self._pos] = chunk[lo - addr : hi - addr]
        self._pos += size
        return bytes(data)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        mem = self._mem
        if mem is not None:
            end = self._pos + n
            if end <= MEMORY_BYTES:
                if end > len(mem):  # capacity doubles: no copy of the whole file at every write
                    mem.extend(bytes(min(max(end, 2 * len(mem), 1 << 16), MEMORY_BYTES) - len(mem)))
                if self._pos > self._size:  # a gap: zeros (the buffer may hold an earlier file's bytes)
                    mem[self._size : self._pos] = bytes(self._pos - self._size)
                mem[self._pos : end] = view
                self._pos = end
                self._size = max(self._size, end)
                return n
            self._spill()
        if self.error is None:
            try:
                done = 0
                while done < n:
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        if self.error is not None and n <= _KEEP_BYTES:
            self._kept.append((self._pos, bytes(view)))
        self._pos += n
        self._size = max(self._size, self._pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else int(size)
        mem = self._mem
        if mem is not None and size <= MEMORY_BYTES:
            if size < self._size:  # what lies beyond the end reads as zeros if the file grows again
                mem[size : self._size] = bytes(self._size - size)
            self._size = size
            return size
        if mem is not None:
            self._spill()
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:  # e.g. extending beyond the file-size limit
                self.error = exc
        self._size = size
        return size

    def _spill(self) -> None:
        """Write the in-memory part to the file (its size included) and continue on disk."""
        mem, self._mem = self._mem, None
        if mem is None:
            return
        try:
            self._write_buffer(mem)
        finally:
            _give_buffer(mem)

    def _write_buffer(self, mem: bytearray) -> None:
        used = min(len(mem), self._size)
        view = memoryview(mem)[:used]
        try:
            done = 0
            while done < used:
                done += os.pwrite(self._fd, view[done:], done)
            if self._size > used:  # a truncate that extended the file
                os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self.error = exc
            self._kept.append((0, bytes(view)))  # what the library may still read back before closing
        finally:
            view.release()  # the buffer is reused: no export may outlive this call

    def finish(self) -> None:
        """Write what is still in memory (the whole file, when small); a failure is kept in :attr:`error`."""
        self._spill()

    def flush(self) -> None:
        """Nothing to do: writes are ``pwrite`` calls, or in memory until :meth:`finish`."""

    def close(self) -> None:
        self._raw.close()
        self._kept.clear()
        if self._mem is not None:
            _give_buffer(self._mem)
            self._mem = None


#: Reused memory buffers of :class:`_Sink` (fresh memory costs a page fault per 4 KiB at every file).
_BUFFERS: list[bytearray] = []


def _take_buffer() -> bytearray:
    with _SINKS_LOCK:
        return _BUFFERS.pop() if _BUFFERS else bytearray()


def _give_buffer(buffer: bytearray) -> None:
    with _SINKS_LOCK:
        if len(_BUFFERS) < 2:
            _BUFFERS.append(buffer)


def raise_if_write_failed(obj: Any) -> None:
    """Raise the first failed write (an ``OSError``) of the file ``obj`` belongs to, if any.

    ``obj`` is an h5py file, group or dataset of a file opened by :func:`h5_writer` (anything else:
    nothing happens). Writers call it after each block so that a full disk stops the work at once.
    """
    try:
        name = obj.file.filename
    except Exception:  # not an h5py object, or closed
        return
    with _SINKS_LOCK:
        sink = _SINKS.get(name)
    if sink is not None and sink.error is not None:
        raise sink.error


@contextlib.contextmanager
def h5_writer(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Create the HDF5 file ``path``, without timestamps, through a sink that never crashes the library.

    Parameters
    ----------
    path : path-like
        File to create (truncated if it exists); normally an :func:`~z2t_dask.io.atomic.atomic_path`
        temporary.

    Yields
    ------
    h5py.File
        The open file (``track_times=False``).

    Raises
    ------
    OSError
        The first write that failed (``ENOSPC``, ``EDQUOT``, ``EFBIG``), after the file is closed; the
        file is then incomplete (the atomic temporary around it is removed).
    """
    import h5py

    sink = _Sink(path)
    key = repr(sink)
    with _SINKS_LOCK:
        _SINKS[key] = sink
    try:
        try:
            f = h5py.File(sink, "w", track_times=False)
        except TypeError:  # h5py < 3.15: groups carry no timestamps unless track_order is set
            f = h5py.File(sink, "w")
        try:
            yield f
            f.flush()
        except Exception:
            failed = sink.error  # the cause of whatever the body met after a failed write
            f.close()
            if failed is not None:
                raise failed  # noqa: B904 - the body's error stays as its context
            raise
        except BaseException:  # Ctrl-C, SIGTERM: close, the temporary is removed
            f.close()
            raise
        f.close()
        sink.finish()
        if sink.error is not None:
            raise sink.error
    finally:
        with _SINKS_LOCK:
            _SINKS.pop(key, None)
        sink.close()


def create_group(parent: Any, name: str) -> Any:
    """``parent.create_group(name)`` without timestamps (``track_times=False`` where h5py has it)."""
    try:
        return parent.create_group(name, track_times=False)
    except TypeError:  # h5py < 3.15: no timestamps for groups without track_order
        return parent.create_group(name)


def write_failure_check(obj: Any) -> Callable[[], None]:
    """A function raising the first failed write of ``obj``'s file, as :func:`raise_if_write_failed` does.

    The file's sink is looked up once (``obj.file.filename`` costs ~0.1 ms in h5py), so a writer calling
    the check after every dataset pays nothing more. Outside :func:`h5_writer` the check does nothing.
    """
    try:
        name = obj.file.filename
    except Exception:  # not an h5py object, or closed
        return lambda: None
    with _SINKS_LOCK:
        sink = _SINKS.get(name)
    if sink is None:
        return lambda: None

    def check() -> None:
        if sink.error is not None:
            raise sink.error

    return check


def new_attrs(obj: Any, values: Mapping[str, Any]) -> None:
    """Create attributes on an object that has none of these names yet: ``obj.attrs[k] = v`` for each.

    The HDF5 calls and arguments of h5py's ``AttributeManager.create`` (same type, dataspace and data, so
    the same bytes in the file), without its per-attribute Python overhead (~45 µs each) and without its
    check for an existing attribute of that name, which a new object cannot have: an existing name is an
    ``OSError`` here (the HDF5 library refuses to create it), never a silent replacement.

    Parameters
    ----------
    obj : h5py.File, h5py.Group, h5py.Dataset or a low-level object id
        A newly created object.
    values : mapping of str -> value
        Attribute values as h5py accepts them (str, numbers, bools, NumPy scalars and numeric arrays).
    """
    from h5py import h5a, h5s
    from h5py._hl.base import array_for_new_object
    from h5py._objects import ObjectID

    oid = obj if isinstance(obj, ObjectID) else obj.id
    for key, value in values.items():
        data = array_for_new_object(value)
        if data.dtype.subdtype is not None:  # top-level array types: h5py's own (rare) handling
            obj_hl = obj if hasattr(obj, "attrs") else None
            if obj_hl is None:
                raise TypeError(f"attribute {key!r}: array dtypes need an h5py object, got {type(obj).__name__}")
            obj_hl.attrs[key] = value
            continue
        dtype = data.dtype
        data = np.asarray(data, dtype=dtype)
        htype, mtype = _attr_types(dtype)
        attr = h5a.create(oid, key.encode("utf8"), htype, h5s.create_simple(data.shape))
        try:
            attr.write(data, mtype=mtype)
        finally:
            attr.close()


#: (file type, memory type) of attributes by dtype key (see :func:`_attr_types`); never modified once made.
_ATTR_TYPES: dict[Any, tuple[Any, Any]] = {}


def _attr_types(dtype: np.dtype) -> tuple[Any, Any]:
    """h5py's ``py_create(dtype, logical=True)`` and ``py_create(dtype)`` for an attribute, made once per
    process for plain numeric dtypes and h5py's variable-length str (the types of almost every attribute)."""
    from h5py import h5t

    meta = dtype.metadata
    if dtype.kind in "biuf" and dtype.fields is None and not meta:
        key: Any = dtype
    elif dtype.kind == "O" and meta is not None and dict(meta) == {"vlen": str}:
        key = "vlen-str"  # dtype("O") with and without metadata compare equal: not a key of its own
    else:
        return h5t.py_create(dtype, logical=True), h5t.py_create(dtype)
    made = _ATTR_TYPES.get(key)
    if made is None:
        made = (h5t.py_create(dtype, logical=True), h5t.py_create(dtype))
        with _SINKS_LOCK:
            made = _ATTR_TYPES.setdefault(key, made)
    return made


#: Creation property list and HDF5 type of plain numeric datasets, by (dtype, track_order): never modified
#: once made, so one of each serves every file of the process (~20 µs less per dataset).
_PLAIN: dict[tuple[np.dtype, bool], tuple[Any, Any]] = {}


def create_plain_dataset(group: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """A new contiguous dataset without timestamps: ``group.create_dataset(name, shape=shape, dtype=dtype,
    track_times=False)`` with h5py's default ``track_order``, as a low-level ``DatasetID``.

    The same HDF5 calls (type, dataspace, creation property list) as h5py's ``make_new_dset`` for these
    arguments, hence the same bytes, at a third of its cost. Wrap the result in ``h5py.Dataset`` for
    high-level access.
    """
    import h5py
    from h5py import h5d, h5p, h5s, h5t

    dt = np.dtype(dtype)
    order = bool(h5py.get_config().track_order)
    cacheable = dt.kind in "biuf" and dt.fields is None and dt.subdtype is None and not dt.metadata
    made = _PLAIN.get((dt, order)) if cacheable else None
    if made is None:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_obj_track_times(False)
        if order:
            dcpl.set_attr_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
        else:
            dcpl.set_attr_creation_order(0)
        made = (dcpl, h5t.py_create(dt, logical=1))
        if cacheable:
            with _SINKS_LOCK:
                _PLAIN.setdefault((dt, order), made)
    dcpl, tid = made
    sid = h5s.create_simple(tuple(int(s) for s in shape), None)
    return h5d.create(group.id, name.encode("utf8"), tid, sid, dcpl=dcpl)
