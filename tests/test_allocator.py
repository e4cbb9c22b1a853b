"""glibc malloc tuning used when saving (bounded memory over long writes)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from z2t_dask.engine.allocator import tune_malloc


def test_disabled_tuning_does_nothing():
    assert tune_malloc(False) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="not glibc")
def test_tuning_applies_on_glibc_in_a_fresh_process():
    code = "from z2t_dask.engine.allocator import tune_malloc; print(tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_config_switch_is_validated():
    import z2t_dask as z2t

    assert z2t.load_config(None).render.tune_malloc is True
    assert z2t.load_config({"render": {"tune_malloc": False}}).render.tune_malloc is False
    with pytest.raises(z2t.ConfigError, match="render.tune_malloc"):
        z2t.load_config({"render": {"tune_malloc": "yes"}})
