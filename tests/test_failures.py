"""Faults and their guarantees: byte-identical reruns, bad output paths, full disks and file-size limits,
SIGTERM and SIGKILL (temporaries removed, nothing under the final name), ``z2t`` alone.

The subprocess tests (file-size limits, signals) are ``slow``; the rest run in-process.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from z2t_dask.errors import OutputSpaceError, Z2TError
from z2t_dask.io import atomic, space
from z2t_dask.io.atomic import HOST, atomic_dir, atomic_path, remove_stale_temps, temp_sibling
from z2t_dask.io.hdf5 import write_hdf5_stack
from z2t_dask.io.space import check_output_space, output_space_error, public_path
from z2t_dask.testing import tiny_config, tiny_config_dict
from z2t_dask.tools.cli import main

FORMATS = ("ome-tiff", "hdf5", "ome-zarr")
#: every optional file of a sample folder: the frames inside emitters.h5 and the CSV.
EXTRAS = {"output": {"frames_in_h5": True, "write_csv": True}}


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries (``.<name>.tmp-*`` / ``.old-*``) anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


def cli(*args: str, limit: int | None = None, **kwargs) -> subprocess.Popen:
    """``python -m z2t_dask.tools.cli *args`` in a subprocess (optionally under RLIMIT_FSIZE = ``limit``)."""

    def fsize_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(
        [sys.executable, "-m", "z2t_dask.tools.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=fsize_limit if limit is not None else None,
        **kwargs,
    )


# --------------------------------------------------------------------------- 1. byte-identical files


def test_same_config_and_seed_give_byte_identical_files_in_every_format(tmp_path) -> None:
    """Files, not only pixels: no timestamp (HDF5), no random UUID (OME-TIFF), no clock in Zarr metadata."""
    from z2t_dask.sample import simulate

    cfg = tiny_config(**EXTRAS)
    runs = []
    for run in ("a", "b"):
        if run == "b":
            time.sleep(1.1)  # a timestamp in seconds would differ
        for fmt in FORMATS:
            simulate(cfg, seed=3).save(tmp_path / run / fmt / "s", format=fmt)
        runs.append(digests(tmp_path / run))
    assert runs[0] == runs[1]
    names = set(runs[0])
    assert {"ome-tiff/s/s.ome.tiff", "hdf5/s/s.h5", "hdf5/s/emitters.h5", "ome-tiff/s/ground_truth.csv"} <= names
    assert any(n.startswith("ome-zarr/s/s.ome.zarr/") and n.endswith("zarr.json") for n in names)


@pytest.mark.slow
def test_byte_identical_across_processes(tmp_path) -> None:
    """Two processes a second apart (the OME-TIFF UUID is derived from the content, not drawn)."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config_dict(**EXTRAS)))
    for run in ("a", "b"):
        if run == "b":
            time.sleep(1.1)
        for fmt in FORMATS:
            p = cli(
                "simulate",
                "--config",
                str(cfg),
                "--format",
                fmt,
                "--seed",
                "5",
                "--output-dir",
                str(tmp_path / run / fmt),
            )
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_hdf5_stack_written_twice_a_second_apart_has_the_same_bytes(tmp_path) -> None:
    def write() -> bytes:
        frames = [np.ones((2, 3, 4), np.uint16)]
        write_hdf5_stack(tmp_path / "x.h5", frames, shape=(2, 3, 4), dtype="uint16", pixel_size_nm=(100.0, 100.0))
        return (tmp_path / "x.h5").read_bytes()

    first = write()
    time.sleep(1.1)
    assert write() == first


# --------------------------------------------------------------------------- 2. bad output paths


def test_output_dir_under_a_regular_file_is_bad_input(tmp_path, capsys) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    for out in (blocker / "sub", blocker):
        assert main(["simulate", "--output-dir", str(out), "--frames", "2"]) == 2
        err = capsys.readouterr().err
        assert "afile is a file, not a folder" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing left behind
    assert blocker.read_text() == "not a folder"


