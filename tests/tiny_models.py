"""Random-weight captioner / scorer checkpoints built from the REAL configs and tokenizers.

No pretrained weights can be downloaded here, but ``tests/fixtures/models`` holds the published
configs, preprocessor configs and tokenizer files of the models users run (see its README.md).
The ``build_*`` functions below turn those into complete ``save_pretrained`` directories with
random weights, so that the product's real loading code (``AutoProcessor.from_pretrained(dir)``,
``XxxForYyy.from_pretrained(dir)``) can be exercised offline.

Every builder has the signature ``build_x(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path``
and returns ``out_dir``:

* ``tiny=True`` shrinks the transformer to hidden 32 / 2 layers / 2 heads and the vision tower to
  32x32 images with 8x8 patches, and rewrites the preprocessor config so that the processor emits
  32x32 pixel tensors.  Vocabularies and tokenizers are the real ones (so token ids such as BLIP's
  ``[DEC]`` = 30522 are real).  A build takes well under a second.
* ``tiny=False`` keeps the real architecture sizes and the real preprocessor config (random
  weights), for throughput benchmarks.  Random weights never emit EOS on time: benchmarks must fix
  the generated length (``min_new_tokens == max_new_tokens``).

Quirk kept on purpose: the published CLIP and ViT-GPT2 preprocessor configs name
``*FeatureExtractor`` classes, which ``AutoImageProcessor``/``AutoProcessor`` in transformers 5.x
reject; load those with ``CLIPImageProcessor`` / ``ViTImageProcessor`` explicitly (see the builders).

This is a plain module (no pytest import) so benchmarks can use it too
(``from tests.tiny_models import build_blip`` with the repository root on sys.path).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# In the repository, so a fresh clone runs its tests; CAPFLEET_SHARED_MODELS may point at another copy.
SHARED_MODELS = Path(os.environ.get("CAPFLEET_SHARED_MODELS", Path(__file__).resolve().parent / "fixtures" / "models"))
BLIP_SRC = SHARED_MODELS / "blip-image-captioning-base"
VIT_GPT2_SRC = SHARED_MODELS / "vit-gpt2-image-captioning"
CLIP_SRC = SHARED_MODELS / "clip-vit-base-patch32"

# Sizes used when tiny=True.
TINY_IMAGE_SIZE = 32
TINY_PATCH_SIZE = 8
TINY_HIDDEN = 32
TINY_INTERMEDIATE = 64
TINY_LAYERS = 2
TINY_HEADS = 2
# Deliberately not the real 512, so code that hard-codes CLIP's embedding width is caught.
TINY_PROJECTION_DIM = 16

# Real special-token ids (documented here so tests need not hard-code them).
BLIP_BOS_ID = 30522  # [DEC]
BLIP_ENC_ID = 30523  # [ENC]
BLIP_SEP_ID = 102  # [SEP], what BLIP.generate uses as eos
BLIP_PAD_ID = 0
BERT_CLS_ID = 101
BERT_SEP_ID = 102
GPT2_EOS_ID = 50256

_TINY_VIT = {
    "hidden_size": TINY_HIDDEN,
    "intermediate_size": TINY_INTERMEDIATE,
    "num_hidden_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS,
    "image_size": TINY_IMAGE_SIZE,
    "patch_size": TINY_PATCH_SIZE,
}
_TINY_TEXT = {
    "hidden_size": TINY_HIDDEN,
    "intermediate_size": TINY_INTERMEDIATE,
    "num_hidden_layers": TINY_LAYERS,
    "num_attention_heads": TINY_HEADS,
}


# --------------------------------------------------------------------------- helpers


def _prepare(out_dir: Path | str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _init_model(model_cls, config, seed: int):
    """Instantiate ``model_cls(config)`` with random weights drawn from ``seed``.

    The global torch RNG is left untouched (fork_rng), so building a fixture does not perturb the
    random state seen by the tests that run after it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _copy_files(src: Path, out_dir: Path, names: list[str]) -> None:
    for name in names:
        shutil.copyfile(src / name, out_dir / name)


