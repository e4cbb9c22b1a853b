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


def test_large_frames_get_thresholds_above_the_rendered_blocks(monkeypatch):
    from z2t_dask.engine import allocator

    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator, "_libc", lambda: FakeLibc())
    for frame_bytes, mmap_mib, trim_mib in [(0, 4, 4), (192 * 192 * 4, 4, 4), (1200 * 1200 * 2, 32, 64)]:
        calls.clear()
        assert allocator.tune_malloc(True, frame_bytes=frame_bytes) is True
        settings = dict(calls)
        assert settings[allocator._M_ARENA_MAX] == allocator.ARENA_MAX
        assert settings[allocator._M_MMAP_THRESHOLD] == mmap_mib * 2**20, frame_bytes
        assert settings[allocator._M_TRIM_THRESHOLD] == trim_mib * 2**20, frame_bytes
    # a default chunk of full-chip frames (render.chunk_mb = 16) fits under the large mmap threshold
    from z2t_dask.engine.render import DEFAULT_CHUNK_MB, choose_chunks

    ct, ty, tx = choose_chunks((1200, 1200), 200, 2)
    assert ct * ty * tx * 2 <= DEFAULT_CHUNK_MB * 2**20 < allocator.LARGE_MMAP_THRESHOLD
