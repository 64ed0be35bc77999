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


def _cpuinfo(*flags: str) -> str:
    return f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 fma {' '.join(flags)}\n\n"


ZEN4, CASCADE_LAKE = _cpuinfo("avx512f", "avx512_vnni", "avx512_bf16"), _cpuinfo("avx512f", "avx512_vnni")


@pytest.mark.parametrize(
    ("cpuinfo", "bf16", "quantize"),
    [(ZEN4, True, None), (_cpuinfo("amx_tile", "amx_bf16"), True, None), (CASCADE_LAKE, False, "int8"),
     (_cpuinfo(), False, None)],  # AVX2 alone: int8 was not measured there, float32 stays
)  # fmt: skip
def test_auto_quantizes_to_int8_only_on_cpus_without_native_bf16_that_have_vnni(cpuinfo, bf16, quantize):
    cpu = torch.device("cpu")
    assert runtime.cpu_has_native_bf16(cpuinfo) is bf16
    assert runtime.auto_quantize("auto", cpu, cpuinfo) == quantize
    assert runtime.auto_quantize("float32", cpu, cpuinfo) is None  # an explicit dtype is what the user gets
    assert runtime.auto_quantize("auto", torch.device("cuda"), cpuinfo) is None


@pytest.mark.parametrize(
    ("cpuinfo", "dtype", "quantized"), [(ZEN4, torch.bfloat16, False), (CASCADE_LAKE, torch.float32, True)]
)
def test_a_run_with_dtype_auto_follows_the_cpu_it_finds(tmp_path, monkeypatch, tiny_blip, tiny_clip, cpuinfo, dtype,
                                                        quantized):  # fmt: skip
    from capfleet.config import RunConfig
    from capfleet.runners.models import load_models

    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setenv(runtime.CPUINFO_VARIABLE, str(tmp_path / "cpuinfo"))
    config = RunConfig(
        inputs=[], output="", captioner=str(tiny_blip), scorer=str(tiny_clip), device="cpu", dtype="auto"
    )
    for model in (model.model for model in load_models(config)):
        assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules()) is quantized
        assert next(model.parameters()).dtype == dtype


@pytest.mark.parametrize(
    ("cpuinfo", "dtypes"),
    [(ZEN4, ["float32", "bfloat16"]), (CASCADE_LAKE, ["float32", "auto"]), (_cpuinfo(), ["float32"])],
)
def test_capfleet_bench_times_what_dtype_auto_would_run(tmp_path, monkeypatch, cpuinfo, dtypes):
    from capfleet.bench import dtypes_to_try

    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setenv(runtime.CPUINFO_VARIABLE, str(tmp_path / "cpuinfo"))
    assert dtypes_to_try("cpu") == dtypes


@pytest.mark.parametrize(("quantize", "quantized"), [(None, False), ("int8", True)])
def test_dtype_auto_leaves_the_builtin_model_in_float32_where_it_quantises_others(
    tmp_path, monkeypatch, quantize, quantized
):
    """int8 cost the built-in model ranked relation accuracy, so `auto` keeps it float32; --quantize int8 still
    quantises it on request."""
    from capfleet.config import RunConfig
    from capfleet.runners.models import load_models

    (tmp_path / "cpuinfo").write_text(CASCADE_LAKE)
    monkeypatch.setenv(runtime.CPUINFO_VARIABLE, str(tmp_path / "cpuinfo"))
    config = RunConfig(
        inputs=[], output="", captioner="builtin", scorer="builtin", device="cpu", dtype="auto", quantize=quantize
    )
    captioner, scorer = load_models(config)
    assert scorer.model is captioner.model and next(captioner.model.parameters()).dtype == torch.float32
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in captioner.model.modules()) is quantized
