"""Dtype choice and the kernel-cache bound that makes bf16 safe in long-running processes."""

import os
import subprocess
import sys

import pytest
import torch

from capfleet.models import runtime


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_cpu_auto_dtype_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.pick_dtype("auto", torch.device("cpu")) == expected
    assert runtime.pick_dtype("float32", torch.device("cpu")) == torch.float32  # an explicit dtype wins


def _cache_sizes(env: dict[str, str]) -> list[str]:
    code = "import os, capfleet; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
    clean = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_import_bounds_the_kernel_caches_unless_the_user_set_them():
    from capfleet.kernel_caches import KERNEL_CACHE_ENTRIES

    assert _cache_sizes({}) == [KERNEL_CACHE_ENTRIES, KERNEL_CACHE_ENTRIES]
    assert _cache_sizes({"LRU_CACHE_CAPACITY": "2048"}) == [KERNEL_CACHE_ENTRIES, "2048"]
