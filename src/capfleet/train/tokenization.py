"""Word-level caption tokenizer, ViT image processor and the HF bundle layout of the captioner.

Captions of synthetic / narrow-domain datasets have small vocabularies, so a word-level vocabulary built
from the corpus is enough and keeps the embedding table tiny. Everything is saved in standard transformers
formats so ``AutoTokenizer`` / ``AutoImageProcessor`` / ``AutoModel`` load the directory without capfleet
code other than ``import capfleet.modeling.model`` (for the model class registration).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0..3 in this order
# words (keeping inner apostrophes / hyphens: "cat's", "don't", "left-hand") or single punctuation marks
WORD_PATTERN = r"\w+(?:['’-]\w+)*|[^\w\s]"


def build_tokenizer(captions: Iterable[str], min_freq: int = 1, model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """Lower-cased word-level tokenizer over ``captions``; encodes as ``[BOS] words [EOS]``, pads with id 0
    and decodes to clean text (no space before punctuation)."""
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)
    counts: Counter[str] = Counter()
    for caption in captions:
        if caption and caption.strip():
            counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption)))
    # ids by (-frequency, word): identical on every process / tokenizers version
    words = sorted(
        (w for w, n in counts.items() if n >= min_freq and w not in SPECIAL_TOKENS), key=lambda w: (-counts[w], w)
    )
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    # WordPiece decoder joins words with spaces; cleanup removes the space before , . ! ? and 's / n't
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=True,
    )


def build_image_processor(image_size: int) -> Any:
    """Standard ``ViTImageProcessor`` settings: resize to ``image_size`` square, rescale to [0, 1],
    normalise with mean = std = 0.5. Uses the PIL backend when torchvision is absent (same saved config)."""
    kwargs = dict(
        size={"height": image_size, "width": image_size},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    if importlib.util.find_spec("torchvision") is None:
        try:
            from transformers import ViTImageProcessorPil

            return ViTImageProcessorPil(**kwargs)
        except ImportError:  # older transformers: ViTImageProcessor is the PIL one
            pass
    from transformers import ViTImageProcessor

    return ViTImageProcessor(**kwargs)


def save_bundle(model: Any, tokenizer: Any, image_processor: Any, out_dir: str | Path) -> Path:
    """Write a loadable HF model directory: config.json, generation_config.json, model.safetensors,
    tokenizer.json + tokenizer_config.json, preprocessor_config.json."""
    from transformers.utils import logging as hf_logging

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


def load_bundle(model_dir: str | Path, **model_kwargs: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image_processor) from a directory written by :func:`save_bundle`."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    import capfleet.modeling.model  # noqa: F401 - registers the model type with the Auto classes

    model = AutoModel.from_pretrained(model_dir, **model_kwargs)
    return model, AutoTokenizer.from_pretrained(model_dir), AutoImageProcessor.from_pretrained(model_dir)
