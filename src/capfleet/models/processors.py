"""Image processors, including checkpoints published with legacy `*FeatureExtractor` configs.

openai/clip-vit-base-patch32 and nlpconnect/vit-gpt2-image-captioning name `CLIPFeatureExtractor`
/ `ViTFeatureExtractor` in preprocessor_config.json; transformers 5 no longer resolves those
names through AutoImageProcessor or AutoProcessor, so we map them to their ImageProcessor class.
"""

from __future__ import annotations

import json


def _legacy_class_name(path: str) -> str | None:
    from transformers.utils import cached_file

    config_file = cached_file(path, "preprocessor_config.json")
    with open(config_file, encoding="utf-8") as handle:
        config = json.load(handle)
    name = config.get("image_processor_type") or config.get("feature_extractor_type")
    return name.replace("FeatureExtractor", "ImageProcessor") if name else None


def load_image_processor(path: str):
    import transformers

    try:
        return transformers.AutoImageProcessor.from_pretrained(path)
    except ValueError:
        processor_class = getattr(transformers, _legacy_class_name(path) or "", None)
        if processor_class is None:
            raise
        return processor_class.from_pretrained(path)