def _resized_preprocessor(cfg: dict[str, Any], tiny: bool) -> dict[str, Any]:
    """Return a copy of a preprocessor config whose resize / crop target is TINY_IMAGE_SIZE.

    Keeps the form of each field (int, {"height","width"} or {"shortest_edge"}) as in the real file.
    """
    cfg = copy.deepcopy(cfg)
    if not tiny:
        return cfg
    s = TINY_IMAGE_SIZE
    for key in ("size", "crop_size"):
        if key not in cfg:
            continue
        val = cfg[key]
        if isinstance(val, int):
            cfg[key] = s
        elif isinstance(val, dict):
            cfg[key] = {k: s for k in val}
    return cfg


def _bert_tokenizer(vocab_txt: Path, **kwargs):
    """bert-base-uncased tokenizer (tokenizers backend) from a bare vocab.txt, offline."""
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    return BertTokenizer(vocab=load_vocab(str(vocab_txt)), do_lower_case=True, model_max_length=512, **kwargs)


def _finish_tokenizer_config(out_dir: Path, **extra: Any) -> None:
    """Add keys (e.g. processor_class) that the published tokenizer_config.json files carry."""
    path = out_dir / "tokenizer_config.json"
    cfg = _read_json(path)
    cfg.update(extra)
    _write_json(path, cfg)


# --------------------------------------------------------------------------- captioners


def _add_bpe_tokenizer_and_preprocessor(src: Path, out_dir: Path, tiny: bool) -> Path:
    """The published byte-level BPE tokenizer files, and the preprocessor resized for tiny models."""
    _copy_files(
        src, out_dir, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]
    )
    _write_json(
        out_dir / "preprocessor_config.json", _resized_preprocessor(_read_json(src / "preprocessor_config.json"), tiny)
    )
    return out_dir


