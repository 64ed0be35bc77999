"""`--quantize int8`: dynamic int8 linear layers for CPUs without native bf16.

Weights of every `nn.Linear` are stored as int8 and activations quantized on the fly, which cuts
the matrix-multiply cost on CPUs that lack AMX/AVX-512 BF16 (where `--dtype auto` stays float32).
Opt-in: it changes captions more than bf16 does. Torch marks `torch.ao.quantization` as moving to
torchao; this uses it while torch still ships it, with its deprecation notice silenced.
"""

from __future__ import annotations

import warnings

import torch

from capfleet.config import ConfigError


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the model's linear layers by dynamic int8 ones, in place; CPU float32 models only."""
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ConfigError("--quantize int8 is for float32 models on a CPU: add --device cpu --dtype float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_models(captioner, scorer) -> None:
    """int8 for the models loaded here (other engines run theirs elsewhere); a scorer sharing the
    captioner's model is quantised once."""
    from capfleet.models.captioner import HFCaptioner

    local = [captioner.model] if isinstance(captioner, HFCaptioner) else []
    models = {id(model): model for model in [*local, *([scorer.model] if scorer is not None else [])]}
    for model in models.values():
        quantize_int8(model)
