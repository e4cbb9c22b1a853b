"""Batch config and its jobs: :class:`BatchSpec`, :func:`load_batch_config`, :func:`expand_jobs`.

A batch config holds a ``base_config`` (one sample's config) plus

* ``sample_configs``: ``num_samples`` samples with the same parameters and different seeds
  (``frames_per_sample``, ``sample_naming`` as in the original tool), and/or
* a grid: ``variables`` (dotted key paths → list of values, as the original) or
  ``variable_configs`` (leaf names such as ``num_emitters`` or ``roi_size`` resolved uniquely in
  the config schema; an ambiguous name is an error). Cartesian product in the given order; each
  grid point gets ``num_samples`` samples (folders ``<grid job>/<sample>``).

Every job gets a seed spawned from the batch ``seed`` and its position
(``SeedSequence(seed, spawn_key=(grid_index, sample_id))``: no correlated or colliding streams)
and a key: the hash of its fully resolved config, seed and name (:func:`job_key`). A rerun
compares keys to decide which jobs changed. ``shard_folders`` (true: 2, or 1-4 hex digits; default
off) puts each job folder under a shard folder ``<out>/<shard>/<job>``, the shard the first hex
digits of the sha256 of the job's name (100,000 folders in one directory are slow on shared
filesystems). Jobs are made on demand by :class:`~z2t_dask.batch.grid.BatchJobs`;
:func:`expand_jobs` lists them. Nothing here touches files other than the batch
config itself.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from z2t_dask.config import ConfigError, config_to_dict, load_config
from z2t_dask.errors import BatchConfigError
from z2t_dask.io.remote import resolve_output

__all__ = [
    "SCHEMA_VERSION",
    "BatchConfigError",
    "BatchSpec",
    "Job",
    "expand_jobs",
    "job_key",
    "job_seed",
    "load_batch_config",
    "resolve_user_paths",
]

#: Version of the batch files' schema (the manifest's ``schema``); part of every job key.
SCHEMA_VERSION = 1

_TOP_KEYS = (
    "description",
    "version",
    "base_output_dir",
    "max_workers",
    "base_config",
    "sample_configs",
    "variables",
    "variable_configs",
    "seed",
    "retries",
    "strategy",
    "shard_folders",
    "storage_options",
)
_SAMPLE_KEYS = ("num_samples", "frames_per_sample", "sample_naming", "description")
# keys that the original configs keep equal to the ROI size: varied together with it
_LINKED_TO_ROI = ("zernike.crop_size", "emitters.area_px")


@dataclass
class BatchSpec:
    """A validated batch config."""

    base_config: dict
    output_dir: Path | str  # a local folder (absolute) or a URL (s3://..., batch/remote.py)
    description: str = ""
    max_workers: int | None = None
    num_samples: int | None = None
    frames_per_sample: int | None = None
    sample_naming: str = "sample_{sample_id:03d}"
    grid: list[tuple[str, list]] = field(default_factory=list)
    seed: int = 0
    retries: int = 2
    strategy: str = "auto"
    source: str | None = None
    shard_folders: int = 0  # hex digits of the shard folder above each job folder (0: none)
    storage_options: dict = field(default_factory=dict)  # fsspec options of a URL output_dir (never in job keys)


@dataclass
class Job:
    """One sample to produce."""

    index: int
    name: str  # folder relative to the batch output dir
    params: dict  # grid values and sample id of this job
    config: dict  # fully resolved sample config
    seed: int
    key: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _named(items: list, name: str, dotted: str) -> dict:
    """The element called ``name`` of a list of mappings: ``channels.<name>.<key>``, ``emitters.species.<name>...``
    address a channel or species by its ``name`` (issue 13); BatchConfigError naming the key when there is none."""
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    known = ", ".join(str(i.get("name")) for i in items if isinstance(i, dict))
    raise BatchConfigError([(dotted, f"no element named {name!r} to vary (names: {known or 'none'})")])


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur: Any = d
    for p in parts[:-1]:
        if isinstance(cur, list):  # a channel or species by name
            cur = _named(cur, p, dotted)
            continue
        nxt = cur.get(p)
        if not isinstance(nxt, (dict, list)):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    if isinstance(cur, list):
        raise BatchConfigError([(dotted, "vary a key of a channel or species (e.g. channels.<name>.efficiency)")])
    cur[parts[-1]] = copy.deepcopy(value)


def _get_dotted(d: Mapping, dotted: str, default: Any = None) -> Any:
    cur: Any = d
    for p in dotted.split("."):
        if isinstance(cur, list):  # a channel or species by name
            cur = next((i for i in cur if isinstance(i, Mapping) and i.get("name") == p), None)
            if cur is None:
                return default
            continue
        if not isinstance(cur, Mapping) or p not in cur:
            return default
        cur = cur[p]
    return cur


def _leaf_paths(d: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.extend(_leaf_paths(v, path))
        else:
            out.append(path)
    return out


def load_batch_config(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    zmap: str | None = None,
    output_dir: str | os.PathLike | None = None,
    seed: int | None = None,
) -> BatchSpec:
    """Read and validate a batch config (the original tool's format plus ``variable_configs``).

    Raises
    ------
    BatchConfigError
        Listing every bad key path; also when a ``zmap_path`` does not exist (override it with
        ``zmap``).
    """
    problems: list[tuple[str, str]] = []
    src = None
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        src = str(source)
        p = Path(source)
        if not p.is_file():
            raise BatchConfigError([("<file>", f"batch config not found: {p}")], src)
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(p.read_text("utf-8"))
            else:
                data = json.loads(p.read_text("utf-8"))
        except Exception as exc:
            raise BatchConfigError([("<file>", f"cannot parse {p.name}: {exc}")], src) from None
        if not isinstance(data, dict):
            raise BatchConfigError([("<root>", "expected a mapping at the top level")], src)
    for k in data:
        if k not in _TOP_KEYS:
            close = difflib.get_close_matches(k, _TOP_KEYS, 1)
            problems.append(
                (
                    k,
                    "unknown key"
                    + (f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(_TOP_KEYS)}"),
                )
            )
    base = data.get("base_config", {})
    if not isinstance(base, dict):
        problems.append(("base_config", "expected a mapping (one sample's config)"))
        base = {}
    base = copy.deepcopy(base)
    if zmap is not None:
        base["zmap_path"] = os.path.abspath(zmap)  # a command-line path: from the user's folder
    resolve_user_paths(base, _paths_base(src))
    zp = base.get("zmap_path")
    if isinstance(zp, str) and not Path(zp).is_file():
        problems.append(("base_config.zmap_path", f"Zmap file not found: {zp} (override with --zmap / zmap=)"))
    for k in _MAP_KEYS:
        v = _get_dotted(base, k)
        if isinstance(v, str) and not Path(v).is_file():
            problems.append((f"base_config.{k}", f"sCMOS map file not found: {v} (expected a .npy file)"))
    spec = BatchSpec(
        base_config=base,
        # resolved here, on the client: workers elsewhere never see a relative path
        output_dir=resolve_output(output_dir or data.get("base_output_dir") or "batch_output"),  # a URL as is
        description=str(data.get("description", "")),
        source=src,
    )
    mw = data.get("max_workers")
    if mw is not None and (not isinstance(mw, int) or isinstance(mw, bool) or mw < 1):
        problems.append(("max_workers", f"expected a positive integer, got {mw!r}"))
    spec.max_workers = mw
    for name, lo in (("seed", 0), ("retries", 0)):
        v = data.get(name)
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                problems.append((name, f"expected an integer >= {lo}, got {v!r}"))
            else:
                setattr(spec, name, v)
    if seed is not None:
        spec.seed = int(seed)
    st = data.get("strategy", "auto")
    if st not in ("auto", "serial", "spread"):
        problems.append(("strategy", f"expected one of 'auto', 'serial', 'spread', got {st!r}"))
    spec.strategy = st
    so = data.get("storage_options", {})
    if not isinstance(so, dict) or not all(isinstance(k, str) for k in so):
        problems.append(("storage_options", f"expected a mapping of fsspec storage options, got {type(so).__name__}"))
    else:
        spec.storage_options = so
    sh = data.get("shard_folders", False)
    if sh is True:
        spec.shard_folders = 2
    elif sh is False or sh is None:
        spec.shard_folders = 0
    elif isinstance(sh, int) and 1 <= sh <= 4:
        spec.shard_folders = sh
    else:
        problems.append(("shard_folders", f"expected true, false or a number of hex digits 1-4, got {sh!r}"))
    sc = data.get("sample_configs")
    if sc is not None:
        if not isinstance(sc, dict):
            problems.append(("sample_configs", "expected a mapping"))
        else:
            for k in sc:
                if k not in _SAMPLE_KEYS:
                    close = difflib.get_close_matches(k, _SAMPLE_KEYS, 1)
                    problems.append(
                        (f"sample_configs.{k}", "unknown key" + (f"; did you mean '{close[0]}'?" if close else ""))
                    )
            ns = sc.get("num_samples", 5)
            if not isinstance(ns, int) or isinstance(ns, bool) or ns < 1:
                problems.append(("sample_configs.num_samples", f"expected a positive integer, got {ns!r}"))
            spec.num_samples = ns
            fps = sc.get("frames_per_sample", 200)
            if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
                problems.append(("sample_configs.frames_per_sample", f"expected a positive integer, got {fps!r}"))
            spec.frames_per_sample = fps
            naming = sc.get("sample_naming", spec.sample_naming)
            try:
                naming.format(sample_id=1)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                problems.append(("sample_configs.sample_naming", f"must format with {{sample_id}}: {exc!r}"))
            spec.sample_naming = naming
    spec.grid = _grid_axes(data, base, problems)
    if problems:
        raise BatchConfigError(problems, src)
    return spec


#: Config keys holding file paths besides ``zmap_path``: the sCMOS per-pixel maps (``.npy``).
_MAP_KEYS = ("camera.scmos_offset", "camera.scmos_variance", "camera.scmos_gain")


def _paths_base(source: str | None) -> Path:
    """The folder relative paths of a batch config resolve against: its file's, else the current one."""
    return Path(source).resolve().parent if source else Path.cwd()


def resolve_user_paths(config: dict, base: str | os.PathLike) -> dict:
    """Make the file paths of one sample's config absolute, in place (and return it).

    ``zmap_path`` and the sCMOS maps (``camera.scmos_offset|variance|gain`` given as ``.npy``
    paths) are resolved against ``base`` (the batch config's folder, as the original tool did for
    ``zmap_path``), on the client, so that workers in another folder or on another host read the
    same files. Numbers and absolute paths are left as they are.
    """
    for k in ("zmap_path", *_MAP_KEYS):
        v = _get_dotted(config, k)
        if isinstance(v, str) and v and not os.path.isabs(os.path.expanduser(v)):
            _set_dotted(config, k, os.path.normpath(os.path.join(base, v)))
        elif isinstance(v, str) and v.startswith("~"):
            _set_dotted(config, k, os.path.expanduser(v))
    return config


def _grid_axes(data: Mapping, base: dict, problems: list) -> list[tuple[str, list]]:
    axes: list[tuple[str, list]] = []
    variables = data.get("variables")
    if variables is not None:
        if not isinstance(variables, dict):
            problems.append(("variables", "expected a mapping of dotted key -> list of values"))
        else:
            for k, vals in variables.items():
                if not isinstance(vals, list) or not vals:
                    problems.append((f"variables.{k}", "expected a non-empty list of values"))
                else:
                    axes.append((k, vals))
    vc = data.get("variable_configs")
    if vc is not None:
        if not isinstance(vc, dict):
            problems.append(("variable_configs", "expected a mapping of key name -> list of values"))
            return axes
        try:
            resolved = config_to_dict(load_config(base))
        except ConfigError:
            resolved = {}
        paths = sorted(set(_leaf_paths(resolved)) | set(_leaf_paths(base)))
        for leaf, vals in vc.items():
            if not isinstance(vals, list) or not vals:
                problems.append((f"variable_configs.{leaf}", "expected a non-empty list of values"))
                continue
            if "." in leaf:
                axes.append((leaf, vals))
                continue
            hits = sorted({p for p in paths if p.split(".")[-1] == leaf and not p.startswith("provenance")})
            if not hits:
                close = difflib.get_close_matches(leaf, sorted({p.split(".")[-1] for p in paths}), 1)
                problems.append(
                    (
                        f"variable_configs.{leaf}",
                        "no such key in the config" + (f"; did you mean '{close[0]}'?" if close else ""),
                    )
                )
            elif len(hits) > 1:
                problems.append(
                    (f"variable_configs.{leaf}", f"ambiguous: matches {', '.join(hits)}; use the dotted path")
                )
            else:
                axes.append((hits[0], vals))
    seen = set()
    for k, _ in axes:
        if k in seen:
            problems.append((k, "varied twice (variables and variable_configs)"))
        seen.add(k)
    return axes


def job_key(config: Mapping[str, Any], seed: int, name: str) -> str:
    """Hash of a job's fully resolved config, seed and name (stable across runs and machines)."""
    canon = json.dumps(
        {"schema": SCHEMA_VERSION, "config": config, "seed": int(seed), "name": name},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=str,
    )
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def job_seed(batch_seed: int, grid_index: int, sample_id: int) -> int:
    """The seed of the job at ``(grid_index, sample_id)``: a 64-bit integer spawned from the batch seed."""
    seq = np.random.SeedSequence(int(batch_seed), spawn_key=(int(grid_index), int(sample_id)))
    state = seq.generate_state(2, np.uint32)
    return (int(state[0]) << 32) | int(state[1])


def _fmt_value(v: Any) -> str:
    s = json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in s)


def expand_jobs(spec: BatchSpec) -> list[Job]:
    """All jobs of a batch, in order, each validated (errors name the job and key), as independent copies.

    For large batches iterate :class:`~z2t_dask.batch.grid.BatchJobs` instead: the same jobs, made
    on demand, each grid point validated once.
    """
    from z2t_dask.batch.grid import BatchJobs

    return [dataclasses.replace(j, config=copy.deepcopy(j.config), params=dict(j.params)) for j in BatchJobs(spec)]
