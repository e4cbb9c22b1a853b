"""The CLI's exit codes: bad input (any Z2TError, user-path OS errors) -> 2 with the message; our bugs -> 1."""

from __future__ import annotations

import errno
import json

import pytest

from z2t_dask.tools import cli
from z2t_dask.tools.cli import main


def test_unknown_format_is_bad_input_naming_the_option(tmp_path, capsys) -> None:
    assert main(["simulate", "--output-dir", str(tmp_path), "--frames", "2", "--format", "bmp"]) == 2
    err = capsys.readouterr().err
    assert "--format: unknown format 'bmp'" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_codec_the_format_lacks_is_bad_input(tmp_path, capsys) -> None:
    assert (
        main(["simulate", "--output-dir", str(tmp_path), "--frames", "2", "--format", "hdf5", "--compression", "zstd"])
        == 2
    )
    assert "--compression" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bad_config_key_is_bad_input(tmp_path, capsys) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"emitters": {"frames": -3}}))
    assert main(["simulate", "--config", str(p), "--output-dir", str(tmp_path / "o")]) == 2
    assert "emitters.frames" in capsys.readouterr().err


def test_a_bug_is_an_internal_error_not_bad_input(tmp_path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ValueError("an internal ValueError that is not the user's fault")

    monkeypatch.setattr("z2t_dask.sample.simulate", broken)
    assert main(["simulate", "--output-dir", str(tmp_path), "--frames", "2"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "-v" in err and "Traceback" not in err
    assert main(["-v", "simulate", "--output-dir", str(tmp_path), "--frames", "2"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (FileNotFoundError(errno.ENOENT, "nope", "x.json"), 2),
        (PermissionError(errno.EACCES, "denied", "/out"), 2),
        (OSError(errno.ENOSPC, "No space left on device"), 2),
        (OSError(errno.EIO, "I/O error"), 1),
    ],
)
def test_os_errors_about_user_paths_are_bad_input(monkeypatch, exc: OSError, code: int) -> None:
    def failing(args):
        raise exc

    monkeypatch.setattr(cli, "_simulate", failing)
    assert main(["simulate"]) == code
