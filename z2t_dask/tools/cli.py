"""The ``z2t`` command line.

``z2t simulate``  one sample from a config (no config: the built-in default, no user data needed)
``z2t render``    render an existing ``emitters.h5`` (e.g. one the original tool wrote) to OME-TIFF, OME-Zarr or HDF5
``z2t batch``     many samples / parameter grids on a Dask cluster (local, scheduler address, SLURM)
``z2t preview``   PNG of frames with ground-truth markers, or of a Zmap's coefficient maps and PSFs
``z2t inspect``   summary (or ``--json``) of a sample folder, batch folder, Zmap, emitters.h5 or stack
``z2t export``    ground truth of a sample or batch folder for ThunderSTORM, DECODE, Picasso or SMAP

Exit codes: 0 success; 2 bad configuration or input (any :class:`~z2t_dask.errors.Z2TError`,
or an OS error about the user's paths or a full disk: the message names the key or file);
1 anything else ("internal error": a bug of ours, ``-v`` prints the traceback), and for ``z2t batch``
also "some jobs finally failed"; 3 ``z2t inspect --verify`` found files that differ from their
checksums; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, e.g. ``timeout`` or a SLURM walltime:
cleaned up like Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from z2t_dask.errors import Z2TError, interrupt_of
from z2t_dask.tools.cli_view import add_view_parsers, run_inspect, run_preview
from z2t_dask.tools.interrupts import EXIT_TERMINATED, Terminated
from z2t_dask.tools.interrupts import sigterm_interrupts as _sigterm_interrupts

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` (else argparse's usage error naming the option, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    from z2t_dask import __version__

    p = argparse.ArgumentParser(prog="z2t", description="Simulate SMLM movies (z2t-dask).")
    p.add_argument("--version", action="version", version=f"z2t-dask {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "simulate", help="simulate one sample folder (<output-dir>/<name>/<name>.ome.tiff|.ome.zarr|.h5 + emitters.h5)"
    )
    s.add_argument(
        "--config",
        help="JSON/YAML config (pipeline config, batch config's base_config, or original "
        "default_config.json / camera_parameters.json); default: built-in",
    )
    s.add_argument("--camera", help="original camera_parameters.json applied over the config")
    s.add_argument("--zmap", help="Zmap file (result.h5 / patches.h5); overrides zmap_path")
    s.add_argument("--output-dir", default="output", help="parent folder (default: output) or URL (s3://b/prefix)")
    s.add_argument("--name", default=None, help="sample folder name (default: sample_<seed:03d>)")
    s.add_argument(
        "--seed", type=_int_at_least(0), default=None, help="sample seed >= 0 (default: emitters.seed, else 0)"
    )
    s.add_argument("--frames", type=_int_at_least(1), default=None, help="override emitters.frames (>= 1)")
    s.add_argument("--chunk-size", type=_int_at_least(1), default=None, help="frames per dask chunk (>= 1)")
    s.add_argument(
        "--compression",
        default=None,
        help="stack compression the format offers (ome-tiff, ome-zarr: zstd, zlib, none; hdf5: none, zlib, "
        "lzf); default from the config",
    )
    s.add_argument(
        "--format",
        default=None,
        help="stack format of the format registry: ome-tiff, ome-zarr, hdf5 or one registered by a plugin "
        "(default: output.format, else ome-tiff); ome-zarr reruns resume",
    )
    s.add_argument(
        "--tile-size",
        type=_int_at_least(1),
        default=None,
        help="y/x tile side in px (default: render.tile_size / auto)",
    )
    s.add_argument(
        "--no-streaming",
        action="store_true",
        help="compute the whole stack in memory before writing "
        "(refused beyond render.memory_budget_mb / the available memory)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing sample folder")

    r = sub.add_parser(
        "render", help="render an existing emitters.h5 into an OME-TIFF, OME-Zarr or HDF5 stack (streaming by default)"
    )
    r.add_argument("--h5", required=True, help="emitters.h5 with emitters/*, records/* (and zernike_coeffs/*)")
    r.add_argument("--output", required=True, help="output path: .ome.tiff, .ome.zarr or .h5")
    r.add_argument(
        "--config",
        help="config for optics, geometry and camera (default: the config stored in the emitters.h5 by z2t, else the "
        "built-in one); geometry that differs from the stored config is reported",
    )
    r.add_argument(
        "--chunk-size", type=_int_at_least(1), default=None, help="frames per chunk (the original's --chunk_size)"
    )
    r.add_argument(
        "--no-streaming",
        action="store_true",
        help="compute the whole stack in memory before writing "
        "(refused beyond render.memory_budget_mb / the available memory)",
    )
    r.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the camera-noise streams (default 0)")
    r.add_argument("--compression", default=None, help="stack compression the format offers (see simulate)")
    r.add_argument(
        "--format", default=None, help="stack format of the format registry (default: from the --output suffix)"
    )
    r.add_argument(
        "--tile-size",
        type=_int_at_least(1),
        default=None,
        help="y/x tile side in px (default: render.tile_size / auto)",
    )
    b = sub.add_parser("batch", help="run a batch (samples x parameter grid) on a Dask cluster; resumable")
    b.add_argument(
        "--config",
        required=True,
        help="batch config (base_config + sample_configs and/or variables / variable_configs)",
    )
    b.add_argument(
        "--max-workers", type=_int_at_least(1), default=None, help="LocalCluster workers (default: config, else cores)"
    )
    b.add_argument("--retries", type=_int_at_least(0), default=None, help="retries per job on exceptions (default 2)")
    b.add_argument("--retry-failed", action="store_true", help="redo jobs that failed in an earlier run")
    b.add_argument("--no-resume", action="store_true", help="ignore the manifest: redo every job")
    b.add_argument("--clean", action="store_true", help="with --no-resume: delete the job folders first")
    b.add_argument(
        "--verify",
        action="store_true",
        help="before skipping a finished job, recompute the sha256 of its files (default: sizes and modification "
        "times); a job whose files differ from their checksums is redone",
    )
    where = b.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--slurm", help="YAML with SLURM settings (queue, cores, memory, walltime, jobs, ...)")
    b.add_argument("--dashboard", action="store_true", help="start the Dask dashboard and print its link")
    b.add_argument(
        "--strategy",
        choices=["auto", "serial", "spread"],
        default=None,
        help="one task per job (serial) or each job's graph over the cluster (spread)",
    )
    b.add_argument("--zmap", help="Zmap file overriding base_config.zmap_path")
    b.add_argument("--output-dir", help="overrides base_output_dir; a URL (s3://bucket/prefix) writes to a store")
    b.add_argument("--state-dir", help="with a URL output: local folder of the manifest, lock and log")
    b.add_argument(
        "--seed", type=_int_at_least(0), default=None, help="batch seed >= 0 (job seeds are spawned from it)"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_view_parsers(sub)
    from z2t_dask.tools.export import add_parser as add_export_parser  # issue 14: files SMLM tools load

    add_export_parser(sub)
    return p


def _batch(args: argparse.Namespace) -> int:
    from z2t_dask.batch import run_batch

    result = run_batch(
        args.config,
        client=args.scheduler,
        max_workers=args.max_workers,
        retries=args.retries,
        resume=not args.no_resume,
        retry_failed=args.retry_failed,
        clean=args.clean,
        verify=args.verify,
        strategy=args.strategy,
        progress=not args.no_progress,
        dashboard=args.dashboard,
        slurm=args.slurm,
        output_dir=args.output_dir,
        zmap=args.zmap,
        seed=args.seed,
        state_dir=args.state_dir,
    )
    print(result.summary())
    return result.exit_code


def _simulate(args: argparse.Namespace) -> int:
    from z2t_dask.config import load_config
    from z2t_dask.engine.budget import check_resources
    from z2t_dask.io.formats import get_format
    from z2t_dask.sample import simulate
    from z2t_dask.tools.sizes import check_output_room

    overrides: dict[str, Any] = {"emitters": {"frames": args.frames}} if args.frames is not None else {}
    if args.zmap:  # validated with the Zmap it will use (the ROI is checked against it, not the synthetic one)
        overrides["zmap_path"] = args.zmap
    cfg = load_config(args.config, camera=args.camera, overrides=overrides or None)
    t = time.perf_counter()
    entry = get_format(args.format or cfg.output.format, "--format")  # the format registry's entry
    entry.check_compression(args.compression, key="--compression")  # FormatError: exit 2
    seed = args.seed if args.seed is not None else (cfg.emitters.seed if cfg.emitters.seed is not None else 0)
    name = args.name or f"sample_{seed:03d}"
    from z2t_dask.io.remote import SAMPLE_MARKER, RemoteFolder, is_url, store_errors

    remote = is_url(args.output_dir)  # a store (s3://, gs://, memory://, file://): passed as is
    out: Any = f"{str(args.output_dir).rstrip('/')}/{name}" if remote else Path(args.output_dir) / name
    with store_errors(str(out)):  # no bucket, credentials or endpoint: exit 2 naming the URL
        exists = (RemoteFolder(out) / SAMPLE_MARKER).exists() if remote else out.exists()
    if exists and not args.overwrite:
        print(f"z2t simulate: {out} exists; use --overwrite or another --name/--seed", file=sys.stderr)
        return EXIT_BAD_INPUT
    # sizes, up front: memory (ConfigError naming the key) and the disk of the output folder
    estimate = check_resources(cfg, chunk_frames=args.chunk_size, tile_size=args.tile_size)
    if not remote:
        check_output_room(cfg, entry, args.compression, out / entry.filename(name), estimate)
    sample = simulate(cfg, seed=seed, chunk_frames=args.chunk_size, tile_size=args.tile_size)
    sample.save(
        out, format=entry.name, compression=args.compression, overwrite=args.overwrite, streaming=not args.no_streaming
    )  # MemoryBudgetError: exit 2
    dt = time.perf_counter() - t
    T, H, W = sample.frames.shape[0], sample.frames.shape[-2], sample.frames.shape[-1]
    H = f"{sample.frames.shape[1]} channels {H}" if sample.frames.ndim == 4 else H  # (T, C, Y, X)
    print(
        f"wrote {out}/{entry.filename(name)} ({T} frames {H}x{W} {sample.frames.dtype}) and {out}/emitters.h5 "
        f"({sample.truth.n_emitters} emitters, {sample.truth.n_records} records) in {dt:.2f} s"
    )
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from z2t_dask.engine.budget import estimate_resources
    from z2t_dask.io.formats import format_from_path, get_format
    from z2t_dask.sample import load_sample_h5, write_stack
    from z2t_dask.tools.sizes import check_output_room

    if not Path(args.h5).is_file():
        print(f"z2t render: --h5 file not found: {args.h5}", file=sys.stderr)
        return EXIT_BAD_INPUT
    t = time.perf_counter()
    out = Path(args.output)
    entry = get_format(args.format or format_from_path(out), "--format")  # from the suffix, else ome-tiff
    entry.check_compression(args.compression, key="--compression")  # FormatError: exit 2

    sample = load_sample_h5(  # without --config: the config stored in the file (z2t wrote it), else built-in
        args.h5,
        args.config,
        seed=args.seed,
        chunk_frames=args.chunk_size,
        tile_size=args.tile_size,
        report=lambda message: print(f"z2t render: warning: {message}", file=sys.stderr),
    )
    estimate = estimate_resources(
        sample.config,
        n_emitters=sample.truth.n_emitters,
        n_records=sample.truth.n_records,
        chunk_frames=args.chunk_size,
        tile_size=args.tile_size,
    )
    check_output_room(sample.config, entry, args.compression, out, estimate)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_stack(sample, out, format=entry.name, compression=args.compression, streaming=not args.no_streaming)
    T, H, W = sample.frames.shape[0], sample.frames.shape[-2], sample.frames.shape[-1]
    H = f"{sample.frames.shape[1]} channels {H}" if sample.frames.ndim == 4 else H  # (T, C, Y, X)
    print(f"wrote {out} ({T} frames {H}x{W} {sample.frames.dtype}) in {time.perf_counter() - t:.2f} s")
    return EXIT_OK


#: OS errors that are about the user's paths or disk (exit 2), not about the package.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
#: errno values of a full disk or a file-size limit (exit 2: the message says so).
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _is_user_path_error(exc: OSError) -> bool:
    """True for an OS error about the user's paths or disk space (missing, exists, denied, full)."""
    return isinstance(exc, _USER_OS_ERRORS) or exc.errno in _DISK_ERRNOS


