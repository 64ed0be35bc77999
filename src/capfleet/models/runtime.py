"""Device and dtype choice shared by every model wrapper."""

from __future__ import annotations

import torch

from capfleet.config import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matmuls run natively instead of being emulated (slower than fp32)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPUs that support it, fp16 on older GPUs; on CPUs bf16 where it is native
    (AMX, AVX-512 BF16), fp32 elsewhere (emulated bf16 is slower than fp32).

    Measured for the CPU choice (benchmarks/README.md): BLIP-base runs about twice as fast in bf16,
    and the built-in model's chosen captions name the right objects as often as in fp32 (within
    1 point on 300 held-out scenes).
    """
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        # Emulated bf16 (T4, V100) is slow: only native support counts.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def use_threads(threads: int | None) -> int:
    """Torch's intra-op threads: `threads`, or the CPUs this process may use (not the machine's)."""
    from capfleet.cpus import available_cpus

    count = threads or available_cpus()
    torch.set_num_threads(count)
    return count