def test_render_output_under_a_regular_file_is_bad_input(tmp_path, capsys) -> None:
    from z2t_dask.sample import simulate

    simulate(tiny_config(), seed=1).save(tmp_path / "s")
    (tmp_path / "afile").write_text("x")
    args = ["render", "--h5", str(tmp_path / "s" / "emitters.h5"), "--output", str(tmp_path / "afile" / "m.h5")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "afile is a file, not a folder" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s"]


def test_unwritable_output_folder_is_bad_input(tmp_path, capsys, monkeypatch) -> None:
    """The pre-check (os.access) names the folder; root ignores permissions, so the check is emulated."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode, **kw: Path(p) != ro and real_access(p, mode, **kw))
    assert main(["simulate", "--output-dir", str(ro), "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert f"folder {ro} is not writable" in err and "Traceback" not in err
    assert not any(ro.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions (tested above with os.access)")
def test_unwritable_output_folder_for_real(tmp_path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["simulate", "--output-dir", str(ro / "deeper"), "--frames", "2"]) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)
    assert not any(ro.iterdir())


# --------------------------------------------------------------------------- 3. disk full, file-size limit


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
        (OSError(errno.EFBIG, "File too large"), "file too large"),
        (OSError("Can't write data (file write failed: errno = 28, error message = 'No space')"), "disk full"),
    ],
)
def test_space_errors_become_output_space_error_naming_the_output(tmp_path, exc, says) -> None:
    final = tmp_path / "out.h5"
    with pytest.raises(OutputSpaceError) as info:
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise exc
    assert str(info.value).startswith(says) and str(final) in str(info.value)
    assert isinstance(info.value, Z2TError) and isinstance(info.value, OSError)
    assert info.value.__cause__ is exc
    assert not any(tmp_path.iterdir())


def test_numpy_short_write_is_named_as_disk_full_or_file_too_large(tmp_path, monkeypatch) -> None:
    short = OSError("4096 requested and 3984 written")
    monkeypatch.setattr(space, "file_size_limit", lambda: None)
    assert str(output_space_error(short, tmp_path / "x.tiff")).startswith("disk full")
    monkeypatch.setattr(space, "file_size_limit", lambda: 1 << 20)
    err = output_space_error(short, tmp_path / "x.tiff")
    assert err is not None and str(err).startswith("file too large") and "1.0 MB" in str(err)
    assert output_space_error(OSError(errno.EIO, "I/O error"), tmp_path) is None


def test_messages_name_the_final_output_not_the_temporary(tmp_path) -> None:
    tmp = temp_sibling(tmp_path / "sample_001") / "sample_001.h5"
    assert public_path(tmp) == tmp_path / "sample_001" / "sample_001.h5"
    assert public_path(tmp_path / ".s.ome.zarr.partial" / "0") == tmp_path / "s.ome.zarr" / "0"


def test_a_stack_that_cannot_fit_is_refused_before_writing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(space, "file_size_limit", lambda: 10_000)
    with pytest.raises(OutputSpaceError, match=r"file too large: .* needs 20.0 kB, more than .* 10.0 kB") as info:
        check_output_space(tmp_path / "x.h5", 20_000)
    assert info.value.errno == errno.EFBIG
    monkeypatch.setattr(space, "file_size_limit", lambda: None)
    monkeypatch.setattr(space, "free_bytes", lambda folder: 5_000)
    with pytest.raises(OutputSpaceError, match=r"disk full: .* needs 20.0 kB, but the disk holding .* has 5.0 kB free"):
        check_output_space(tmp_path / "x.h5", 20_000)
    check_output_space(tmp_path / "x.h5", 4_000)


@pytest.mark.parametrize("fmt", ["hdf5", "ome-tiff"])
def test_cli_refuses_an_uncompressed_stack_beyond_the_limit_up_front(tmp_path, capsys, monkeypatch, fmt) -> None:
    monkeypatch.setattr(space, "file_size_limit", lambda: 1000)
    args = ["simulate", "--output-dir", str(tmp_path), "--frames", "4", "--format", fmt, "--compression", "none"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "file too large" in err and "sample_000" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


#: (format, compression, frames_in_h5, file named): refused up front (uncompressed) or failing while
#: writing (a compressed stack, or the frames copied into emitters.h5 after a stack that fits).
LIMIT_CASES = [
    ("hdf5", "none", False, "sample_000/sample_000.h5"),
    ("hdf5", "zlib", False, "sample_000/sample_000.h5"),
    ("ome-tiff", "none", False, "sample_000/sample_000.ome.tiff"),
    ("ome-tiff", "zstd", False, "sample_000/sample_000.ome.tiff"),
    ("ome-tiff", "zstd", True, "sample_000/emitters.h5"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "compression", "frames_in_h5", "named"), LIMIT_CASES)
def test_file_size_limit_fails_cleanly(tmp_path, fmt, compression, frames_in_h5, named) -> None:
    """Under RLIMIT_FSIZE: exit 2 "file too large", never a segfault (HDF5 crashed 3 of 3) or a traceback."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "tiff": {"roi_width": 256, "roi_height": 256},
                "emitters": {"frames": 40},
                "output": {"frames_in_h5": frames_in_h5},
            }
        )
    )
    out = tmp_path / "out"
    limit = (
        4_000_000 if frames_in_h5 else 400_000
    )  # the zstd stack (2.9 MB) fits, its raw copy in emitters.h5 (5.2 MB) not
    p = cli(
        "simulate",
        "--config",
        str(cfg),
        "--format",
        fmt,
        "--compression",
        compression,
        "--output-dir",
        str(out),
        limit=limit,
    )
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2, err  # not -11 (SIGSEGV) nor -25 (SIGXFSZ)
    assert "z2t simulate: file too large" in err and str(out / named) in err
    assert "Traceback" not in err and "Segmentation" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # no temporaries, nothing under the final name