def build_blip(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """Salesforce/blip-image-captioning-base: BlipForConditionalGeneration + BlipProcessor.

    Tokenizer: bert-base-uncased vocab.txt + ``[DEC]`` (30522, bos) + ``[ENC]`` (30523);
    vocab_size 30524.  ``model.generate(pixel_values=...)`` starts from [DEC] and stops on
    [SEP] (102); pad is 0.  The text_config keeps the published ``eos_token_id: 2`` (BLIP's own
    ``generate`` ignores it and passes ``eos_token_id=sep_token_id``), while the saved
    generation_config.json carries bos 30522 / eos 102 / pad 0.
    """
    from transformers import BlipConfig, BlipForConditionalGeneration, GenerationConfig

    out_dir = _prepare(out_dir)
    config = BlipConfig.from_pretrained(BLIP_SRC)
    if tiny:
        config.vision_config.update(dict(_TINY_VIT))
        config.text_config.update(dict(_TINY_TEXT))
        config.text_config.encoder_hidden_size = config.vision_config.hidden_size
        config.text_config.projection_dim = TINY_PROJECTION_DIM
        config.vision_config.projection_dim = TINY_PROJECTION_DIM
        config.projection_dim = TINY_PROJECTION_DIM
        config.image_text_hidden_size = TINY_PROJECTION_DIM
    model = _init_model(BlipForConditionalGeneration, config, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=BLIP_BOS_ID,
        eos_token_id=BLIP_SEP_ID,
        sep_token_id=BLIP_SEP_ID,
        pad_token_id=BLIP_PAD_ID,
        decoder_start_token_id=BLIP_BOS_ID,
    )
    model.save_pretrained(out_dir)

    tok = _bert_tokenizer(BLIP_SRC / "vocab.txt")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [BLIP_BOS_ID, BLIP_ENC_ID], "BLIP token ids"
    assert len(tok) == config.text_config.vocab_size == 30524
    tok.save_pretrained(out_dir)
    shutil.copyfile(BLIP_SRC / "vocab.txt", out_dir / "vocab.txt")
    _finish_tokenizer_config(out_dir, processor_class="BlipProcessor")

    pre = _resized_preprocessor(_read_json(BLIP_SRC / "preprocessor_config.json"), tiny)
    _write_json(out_dir / "preprocessor_config.json", pre)
    return out_dir


def build_vit_gpt2(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """nlpconnect/vit-gpt2-image-captioning: VisionEncoderDecoderModel (ViT encoder, GPT-2 decoder).

    Files as published: config, generation_config (bos = eos = pad = decoder_start = 50256),
    ViT preprocessor config (``ViTFeatureExtractor``), GPT-2 tokenizer files (copied verbatim).
    There is no processor_config: load the image processor and ``AutoTokenizer`` separately, as
    the model card does.  NOTE (transformers 5.x): the published preprocessor config says
    ``"image_processor_type": "ViTFeatureExtractor"``, which ``AutoImageProcessor.from_pretrained``
    rejects ("Unrecognized image processor"); ``ViTImageProcessor.from_pretrained(dir)`` works.
    The file is kept as published (only the size is changed) so this stays visible to tests.
    """
    from transformers import GenerationConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    out_dir = _prepare(out_dir)
    config = VisionEncoderDecoderConfig.from_pretrained(VIT_GPT2_SRC)
    if tiny:
        config.encoder.update(dict(_TINY_VIT))
        config.encoder.encoder_stride = TINY_PATCH_SIZE
        config.decoder.update(
            {"n_embd": TINY_HIDDEN, "n_layer": TINY_LAYERS, "n_head": TINY_HEADS, "n_inner": TINY_INTERMEDIATE}
        )
    model = _init_model(VisionEncoderDecoderModel, config, seed)
    model.generation_config = GenerationConfig.from_pretrained(VIT_GPT2_SRC)
    model.save_pretrained(out_dir)

    return _add_bpe_tokenizer_and_preprocessor(VIT_GPT2_SRC, out_dir, tiny)


def build_git(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """microsoft/git-base style GitForCausalLM + GitProcessor (CLIPImageProcessor + BertTokenizer).

    No GIT config is shared, so the architecture is transformers' ``GitConfig()`` defaults, which are
    git-base (text 768 x 6 layers, CLIP ViT-B/16 224px vision tower, vocab 30522, bos 101 [CLS],
    eos 102 [SEP], pad 0).  The tokenizer is bert-base-uncased from the blip folder's vocab.txt
    (without BLIP's [DEC]/[ENC]).  ``model.generate(pixel_values=...)`` works without input_ids
    (generation starts from bos 101).
    """
    from transformers import GitConfig, GitForCausalLM, GitVisionConfig

    out_dir = _prepare(out_dir)
    vision = GitVisionConfig()
    if tiny:
        vision.update(dict(_TINY_VIT))
    config = GitConfig(
        vision_config=vision.to_dict(),
        vocab_size=30522,
        bos_token_id=BERT_CLS_ID,
        eos_token_id=BERT_SEP_ID,
        pad_token_id=0,
        architectures=["GitForCausalLM"],
    )
    if tiny:
        config.update(dict(_TINY_TEXT))
    model = _init_model(GitForCausalLM, config, seed)
    model.save_pretrained(out_dir)

    tok = _bert_tokenizer(BLIP_SRC / "vocab.txt")
    assert len(tok) == 30522
    tok.save_pretrained(out_dir)
    shutil.copyfile(BLIP_SRC / "vocab.txt", out_dir / "vocab.txt")
    _finish_tokenizer_config(out_dir, processor_class="GitProcessor")

    # microsoft/git-base's preprocessor_config.json (CLIP normalisation, bicubic, 224 crop).
    pre = {
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "processor_class": "GitProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 224},
    }
    _write_json(out_dir / "preprocessor_config.json", _resized_preprocessor(pre, tiny))
    return out_dir


# --------------------------------------------------------------------------- scorers


def build_clip(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """openai/clip-vit-base-patch32: CLIPModel + CLIPProcessor (real tokenizer files, verbatim).

    tiny: projection_dim is TINY_PROJECTION_DIM (16), not 512; max_position_embeddings stays 77.

    NOTE (transformers 5.x): the published preprocessor config says
    ``"image_processor_type": "CLIPFeatureExtractor"``, which makes ``AutoImageProcessor``,
    ``AutoProcessor`` and ``CLIPProcessor.from_pretrained`` fail ("Unrecognized image processor").
    ``CLIPProcessor(image_processor=CLIPImageProcessor.from_pretrained(d),
    tokenizer=AutoTokenizer.from_pretrained(d))`` works.  The file is kept as published (only the
    sizes are changed) so this stays visible to tests.  Also in 5.x ``get_image_features`` /
    ``get_text_features`` return a ``BaseModelOutputWithPooling``: the projected embedding is its
    ``.pooler_output`` (shape ``(n, projection_dim)``).
    """
    from transformers import CLIPConfig, CLIPModel

    out_dir = _prepare(out_dir)
    config = CLIPConfig.from_pretrained(CLIP_SRC)
    if tiny:
        config.vision_config.update(dict(_TINY_VIT))
        config.text_config.update(dict(_TINY_TEXT))
        config.projection_dim = TINY_PROJECTION_DIM
        config.text_config.projection_dim = TINY_PROJECTION_DIM
        config.vision_config.projection_dim = TINY_PROJECTION_DIM
    model = _init_model(CLIPModel, config, seed)
    model.save_pretrained(out_dir)

    return _add_bpe_tokenizer_and_preprocessor(CLIP_SRC, out_dir, tiny)


def _siglip_like_tokenizer():
    """An offline stand-in for SigLIP's sentencepiece tokenizer (sentencepiece is not installed).

    A tokenizers-backed Unigram over lowercase characters (plus a few common words) with SigLIP's
    conventions: <pad>=0, </s>=1 (eos and pad), <unk>=2, lowercase, metaspace, eos appended, no bos,
    model_max_length 64.  Saved as a plain ``TokenizersBackend`` tokenizer.json.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    words = "a an the of on in with and photo picture image dog cat man woman person red blue".split()
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    pieces = [(s, 0.0) for s in specials]
    pieces += [("\u2581" + w, -2.0) for w in words]
    pieces += [("\u2581", -3.0)]
    pieces += [(c, -5.0) for c in chars] + [("\u2581" + c, -4.0) for c in chars]
    backend = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Strip()])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=64,
    )


def build_siglip(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """google/siglip-base-patch16-224 style SiglipModel + SiglipProcessor.

    Architecture: transformers' ``SiglipConfig()`` defaults (= siglip-base-patch16-224) or the tiny
    sizes.  The tokenizer is NOT the real one: SiglipTokenizer needs ``sentencepiece`` and a
    spiece.model, neither available offline, so :func:`_siglip_like_tokenizer` stands in (small
    vocabulary, same special-token conventions).  Like the real model, text should be padded with
    ``padding="max_length"`` (64): SigLIP pools the last token.
    """
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    out_dir = _prepare(out_dir)
    tok = _siglip_like_tokenizer()
    # SiglipTextConfig's defaults carry CLIP's bos/eos ids (49406/49407); the SigLIP checkpoints
    # use pad = eos = 1 ("</s>") and no bos.
    text: dict[str, Any] = {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}
    vision: dict[str, Any] = {}
    if tiny:
        text.update(_TINY_TEXT, vocab_size=len(tok))
        vision.update(_TINY_VIT)
    config = SiglipConfig(text_config=text, vision_config=vision)
    model = _init_model(SiglipModel, config, seed)
    model.save_pretrained(out_dir)

    size = TINY_IMAGE_SIZE if tiny else 224
    image_processor = SiglipImageProcessor(
        size={"height": size, "width": size},
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    SiglipProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(out_dir)
    return out_dir


def build_smolvlm(out_dir: Path, tiny: bool = True, seed: int = 0) -> Path:
    """SmolVLM-256M-Instruct (Idefics3): a chat VLM with its real processor and chat template.

    Tiny keeps the 512-px vision input (the processor's fixed tile) but shrinks both towers, and
    turns image splitting off so one image is one tile.
    """
    import shutil

    from transformers import AutoConfig, Idefics3ForConditionalGeneration

    src = SHARED_MODELS / "smolvlm-256m-instruct"
    out_dir = _prepare(out_dir)
    for path in src.iterdir():
        shutil.copy(path, out_dir / path.name)
    cfg = _read_json(src / "config.json")
    if tiny:
        cfg["text_config"].update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32,
        )  # fmt: skip
        cfg["vision_config"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        side = {"longest_edge": cfg["vision_config"]["image_size"]}
        preprocessor = _read_json(src / "preprocessor_config.json")
        preprocessor.update(do_image_splitting=False, size=side, max_image_size=side)
        _write_json(out_dir / "preprocessor_config.json", preprocessor)
    _write_json(out_dir / "config.json", cfg)
    model = _init_model(Idefics3ForConditionalGeneration, AutoConfig.from_pretrained(out_dir), seed)
    model.save_pretrained(out_dir)
    return out_dir


BUILDERS = {
    "blip": build_blip,
    "vit_gpt2": build_vit_gpt2,
    "git": build_git,
    "clip": build_clip,
    "siglip": build_siglip,
    "smolvlm": build_smolvlm,
}

__all__ = [
    "BUILDERS",
    "build_blip",
    "build_clip",
    "build_git",
    "build_siglip",
    "build_smolvlm",
    "build_vit_gpt2",
]
