"""Any ONNX watermark classifier, under the contract in docs/filters.md.

Input: float32 (N, 3, H, W), RGB scaled to [0, 1], with H and W fixed in the model (any
normalisation is the model's own first layers). Output 0: the watermark probability in [0, 1],
shape (N,) or (N, 1). The contract is checked when the model loads, on a probe image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from capfleet.errors import ConfigError, require
from capfleet.options import option
from capfleet.sample import Sample
from capfleet.stages.filters.base import PANEL, onnx_session, reject

NAME = "watermark"
EXTRA = "onnx"
REQUIRES = ("onnxruntime",)
PREPASS = False
DEFAULT_THRESHOLD = 0.5


@dataclass
class Options:
    watermark_model: str | None = option(
        None, "ONNX watermark classifier (docs/filters.md).", fingerprint="if_set", panel=PANEL, metavar="FILE"
    )
    watermark_threshold: float | None = option(
        None, f"Filter above this watermark probability ({DEFAULT_THRESHOLD}).", fingerprint="if_set", panel=PANEL
    )


def check(config) -> list[str]:
    threshold = config.watermark_threshold
    checks = [
        (threshold is None or 0 <= threshold <= 1, "--watermark-threshold must be in [0, 1]"),
        (threshold is None or config.watermark_model is not None, "--watermark-threshold needs --watermark-model"),
    ]
    return [message for ok, message in checks if not ok]


def load(config) -> WatermarkFilter | None:
    if config.watermark_model is None:
        return None
    threshold = config.watermark_threshold
    return WatermarkFilter(config.watermark_model, DEFAULT_THRESHOLD if threshold is None else threshold)


class WatermarkFilter:
    name = "watermark"

    def __init__(self, model_path: str, threshold: float):
        require(REQUIRES, EXTRA, "--watermark-model")
        if not Path(model_path).is_file():
            raise ConfigError(f"--watermark-model {model_path}: no such file")
        try:
            self.session = onnx_session(model_path)
        except Exception as exc:
            raise ConfigError(f"--watermark-model {model_path} is not a loadable ONNX model: {exc}") from None
        self.threshold = threshold
        self.input_name, self.size = self._input_contract(model_path)
        self.decode_side = max(self.size)  # the classifier's own input size: never upscaled from a thumbnail
        self.probability(Image.new("RGB", self.size, (128, 128, 128)))  # the output contract, before any image

    def _input_contract(self, model_path: str) -> tuple[str, tuple[int, int]]:
        model_input = self.session.get_inputs()[0]
        shape = model_input.shape
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(side, int) for side in shape[2:]):
            raise ConfigError(
                f"--watermark-model {model_path}: input must be (N, 3, H, W) with fixed H and W, not {shape} "
                "(see docs/filters.md)"
            )
        return model_input.name, (shape[3], shape[2])

    def probability(self, image: Image.Image) -> float:
        pixels = np.asarray(image.resize(self.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        output = np.asarray(self.session.run(None, {self.input_name: pixels.transpose(2, 0, 1)[None]})[0])
        if output.size != 1 or not 0.0 <= float(output.reshape(-1)[0]) <= 1.0:
            raise ConfigError(
                f"watermark model output must be one probability in [0, 1] per image, got shape {output.shape} "
                f"values {output.reshape(-1)[:4].tolist()} (see docs/filters.md)"
            )
        return float(output.reshape(-1)[0])

    def apply(self, sample: Sample) -> None:
        score = round(self.probability(sample.image), 4)
        if score > self.threshold:
            reject(sample, self.name, score, self.threshold)
        else:
            sample.fields["watermark_score"] = score
