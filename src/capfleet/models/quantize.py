"""`--quantize int8`: dynamic int8 linear layers for CPUs without native bf16.

Weights of every `nn.Linear` are stored as int8 and activations quantized on the fly, which cuts
the matrix-multiply cost on CPUs that lack AMX/AVX-512 BF16. `--dtype auto` picks it on such CPUs with
AVX-512 VNNI (`runtime.auto_quantize`), except for capfleet's own small models; it changes captions more
than bf16 does. Torch marks `torch.ao.quantization` as moving to
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


def quantize_models(captioner, scorer, *, own_models: bool = True) -> None:
    """int8 for the models loaded here (other engines run theirs elsewhere); a scorer sharing the
    captioner's model is quantised once. `own_models=False` (what `--dtype auto` asks) leaves capfleet's
    own models in float32: the built-in one is small, and int8 cost it 4 points of ranked relation
    accuracy on 500 held-out scenes (benchmarks/README.md)."""
    from capfleet.modeling.configuration import MODEL_TYPE
    from capfleet.models.captioner import HFCaptioner

    local = [captioner.model] if isinstance(captioner, HFCaptioner) else []
    models = {id(model): model for model in [*local, *([scorer.model] if scorer is not None else [])]}
    for model in models.values():
        if own_models or model.config.model_type != MODEL_TYPE:
            quantize_int8(model)
