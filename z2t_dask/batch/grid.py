"""The jobs of a batch, generated on the fly: :class:`BatchJobs` (a lazy sequence of :class:`Job`).

A batch of ``P`` grid points × ``S`` samples has ``P·S`` jobs. Materialising them all (a resolved
config each, ~20 KB in memory) does not scale to 10⁵ jobs, so :class:`BatchJobs` validates each
distinct grid point once (:meth:`BatchJobs.validate`: one :func:`~z2t_dask.config.load_config` per
point, every problem of every point collected into one :class:`BatchConfigError`) and makes a
:class:`Job` when it is asked for (:meth:`BatchJobs.job`, iteration): the samples of a grid point
differ only by their seed (``emitters.seed``), their folder name and their stack's file name
(``tiff.filename``), which are set on a copy of the point's resolved config. The result is the
job :func:`~z2t_dask.batch.spec.expand_jobs` made by resolving every job's config (same config,
seed, name and key; the tests check it, and :meth:`BatchJobs.validate` checks it on the first
point with two samples, falling back to resolving every job if the config layer ever derives
something else from those keys). Resolved points are kept in a small LRU cache: a grid of many
points and few samples re-resolves a point that fell out of it (a constant cost per job).

With ``shard_folders`` (``k`` > 0 hex digits), a job's folder is ``<shard>/<name>``, ``<shard>``
the first ``k`` hex digits of the sha256 of ``<name>``: stable when the grid changes, at most
``16**k`` folders in the batch folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from z2t_dask.batch.spec import (
    _LINKED_TO_ROI,
    SCHEMA_VERSION,
    BatchSpec,
    Job,
    _fmt_value,
    _get_dotted,
    _paths_base,
    _set_dotted,
    job_key,
    job_seed,
    resolve_user_paths,
)
from z2t_dask.config import ConfigError, config_to_dict, load_config
from z2t_dask.errors import BatchConfigError

__all__ = ["BatchJobs", "shard_of"]

log = logging.getLogger("z2t_dask.batch")

#: Resolved grid points kept in memory.
_CACHE_POINTS = 256
#: Stand-ins for a job's seed, file name and folder in its point's key text (see :meth:`BatchJobs._key`).
_SEED, _FILE, _NAME = "\x00z2t-seed\x00", "\x00z2t-file\x00", "\x00z2t-name\x00"


def _canonical(obj: Any) -> str:
    """The text :func:`~z2t_dask.batch.spec.job_key` hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str)


def shard_of(name: str, digits: int) -> str:
    """The shard folder of job folder ``name``: the first ``digits`` hex digits of its sha256."""
    return hashlib.sha256(name.encode()).hexdigest()[:digits]


@dataclass
class _Point:
    """One grid point: its folder name, grid values and resolved config (None when it is invalid)."""

    name: str
    params: dict
    config: dict | None
    has_tiff: bool
    problems: list[tuple[str, str]] = field(default_factory=list)
    key_text: str | None = None  # the key's text with stand-ins for seed, file name and folder


