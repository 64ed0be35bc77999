"""Device, dtype and quantisation choice shared by every model wrapper."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from capfleet.config import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


# A cpuinfo file read instead of /proc/cpuinfo: shows what `--dtype auto` picks on another kind of CPU.
CPUINFO_VARIABLE = "CAPFLEET_CPUINFO"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The x86 feature flags in `cpuinfo` text (default: the file $CAPFLEET_CPUINFO names, else
    /proc/cpuinfo); None without such text (macOS, Windows) or a `flags` line (ARM)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path(os.environ.get(CPUINFO_VARIABLE) or "/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return None


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """AMX or AVX-512 BF16: bf16 matmuls run natively instead of being emulated (slower than fp32)."""
    flags = cpu_flags(cpuinfo)
    if flags is not None:
        return bool(flags & {"amx_bf16", "avx512_bf16"})
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPUs and CPUs that run it natively, fp16 on older GPUs, else fp32.

    Chosen by measurement (benchmarks/README.md): on a CPU with AMX, capfleet with BLIP + CLIP ran
    3.4x a plain fp32 loop in bf16 and 1.1-1.2x in fp32. Its memory stays bounded because capfleet bounds
    oneDNN's kernel caches (capfleet.kernel_caches). Without native support bf16 is emulated and
    slower than fp32, so those CPUs keep fp32.
    """
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        # Emulated bf16 (T4, V100) is slow: only native support counts.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def auto_quantize(dtype: str, device: torch.device, cpuinfo: str | None = None) -> str | None:
    """`--quantize` under `--dtype auto`: int8 on a CPU without native bf16 that has AVX-512 VNNI (native
    int8 dot products), where it measured faster than float32 with quality held (benchmarks/README.md);
    None elsewhere (an explicit --dtype, GPUs, bf16 CPUs, CPUs not measured)."""
    if dtype != "auto" or device.type != "cpu" or cpu_has_native_bf16(cpuinfo):
        return None
    return "int8" if "avx512_vnni" in (cpu_flags(cpuinfo) or ()) else None


def use_threads(threads: int | None) -> int:
    """Torch's intra-op threads: `threads`, or the CPUs this process may use (not the machine's)."""
    from capfleet.cpus import available_cpus

    count = threads or available_cpus()
    torch.set_num_threads(count)
    return count