def _path_error_message(exc: OSError) -> str:
    """One line naming the path of an OS error about the user's paths, disk or file-size limit.

    Our own messages (no ``[Errno n]`` prefix) are kept; the OS's ones are reworded: a path under a
    regular file, permission denied, missing, existing, a full disk or a file-size limit.
    """
    from z2t_dask.io.space import output_space_error

    where = exc.filename if exc.filename is not None else "the output"
    space = output_space_error(exc, where)
    if space is not None:
        return str(space)
    if exc.filename is None or not str(exc).startswith("[Errno"):
        return str(exc)
    path = Path(os.fsdecode(exc.filename))
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if isinstance(exc, (NotADirectoryError, FileExistsError)) and blocker is not None:
        return f"cannot create or write {path}: {blocker} is a file, not a folder"
    if isinstance(exc, PermissionError):
        return f"cannot write or read {path}: permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {path}"
    if isinstance(exc, FileExistsError):
        return f"{path} already exists"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a folder, not a file"
    return f"{path}: {exc.strerror or exc}"


def _interrupted(args: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    """Report Ctrl-C (exit 130) or SIGTERM (:class:`Terminated`, exit 143) in one line."""
    if isinstance(exc, Terminated):
        print(f"z2t {args.command}: terminated (SIGTERM); no output was left half-written", file=sys.stderr)
        return EXIT_TERMINATED
    print(f"z2t {args.command}: interrupted; no output was left half-written", file=sys.stderr)
    return 130


def _internal_error(args: argparse.Namespace, exc: BaseException) -> int:
    """Report an unexpected exception as our bug (exit 1); the traceback with ``-v``."""
    if args.verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(
        f"z2t {args.command}: internal error ({type(exc).__name__}: {exc}); this is a bug in z2t-dask, "
        "not in your input: run with -v for the traceback and report it",
        file=sys.stderr,
    )
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``z2t`` console script; returns the exit code.

    0 success; 1 internal error (a bug); 2 bad input, path, full disk or file-size limit (``z2t`` alone:
    the help); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). Interrupted or terminated, nothing is
    left under a final output name and the temporaries are removed.

    Without ``argv`` (the console script, ``python -m``: the process ends next) the heap is frozen
    (:func:`gc.freeze`) before returning: the interpreter's teardown then frees objects without
    traversing them for reference cycles, 0.3-0.6 s less at the end of a ``z2t batch`` on the
    reference machine (SciPy, h5py, Dask imported). Every file is closed by then; ``atexit``
    handlers (log files, temporary folders) still run.
    """
    code = _main(argv)
    if argv is None:
        gc.freeze()
    return code


def _batch_workers_early(argv: Sequence[str]) -> bool:
    """``z2t batch`` on a private LocalCluster: start its workers' forkserver now; whether this was done.

    The forkserver's imports and warm-up (:mod:`z2t_dask.batch.forkserver`, about 2.5 s of CPU, the
    longest part of a batch's start) then run while this process imports NumPy and Dask and reads
    the batch config (about 0.4 s), not after. Not for ``--scheduler``, ``--slurm`` or ``--help``,
    nor for an ``--output-dir`` that exists (a rerun, which may have nothing left to run).
    """
    words = [a for a in argv if a not in ("-v", "--verbose")]
    if not words or words[0] != "batch":
        return False
    if {a.split("=", 1)[0] for a in words[1:]} & {"--scheduler", "--slurm", "-h", "--help"}:
        return False
    for i, a in enumerate(words[1:], 1):
        out = a.split("=", 1)[1] if a.startswith("--output-dir=") else None
        if a == "--output-dir" and i + 1 < len(words):
            out = words[i + 1]
        if out and "://" not in out and Path(out).exists():
            return False
    from z2t_dask.batch.forkserver import start_forkserver_early

    return start_forkserver_early()


def _main(argv: Sequence[str] | None) -> int:
    """:func:`main`'s work: parse ``argv`` (None: ``sys.argv``), run the command, map errors to exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _batch_workers_early(argv)
    parser = build_parser()
    if not [a for a in argv if a not in ("-v", "--verbose")]:  # `z2t` alone: the help, as argparse errors
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:  # library loggers may log INFO to their own files
        handler.setLevel(level)
    try:
        with _sigterm_interrupts():
            if args.command == "simulate":
                return _simulate(args)
            if args.command == "render":
                return _render(args)
            if args.command == "batch":
                return _batch(args)
            if args.command == "preview":
                return run_preview(args)
            if args.command == "inspect":
                return run_inspect(args)
            if args.command == "export":
                from z2t_dask.tools.export import run as export

                return export(args)
    except Z2TError as exc:  # the user's input: the message says what to fix
        print(f"z2t {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc)
    except BrokenPipeError:  # e.g. `z2t inspect … | head`: the reader left, not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover
            pass
        return EXIT_OK
    except OSError as exc:
        if not _is_user_path_error(exc):
            return _internal_error(args, exc)
        print(f"z2t {args.command}: {_path_error_message(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # our bug: say so, never pretend it is bad input
        interrupt = interrupt_of(exc)  # unless Ctrl-C raised it (a lock released inside Condition.wait)
        return _internal_error(args, exc) if interrupt is None else _interrupted(args, interrupt)
    return EXIT_FAILED  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