class BatchJobs(Sequence[Job]):
    """The jobs of a batch in order, made on demand (see the module docstring).

    Parameters
    ----------
    spec
        The batch (:func:`~z2t_dask.batch.spec.load_batch_config`).
    validate
        Validate every grid point now (:meth:`validate`); otherwise a bad point raises
        :class:`BatchConfigError` when one of its jobs is made.

    Notes
    -----
    The configs of jobs made here share their unchanged parts with the cached grid point: treat
    them as read-only (:func:`~z2t_dask.batch.spec.expand_jobs` returns independent copies).
    """

    def __init__(self, spec: BatchSpec, *, validate: bool = True):
        self.spec = spec
        self.keys = [k for k, _ in spec.grid]
        self.axes = [list(v) for _, v in spec.grid]
        self.n_points = math.prod(len(v) for v in self.axes) if spec.grid else 1
        self.samples = list(range(1, spec.num_samples + 1)) if spec.num_samples else [0]
        self.sample_names = [spec.sample_naming.format(sample_id=s) if s else "" for s in self.samples]
        self.shard = int(getattr(spec, "shard_folders", 0) or 0)
        self._cache: OrderedDict[int, _Point] = OrderedDict()
        self._exact = False  # resolve every job's config (set when patching a point's config is not enough)
        if validate:
            self.validate()

    # ---- sequence ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_points * len(self.samples)

    @overload
    def __getitem__(self, i: int) -> Job: ...

    @overload
    def __getitem__(self, i: slice) -> list[Job]: ...

    def __getitem__(self, i: int | slice) -> Job | list[Job]:
        if isinstance(i, slice):
            return [self.job(k) for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"job index {i} out of range (a batch of {len(self)} jobs)")
        return self.job(i)

    def __iter__(self) -> Iterator[Job]:
        return (self.job(i) for i in range(len(self)))

    # ---- names ------------------------------------------------------------------------------

    def point_values(self, gi: int) -> tuple:
        """The grid values of point ``gi`` (the cartesian product in the given order, last axis fastest)."""
        vals = []
        for ax in reversed(self.axes):
            gi, k = divmod(gi, len(ax))
            vals.append(ax[k])
        return tuple(reversed(vals))

    def _grid_name(self, gi: int, point: tuple) -> str:
        if not self.spec.grid:
            return ""
        return f"job_{gi:04d}_" + "_".join(f"{k.split('.')[-1]}_{_fmt_value(v)}" for k, v in zip(self.keys, point))

    def _folder(self, grid_name: str, sample_name: str) -> str:
        name = "/".join(p for p in (grid_name, sample_name) if p) or "single_job"
        return f"{shard_of(name, self.shard)}/{name}" if self.shard else name

    def name(self, i: int) -> str:
        """The folder (relative to the batch folder) of job ``i``, without making the job."""
        gi, si = divmod(i, len(self.samples))
        return self._folder(self._grid_name(gi, self.point_values(gi)), self.sample_names[si])

    def names(self) -> Iterator[str]:
        """Every job's folder in batch order (no config is resolved)."""
        for gi in range(self.n_points):
            grid_name = self._grid_name(gi, self.point_values(gi))
            for sample_name in self.sample_names:
                yield self._folder(grid_name, sample_name)

    # ---- configs ------------------------------------------------------------------------------

    def _raw(self, gi: int, point: tuple, si: int) -> tuple[dict, dict, int]:
        """The unresolved config, params and seed of job ``(gi, si)`` (the original per-job recipe)."""
        spec, sid = self.spec, self.samples[si]
        base_roi = _get_dotted(spec.base_config, "tiff.roi_size")
        cfg = copy.deepcopy(spec.base_config)
        params: dict[str, Any] = {}
        for k, v in zip(self.keys, point):
            _set_dotted(cfg, k, v)
            params[k] = v
            if k == "tiff.roi_size" and base_roi is not None:
                for linked in _LINKED_TO_ROI:
                    if _get_dotted(spec.base_config, linked) == base_roi:
                        _set_dotted(cfg, linked, v)
        if spec.frames_per_sample:
            _set_dotted(cfg, "emitters.frames", spec.frames_per_sample)
        resolve_user_paths(cfg, _paths_base(spec.source))  # a grid may vary zmap_path or a map
        if sid:
            params["sample_id"] = sid
            if isinstance(_get_dotted(cfg, "tiff"), dict):
                cfg["tiff"]["filename"] = f"{self.sample_names[si]}.ome.tiff"
        seed = job_seed(spec.seed, gi, sid)
        _set_dotted(cfg, "emitters.seed", seed)
        return cfg, params, seed

    def _point(self, gi: int) -> _Point:
        hit = self._cache.get(gi)
        if hit is not None:
            self._cache.move_to_end(gi)
            return hit
        point = self.point_values(gi)
        grid_name = self._grid_name(gi, point)
        cfg, params, _ = self._raw(gi, point, 0)
        params.pop("sample_id", None)
        has_tiff = isinstance(cfg.get("tiff"), dict)
        try:
            p = _Point(grid_name, params, config_to_dict(load_config(cfg)), has_tiff)
            p.key_text = self._key_text(p)
        except ConfigError as exc:
            name = self._folder(grid_name, self.sample_names[0])
            p = _Point(grid_name, params, None, has_tiff, [(f"{name}: {k}", m) for k, m in exc.problems])
        self._cache[gi] = p
        if len(self._cache) > _CACHE_POINTS:
            self._cache.popitem(last=False)
        return p

    def _patched(self, p: _Point, si: int, seed: int) -> dict:
        assert p.config is not None
        cfg = {**p.config, "emitters": {**p.config.get("emitters", {}), "seed": seed}}
        if self.samples[si] and p.has_tiff:
            cfg["tiff"] = {**p.config.get("tiff", {}), "filename": f"{self.sample_names[si]}.ome.tiff"}
        return cfg

    def _key_text(self, p: _Point) -> str | None:
        """The canonical text of a job key of point ``p`` with stand-ins (None if they are not unique)."""
        assert p.config is not None
        cfg = {**p.config, "emitters": {**p.config.get("emitters", {}), "seed": _SEED}}
        if self.samples[0] and p.has_tiff:
            cfg["tiff"] = {**p.config.get("tiff", {}), "filename": _FILE}
        text = _canonical({"schema": SCHEMA_VERSION, "config": cfg, "seed": _SEED, "name": _NAME})
        counts = (text.count(json.dumps(_SEED)), text.count(json.dumps(_FILE)), text.count(json.dumps(_NAME)))
        return text if counts == (2, int(bool(self.samples[0] and p.has_tiff)), 1) else None

    def _key(self, p: _Point, config: dict, seed: int, si: int, name: str) -> str:
        """:func:`~z2t_dask.batch.spec.job_key` of a job of point ``p``, from the point's key text when it has one."""
        if p.key_text is None or self._exact:
            return job_key(config, seed, name)
        text = p.key_text.replace(json.dumps(_SEED), str(int(seed))).replace(json.dumps(_NAME), json.dumps(name))
        if self.samples[si] and p.has_tiff:
            text = text.replace(json.dumps(_FILE), json.dumps(f"{self.sample_names[si]}.ome.tiff"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def job(self, i: int) -> Job:
        """Make job ``i`` (0-based batch order).

        Raises
        ------
        BatchConfigError
            Its grid point's config is invalid (the job and key named).
        """
        gi, si = divmod(i, len(self.samples))
        p = self._point(gi)
        if p.config is None:
            raise BatchConfigError(p.problems, self.spec.source)
        name = self._folder(p.name, self.sample_names[si])
        seed = job_seed(self.spec.seed, gi, self.samples[si])
        params = {**p.params, "sample_id": self.samples[si]} if self.samples[si] else dict(p.params)
        if self._exact:
            config = config_to_dict(load_config(self._raw(gi, self.point_values(gi), si)[0]))
        else:
            config = self._patched(p, si, seed)
        key = self._key(p, config, seed, si, name)
        return Job(index=i, name=name, params=params, config=config, seed=seed, key=key)

    def point_jobs(self) -> Iterator[Job]:
        """The first job of every grid point (what differs between points: Zmap, ROI, camera...)."""
        return (self.job(gi * len(self.samples)) for gi in range(self.n_points))

    def validate(self) -> None:
        """Resolve every grid point once and check the folder names; every problem in one error.

        Raises
        ------
        BatchConfigError
            Listing every invalid key of every grid point (prefixed by its first job's folder) and
            folder names that two jobs would share.
        """
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name in self.sample_names:
            if name in seen:
                problems.append((self._folder("", name), "two jobs get the same folder name (check sample_naming)"))
            seen.add(name)
        checked = False
        for gi in range(self.n_points):
            p = self._point(gi)
            problems.extend(p.problems)
            if p.config is not None and not checked and len(self.samples) > 1:
                checked = True
                cfg, _, seed = self._raw(gi, self.point_values(gi), 1)
                job = self.job(gi * len(self.samples) + 1)
                if config_to_dict(load_config(cfg)) != job.config or job.key != job_key(job.config, seed, job.name):
                    log.warning("batch: samples differ by more than seed and file name; resolving every job")
                    self._exact = True
        if problems:
            raise BatchConfigError(problems, self.spec.source)