# --------------------------------------------------------------------------- 4./5. SIGTERM, SIGKILL, stale temporaries


def _start_long_simulate(out: Path, fmt: str) -> subprocess.Popen:
    """A 20000-frame simulate (~40 s) and wait until its stack is being written."""
    p = cli("simulate", "--frames", "20000", "--format", fmt, "--output-dir", str(out))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        temps = [t for t in out.glob(".sample_000.tmp-*") if any(t.iterdir())] if out.is_dir() else []
        if temps:
            time.sleep(0.5)
            return p
        assert p.poll() is None, p.communicate()[1]
        time.sleep(0.1)
    p.kill()
    raise AssertionError("the simulation did not start writing within 120 s")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["ome-tiff", "hdf5"])
def test_sigterm_cleans_up_like_ctrl_c(tmp_path, fmt) -> None:
    out = tmp_path / "out"
    p = _start_long_simulate(out, fmt)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert err.strip() == "z2t simulate: terminated (SIGTERM); no output was left half-written"
    assert not any(out.iterdir())  # no .sample_000.tmp-* folder, nothing under the final name (out: the run's)


def test_an_interrupt_swallowed_in_a_finaliser_is_delivered_again() -> None:
    """A signal handled inside ``__del__`` or a weakref callback is swallowed by Python ("Exception
    ignored in ..."): the CLI sends it again, so the command stops. (A SIGTERM that landed in a
    weakref callback let ``z2t simulate`` finish and exit 0 instead of 143.)"""
    from z2t_dask.tools import cli

    class Finalised:
        def __init__(self, exc: BaseException):
            self.exc = exc

        def __del__(self):
            raise self.exc  # what the signal handler does when the signal lands here

    before = sys.unraisablehook
    with cli._sigterm_interrupts():
        with pytest.raises(cli.Terminated):
            Finalised(cli.Terminated("terminated (SIGTERM)"))
            for _ in range(200):
                time.sleep(0.01)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            with pytest.raises(KeyboardInterrupt):
                Finalised(KeyboardInterrupt())
                for _ in range(200):
                    time.sleep(0.01)
    assert sys.unraisablehook is before


@pytest.mark.slow
def test_rerun_after_sigkill_removes_the_dead_runs_temporaries(tmp_path) -> None:
    from z2t_dask.tools.results import open_sample

    out = tmp_path / "out"
    p = _start_long_simulate(out, "ome-tiff")
    p.kill()
    p.wait(timeout=60)
    assert [t.name for t in out.iterdir()][0].startswith(".sample_000.tmp-")  # what SIGKILL leaves
    p = cli("simulate", "--frames", "5", "--output-dir", str(out))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert [t.name for t in out.iterdir()] == ["sample_000"]
    assert open_sample(out / "sample_000").frames.shape[0] == 5


def _dead_pid() -> int:
    p = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(p.stdout)


def test_remove_stale_temps_only_removes_dead_owners_temporaries(tmp_path) -> None:
    final = tmp_path / "s"
    dead, live = _dead_pid(), os.getppid()
    names = {
        "dead": f".s.tmp-{HOST}-{dead}-{'a' * 16}",
        "dead_old_style": f".s.tmp-{dead}-{'b' * 16}",
        "live": f".s.tmp-{HOST}-{live}-{'c' * 16}",
        "other_host": f".s.tmp-elsewhere-{dead}-{'d' * 16}",
        "mine_recycled": f".s.tmp-{HOST}-{os.getpid()}-{'e' * 16}",
        "other_output": f".t.tmp-{HOST}-{dead}-{'f' * 16}",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("partial")
    assert remove_stale_temps(final) == 3
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([names["live"], names["other_host"], names["other_output"]])


def test_a_temporary_this_process_is_writing_is_never_stale(tmp_path) -> None:
    with atomic_dir(tmp_path / "s") as tmp:
        (tmp / "x").write_text("1")
        assert remove_stale_temps(tmp_path / "s") == 0
        assert tmp.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_atomic_dir_removes_stale_temporaries_of_its_output(tmp_path) -> None:
    stale = tmp_path / f".s.tmp-{HOST}-{_dead_pid()}-{'a' * 16}"
    stale.mkdir()
    with atomic_path(tmp_path / "f.bin") as tmp:  # another output's: untouched
        tmp.write_bytes(b"1")
    assert stale.is_dir()
    with atomic_dir(tmp_path / "s") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "s"]


# --------------------------------------------------------------------------- 6. z2t alone


@pytest.mark.parametrize("argv", [[], ["-v"]])
def test_z2t_alone_prints_the_help_and_exits_2(capsys, argv) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: z2t") and "simulate" in err and "inspect" in err and "Traceback" not in err
