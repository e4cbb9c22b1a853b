"""``z2t preview`` and ``z2t inspect``: their arguments and commands (looking at outputs).

Part of :mod:`z2t_dask.tools.cli`, which dispatches to :func:`run_preview` and :func:`run_inspect`
and maps their errors to exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_view_parsers", "run_inspect", "run_preview"]

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_view_parsers(sub: argparse._SubParsersAction) -> None:
    """``z2t preview`` and ``z2t inspect`` (issue 6: looking at outputs)."""
    v = sub.add_parser(
        "preview",
        help="PNG preview: frames with ground-truth markers and a photon histogram, or a "
        'Zmap\'s coefficient maps and PSFs (needs matplotlib: pip install "z2t-dask[plot]")',
    )
    v.add_argument(
        "path",
        help="sample folder, batch folder (its first finished job), Zmap .h5, emitters.h5, frame "
        "stack, config file, or 'default' (the built-in config's Zmap and PSFs)",
    )
    v.add_argument("-o", "--output", default=None, help="PNG to write (default: <name>_preview.png here)")
    v.add_argument("--frames", type=int, default=6, help="frames in the montage (default 6)")
    v.add_argument(
        "--config", default=None, help="config whose optics make the PSFs of a Zmap preview (default: built-in)"
    )
    v.add_argument(
        "--compare-scalar", action="store_true", help="Zmap/config preview: scalar and vectorial PSFs side by side"
    )
    i = sub.add_parser(
        "inspect", help="summarise a sample folder, batch folder (every job's state), Zmap, emitters.h5 or frame stack"
    )
    i.add_argument("path", help="sample folder, batch folder, Zmap .h5, emitters.h5 or frame stack")
    i.add_argument(
        "--json", action="store_true", help="print the summary as JSON (one line: fast for 100,000-job batches)"
    )
    i.add_argument(
        "--export-manifest",
        action="store_true",
        help="batch folder: also (re)write manifest.json and batch_status.json from its manifest store "
        "(safe while the batch runs)",
    )
    i.add_argument(
        "--verify",
        action="store_true",
        help="batch or sample folder: recompute the sha256 of every finished job's files and compare them with "
        "the recorded checksums (exit 3 if any differ)",
    )


def run_preview(args: argparse.Namespace) -> int:
    from z2t_dask.tools.preview import preview

    if not Path(args.path).exists() and args.path != "default":
        print(f"z2t preview: no such file or folder: {args.path}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = preview(args.path, args.output, n_frames=args.frames, config=args.config, compare_scalar=args.compare_scalar)
    print(f"wrote {out}")
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    import json

    from z2t_dask.io.remote import is_url
    from z2t_dask.tools.summary import format_summary, summarize

    if not is_url(args.path) and not Path(args.path).exists():
        print(f"z2t inspect: no such file or folder: {args.path}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.export_manifest:
        from z2t_dask.batch import export_manifest

        if is_url(args.path) or not Path(args.path).is_dir():
            print(f"z2t inspect: --export-manifest needs a local batch folder, got {args.path}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"wrote {export_manifest(args.path)}", file=sys.stderr)
    info = summarize(args.path, verify=args.verify)
    # compact JSON: the C encoder (an indented dump of a 100,000-job batch takes seconds longer)
    print(json.dumps(info, sort_keys=True, default=str) if args.json else format_summary(info))
    if args.verify:  # exit 3: a finished job's file differs from its recorded checksum
        from z2t_dask.batch.verify import report_verify

        return report_verify(info["verify"], args.path, as_json=args.json)
    return EXIT_OK
