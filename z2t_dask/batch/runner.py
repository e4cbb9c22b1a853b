"""Batch engine: many samples × parameter grids as futures on dask.distributed.

A batch config holds a ``base_config`` (one sample's config) plus

* ``sample_configs``: ``num_samples`` samples with the same parameters and different seeds
  (``frames_per_sample``, ``sample_naming`` as in the original tool), and/or
* a grid: ``variables`` (dotted key paths → list of values, as the original) or
  ``variable_configs`` (leaf names such as ``num_emitters`` or ``roi_size`` resolved uniquely in
  the config schema; an ambiguous name is an error). Cartesian product in the given order; each
  grid point gets ``num_samples`` samples (folders ``<grid job>/<sample>``).

Every job gets a seed spawned from the batch ``seed`` and its position
(``SeedSequence(seed, spawn_key=(grid_index, sample_id))``: no correlated or colliding streams)
and a key: the hash of its fully resolved config, seed and name. Jobs run as
``client.submit(run_job, ..., key="z2t-job-<key>", retries=N)``; a job writes its sample folder
atomically and a marker ``z2t_job.json`` (key, outputs, checksums), so re-running it is a no-op.

Only this (client) process writes the manifest ``manifest.json`` in the output folder, after
every finished job: key, state, attempts, error and traceback, outputs and checksums, timings.
A rerun skips jobs done with the same key, redoes changed or unfinished ones, leaves failed
ones failed unless ``retry_failed``; the original ``batch_status.json`` is written beside it for
existing scripts. Exit codes: 0 all done, 1 some failed, 2 bad config.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from z2t_dask.errors import BatchConfigError
from z2t_dask.config import ConfigError, config_to_dict, load_config

__all__ = ["BatchConfigError", "BatchSpec", "Job", "BatchResult", "load_batch_config", "expand_jobs", "job_key",
           "run_job", "run_batch", "MANIFEST", "JOB_MARKER", "SCHEMA_VERSION"]

log = logging.getLogger("z2t_dask.batch")

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STATUS = "batch_status.json"
JOB_MARKER = "z2t_job.json"
LOG_FILE = "batch.log"
ATTEMPTS_DIR = ".z2t_attempts"

_TOP_KEYS = ("description", "version", "base_output_dir", "max_workers", "base_config", "sample_configs",
             "variables", "variable_configs", "seed", "retries", "strategy")
_SAMPLE_KEYS = ("num_samples", "frames_per_sample", "sample_naming", "description")
# keys that the original configs keep equal to the ROI size: varied together with it
_LINKED_TO_ROI = ("zernike.crop_size", "emitters.area_px")


@dataclass
class BatchSpec:
    """A validated batch config."""

    base_config: dict
    output_dir: Path
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


@dataclass
class Job:
    """One sample to produce."""

    index: int
    name: str                 # folder relative to the batch output dir
    params: dict              # grid values and sample id of this job
    config: dict              # fully resolved sample config
    seed: int
    key: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# config loading and job expansion
# --------------------------------------------------------------------------------------------

def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = copy.deepcopy(value)


def _get_dotted(d: Mapping, dotted: str, default: Any = None) -> Any:
    cur: Any = d
    for p in dotted.split("."):
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


def load_batch_config(source: str | os.PathLike | Mapping[str, Any], *, zmap: str | None = None,
                      output_dir: str | os.PathLike | None = None, seed: int | None = None) -> BatchSpec:
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
            problems.append((k, "unknown key" + (f"; did you mean '{close[0]}'?" if close else
                                                 f"; known keys: {', '.join(_TOP_KEYS)}")))
    base = data.get("base_config", {})
    if not isinstance(base, dict):
        problems.append(("base_config", "expected a mapping (one sample's config)"))
        base = {}
    base = copy.deepcopy(base)
    if zmap is not None:
        base["zmap_path"] = str(zmap)
    elif isinstance(base.get("zmap_path"), str) and src and not os.path.isabs(base["zmap_path"]):
        base["zmap_path"] = str(Path(src).resolve().parent / base["zmap_path"])
    zp = base.get("zmap_path")
    if isinstance(zp, str) and not Path(zp).is_file():
        problems.append(("base_config.zmap_path", f"Zmap file not found: {zp} (override with --zmap / zmap=)"))
    spec = BatchSpec(base_config=base, output_dir=Path(output_dir or data.get("base_output_dir") or "batch_output"),
                     description=str(data.get("description", "")), source=src)
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
    sc = data.get("sample_configs")
    if sc is not None:
        if not isinstance(sc, dict):
            problems.append(("sample_configs", "expected a mapping"))
        else:
            for k in sc:
                if k not in _SAMPLE_KEYS:
                    close = difflib.get_close_matches(k, _SAMPLE_KEYS, 1)
                    problems.append((f"sample_configs.{k}", "unknown key" + (f"; did you mean '{close[0]}'?"
                                                                            if close else "")))
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
                problems.append((f"variable_configs.{leaf}", "no such key in the config" +
                                 (f"; did you mean '{close[0]}'?" if close else "")))
            elif len(hits) > 1:
                problems.append((f"variable_configs.{leaf}", f"ambiguous: matches {', '.join(hits)}; "
                                 "use the dotted path"))
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
    canon = json.dumps({"schema": SCHEMA_VERSION, "config": config, "seed": int(seed), "name": name},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def job_seed(batch_seed: int, grid_index: int, sample_id: int) -> int:
    """The seed of the job at ``(grid_index, sample_id)``: a 64-bit integer spawned from the batch seed."""
    state = np.random.SeedSequence(int(batch_seed), spawn_key=(int(grid_index), int(sample_id))).generate_state(2, np.uint32)
    return (int(state[0]) << 32) | int(state[1])


def _fmt_value(v: Any) -> str:
    s = json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in s)


def expand_jobs(spec: BatchSpec) -> list[Job]:
    """All jobs of a batch, in order, each validated (errors name the job and key)."""
    keys = [k for k, _ in spec.grid]
    points = list(itertools.product(*[v for _, v in spec.grid])) if spec.grid else [()]
    samples = list(range(1, spec.num_samples + 1)) if spec.num_samples else [0]
    base_roi = _get_dotted(spec.base_config, "tiff.roi_size")
    jobs: list[Job] = []
    problems: list[tuple[str, str]] = []
    names: set[str] = set()
    for gi, point in enumerate(points):
        grid_name = ("job_%04d_" % gi + "_".join(f"{k.split('.')[-1]}_{_fmt_value(v)}" for k, v in zip(keys, point))
                     if spec.grid else "")
        for sid in samples:
            cfg = copy.deepcopy(spec.base_config)
            params: dict[str, Any] = {}
            for k, v in zip(keys, point):
                _set_dotted(cfg, k, v)
                params[k] = v
                if k == "tiff.roi_size" and base_roi is not None:
                    for linked in _LINKED_TO_ROI:
                        if _get_dotted(spec.base_config, linked) == base_roi:
                            _set_dotted(cfg, linked, v)
            if spec.frames_per_sample:
                _set_dotted(cfg, "emitters.frames", spec.frames_per_sample)
            sample_name = spec.sample_naming.format(sample_id=sid) if sid else ""
            if sid:
                params["sample_id"] = sid
                if isinstance(_get_dotted(cfg, "tiff"), dict):
                    cfg["tiff"]["filename"] = f"{sample_name}.ome.tiff"
            name = "/".join(p for p in (grid_name, sample_name) if p) or "single_job"
            if name in names:
                problems.append((name, "two jobs get the same folder name (check sample_naming)"))
            names.add(name)
            seed = job_seed(spec.seed, gi, sid)
            _set_dotted(cfg, "emitters.seed", seed)
            try:
                resolved = config_to_dict(load_config(cfg))
            except ConfigError as exc:
                problems.extend((f"{name}: {k}", m) for k, m in exc.problems)
                continue
            jobs.append(Job(index=len(jobs), name=name, params=params, config=resolved, seed=seed,
                            key=job_key(resolved, seed, name)))
    if problems:
        raise BatchConfigError(problems, spec.source)
    return jobs


# --------------------------------------------------------------------------------------------
# the job (runs on a worker)
# --------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _outputs(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != JOB_MARKER:
            out[str(p.relative_to(folder))] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return out


def _bump_attempts(out_root: Path, key: str) -> int:
    d = out_root / ATTEMPTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    p = d / key
    n = int(p.read_text() or 0) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


def read_attempts(out_root: Path, key: str) -> int:
    p = Path(out_root) / ATTEMPTS_DIR / key
    try:
        return int(p.read_text())
    except (OSError, ValueError):
        return 0


def finished_marker(folder: Path, key: str) -> dict | None:
    """The marker of a finished job folder if it matches ``key`` and its outputs exist with their sizes."""
    m = folder / JOB_MARKER
    try:
        info = json.loads(m.read_text())
    except (OSError, ValueError):
        return None
    if info.get("key") != key:
        return None
    for rel, meta in info.get("outputs", {}).items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != meta.get("bytes"):
            return None
    return info


def run_job(job: Job | Mapping[str, Any], out_root: str | os.PathLike, *, strategy: str = "serial") -> dict:
    """Produce one job's sample folder (idempotent). Returns small metadata, never arrays.

    ``strategy="serial"`` computes the sample's graph in this task; ``"spread"`` hands it to the
    cluster through ``worker_client()`` so one large sample uses every worker.
    """
    from z2t_dask.io.atomic import atomic_path
    from z2t_dask.sample import simulate

    if isinstance(job, Mapping):
        job = Job(**job)
    root = Path(out_root)
    folder = root / job.name
    done = finished_marker(folder, job.key)
    if done is not None:
        return {**done, "reused": True}
    attempt = _bump_attempts(root, job.key)
    t0 = time.time()
    sample = simulate(job.config, seed=job.seed)
    if strategy == "spread":
        from distributed import worker_client

        with worker_client() as client:
            sample.save(folder, overwrite=True, scheduler=client.get)
    else:
        sample.save(folder, overwrite=True, scheduler="sync")
    info = {"key": job.key, "name": job.name, "seed": job.seed, "params": job.params,
            "outputs": _outputs(folder), "seconds": round(time.time() - t0, 3), "attempt": attempt,
            "frames": int(sample.frames.shape[0]), "records": int(sample.truth.n_records),
            "finished": time.time(), "host": os.uname().nodename, "pid": os.getpid()}
    with atomic_path(folder / JOB_MARKER) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1, sort_keys=True, default=str))
    return info


# --------------------------------------------------------------------------------------------
# the client side
# --------------------------------------------------------------------------------------------

@dataclass
class BatchResult:
    """Outcome of :func:`run_batch`: per-job entries of the manifest and the exit code."""

    output_dir: Path
    jobs: dict[str, dict]
    seconds: float
    dashboard_link: str | None = None

    def states(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, j in self.jobs.items():
            out.setdefault(j["state"], []).append(name)
        return out

    @property
    def failed(self) -> list[str]:
        return sorted(n for n, j in self.jobs.items() if j["state"] == "failed")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or any(j["state"] not in ("done", "skipped") for j in self.jobs.values()) else 0

    def summary(self) -> str:
        """Human summary: done / skipped / failed, with errors and output paths."""
        s = self.states()
        lines = [f"batch {self.output_dir}: {len(self.jobs)} jobs in {self.seconds:.1f} s: "
                 f"{len(s.get('done', []))} done, {len(s.get('skipped', []))} skipped (already done), "
                 f"{len(s.get('failed', []))} failed" +
                 "".join(f", {len(v)} {k}" for k, v in s.items() if k not in ("done", "skipped", "failed"))]
        for name in self.failed:
            err = (self.jobs[name].get("error") or "").strip().splitlines()
            lines.append(f"  FAILED {name}: {err[-1] if err else '?'} (attempts: {self.jobs[name].get('attempts')})")
        lines.append(f"  manifest: {self.output_dir / MANIFEST}")
        return "\n".join(lines)


class _Manifest:
    """The client-owned manifest (``manifest.json``) and the original ``batch_status.json``."""

    def __init__(self, out: Path, spec: BatchSpec, resume: bool):
        self.out = out
        self.path = out / MANIFEST
        self.data: dict[str, Any] = {"schema": SCHEMA_VERSION, "jobs": {}, "runs": []}
        if resume and self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                if loaded.get("schema") == SCHEMA_VERSION:
                    self.data = loaded
            except ValueError:
                log.warning("manifest %s unreadable; starting a new one", self.path)
        self.data["batch"] = {"description": spec.description, "source": spec.source, "seed": spec.seed,
                              "retries": spec.retries}
        self.completed_order: list[str] = []
        self.session_start = time.time()

    @property
    def jobs(self) -> dict[str, dict]:
        return self.data["jobs"]

    def write(self) -> None:
        from z2t_dask.io.atomic import atomic_path

        self.data["updated"] = time.time()
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(self.data, indent=1, sort_keys=True, default=str))
        status = {"completed_jobs": self.completed_order + sorted(
                      n for n, j in self.jobs.items() if j["state"] in ("done", "skipped")
                      and n not in self.completed_order),
                  "failed_jobs": [{"job_id": n, "error": (j.get("error") or "").strip().splitlines()[-1:][0]
                                   if j.get("error") else "", "timestamp": j.get("finished")}
                                  for n, j in sorted(self.jobs.items()) if j["state"] == "failed"],
                  "start_time": self.session_start, "last_update": time.time()}
        with atomic_path(self.out / STATUS) as tmp:
            Path(tmp).write_text(json.dumps(status, indent=2))


def _progress_line(done: int, failed: int, total: int, t0: float) -> str:
    width = 30
    frac = (done + failed) / total if total else 1.0
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    return f"\r[{bar}] {done + failed}/{total} ({done} ok, {failed} failed) {time.time() - t0:6.1f} s"


class _ProgressBar:
    """A job progress bar: an ipywidgets bar in a Jupyter kernel, a text bar on stderr otherwise."""

    def __init__(self, total: int):
        self.total, self.t0, self.widget = total, time.time(), None
        try:
            from distributed.utils import is_kernel

            if is_kernel():
                import ipywidgets
                from IPython.display import display

                self.widget = ipywidgets.IntProgress(min=0, max=total, description="z2t batch")
                self.label = ipywidgets.Label(f"0/{total}")
                display(ipywidgets.HBox([self.widget, self.label]))
        except Exception:   # no IPython / ipywidgets: text bar
            self.widget = None

    def update(self, done: int, failed: int) -> None:
        if self.widget is not None:
            self.widget.value = done + failed
            self.widget.bar_style = "danger" if failed else ""
            self.label.value = f"{done + failed}/{self.total} ({failed} failed) {time.time() - self.t0:.1f} s"
        else:
            print(_progress_line(done, failed, self.total, self.t0), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.widget is None:
            print(file=sys.stderr)


def _clean_stale_temps(out: Path) -> int:
    n = 0
    for p in list(out.rglob(".*.tmp-*")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    return n


def _add_log_file(out: Path) -> logging.Handler:
    h = logging.FileHandler(out / LOG_FILE)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    h.setLevel(logging.INFO)
    log.addHandler(h)
    log.setLevel(min(log.level or logging.INFO, logging.INFO))
    return h


def run_batch(config: str | os.PathLike | Mapping[str, Any] | BatchSpec, client: Any = None, *,
              max_workers: int | None = None, retries: int | None = None, resume: bool = True,
              retry_failed: bool = False, clean: bool = False, strategy: str | None = None,
              progress: bool | Callable[[dict], None] = True, dashboard: bool = False, slurm: Any = None,
              output_dir: str | os.PathLike | None = None, zmap: str | None = None, seed: int | None = None,
              job_fn: Callable[..., dict] | None = None) -> BatchResult:
    """Run a batch on a Dask cluster; resumable.

    Parameters
    ----------
    config
        Batch config (path, mapping or :class:`BatchSpec`).
    client
        ``None`` (reuse the current client or start a LocalCluster with ``max_workers``), a
        ``distributed.Client``, a scheduler address ``"tcp://host:8786"`` or a Cluster.
    retries
        Retries per job on exceptions (default: the config's ``retries``, else 2). A worker that
        dies is handled by Dask (``distributed.scheduler.allowed-failures``); a job that keeps
        killing workers ends failed with "this job kills workers: memory?".
    resume, retry_failed, clean
        ``resume=False`` ignores the manifest (every job redone, outputs overwritten as jobs
        finish); ``clean=True`` with it deletes the job folders first. ``retry_failed`` redoes
        jobs that failed in an earlier run (otherwise they stay failed).
    strategy
        ``"serial"`` (one task per job, its graph computed inside), ``"spread"`` (each job's graph
        spread over the cluster via ``worker_client``) or ``"auto"`` (serial when there are at
        least twice as many jobs as worker threads).
    progress
        ``True`` for a progress bar on stderr, ``False`` for none, or a callback receiving each
        finished job's manifest entry.
    job_fn
        The task function (default :func:`run_job`); must be importable by the workers.
    """
    from z2t_dask.batch.cluster import resolve_client

    spec = config if isinstance(config, BatchSpec) else load_batch_config(config, zmap=zmap, output_dir=output_dir,
                                                                          seed=seed)
    if output_dir is not None and isinstance(config, BatchSpec):
        spec.output_dir = Path(output_dir)
    jobs = expand_jobs(spec)
    out = spec.output_dir
    out.mkdir(parents=True, exist_ok=True)
    handler = _add_log_file(out)
    t_start = time.time()
    try:
        stale = _clean_stale_temps(out)
        if stale:
            log.info("removed %d temporary leftovers of an interrupted run", stale)
        if clean and not resume:
            for job in jobs:
                shutil.rmtree(out / job.name, ignore_errors=True)
        manifest = _Manifest(out, spec, resume)
        n_retries = spec.retries if retries is None else int(retries)
        to_run: list[Job] = []
        for job in jobs:
            prev = manifest.jobs.get(job.name)
            entry = {"key": job.key, "seed": job.seed, "params": job.params, "index": job.index,
                     "attempts": prev.get("attempts", 0) if prev and prev.get("key") == job.key else 0}
            if resume and prev and prev.get("key") == job.key and prev.get("state") in ("done", "skipped") \
                    and finished_marker(out / job.name, job.key) is not None:
                manifest.jobs[job.name] = {**prev, "state": "skipped"}
                continue
            if resume and prev and prev.get("key") == job.key and prev.get("state") == "failed" and not retry_failed:
                continue
            if prev and prev.get("key") != job.key:
                log.info("job %s: config changed (key %s -> %s): redo", job.name, prev.get("key"), job.key)
            manifest.jobs[job.name] = {**entry, "state": "pending"}
            to_run.append(job)
        in_batch = {j.name for j in jobs}
        for name, j in manifest.jobs.items():
            if name not in in_batch:
                j["state"] = "not-in-batch"
        manifest.data["runs"].append({"started": t_start, "jobs": len(jobs), "to_run": len(to_run)})
        manifest.write()
        log.info("batch %s: %d jobs, %d to run, output %s", spec.source or "<dict>", len(jobs), len(to_run), out)
        dashboard_link = None
        if to_run:
            with resolve_client(client, max_workers=max_workers or spec.max_workers, dashboard=dashboard,
                                slurm=slurm) as c:
                if dashboard or slurm is not None:
                    dashboard_link = getattr(c, "dashboard_link", None)
                    if dashboard_link:
                        print(f"Dask dashboard: {dashboard_link}", file=sys.stderr)
                        log.info("dashboard %s", dashboard_link)
                threads = sum(c.nthreads().values()) or 1
                chosen = strategy or spec.strategy
                if chosen == "auto":
                    chosen = "serial" if len(to_run) >= 2 * threads else "spread"
                log.info("strategy %s (%d jobs, %d worker threads), retries %d", chosen, len(to_run), threads,
                         n_retries)
                _execute(c, to_run, manifest, out, job_fn or run_job, chosen, n_retries, progress)
        stale = _clean_stale_temps(out)      # e.g. the temp folder of a worker that was killed mid-job
        if stale:
            log.info("removed %d temporary leftovers of killed or interrupted jobs", stale)
        manifest.data["runs"][-1]["finished"] = time.time()
        manifest.write()
        result = BatchResult(out, {n: j for n, j in manifest.jobs.items() if n in in_batch},
                             time.time() - t_start, dashboard_link)
        log.info("%s", result.summary())
        return result
    finally:
        log.removeHandler(handler)
        handler.close()


def _execute(c: Any, to_run: list[Job], manifest: _Manifest, out: Path, fn: Callable, strategy: str,
             retries: int, progress: bool | Callable) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = {}
    for job in to_run:
        manifest.jobs[job.name]["state"] = "running"
        manifest.jobs[job.name]["submitted"] = time.time()
        fut = c.submit(fn, job.to_dict(), str(out), strategy=strategy, key=f"z2t-job-{job.key}",
                       retries=retries, pure=False)
        futures[fut] = job
    manifest.write()
    n_done = n_failed = 0
    bar = _ProgressBar(len(futures)) if progress is True else None
    try:
        for fut in as_completed(list(futures), loop=c.loop):
            job = futures[fut]
            entry = manifest.jobs[job.name]
            if fut.status == "finished":
                info = fut.result()
                entry.update({"state": "done", "outputs": info.get("outputs", {}), "seconds": info.get("seconds"),
                              "finished": info.get("finished", time.time()), "error": None, "traceback": None,
                              "attempts": read_attempts(out, job.key) or info.get("attempt", 1),
                              "host": info.get("host"), "records": info.get("records"),
                              "frames": info.get("frames")})
                manifest.completed_order.append(job.name)
                n_done += 1
                log.info("done %s in %ss", job.name, info.get("seconds"))
            else:
                exc = fut.exception()
                if isinstance(exc, KilledWorker):
                    msg = (f"this job kills workers (memory?): {exc}; the worker running it died "
                           "repeatedly (distributed.scheduler.allowed-failures)")
                else:
                    msg = f"{type(exc).__name__}: {exc}"
                trace = "".join(tb.format_tb(fut.traceback())) if fut.traceback() is not None else ""
                entry.update({"state": "failed", "error": msg, "traceback": trace, "finished": time.time(),
                              "attempts": read_attempts(out, job.key)})
                n_failed += 1
                log.error("failed %s: %s", job.name, msg)
            fut.release()
            manifest.write()
            if bar is not None:
                bar.update(n_done, n_failed)
            elif callable(progress):
                progress({"name": job.name, **entry})
    except KeyboardInterrupt:
        for fut, job in futures.items():
            if manifest.jobs[job.name]["state"] == "running":
                manifest.jobs[job.name]["state"] = "interrupted"
            fut.cancel()
        manifest.write()
        raise
    finally:
        if bar is not None:
            bar.close()
