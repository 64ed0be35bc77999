"""Where one batch's captioning time goes: BLIP's vision encoder, its decoding, CLIP's scoring.

Why: capfleet and a batched loop call the same models, so capfleet can only be faster by doing
less work around them; this splits one batch (random-weight full-size BLIP + CLIP, as in
bench_pipeline.py) into its parts (CPU-seconds, best of 2 after a warm-up; the vision encoder also with
transformers' eager attention in place of capfleet's fused one), and with `--profile` prints
torch.profiler's operator table for one whole batch.

    .venv/bin/python benchmarks/profile_caption.py --threads 1 [--dtype float32] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def best_of(label: str, function, repeats: int = 2):
    result = function()  # warm-up: allocator, oneDNN kernels for these shapes
    seconds = []
    for _ in range(repeats):
        started = time.process_time()  # CPU-seconds: a shared machine's load moves wall seconds far more
        result = function()
        seconds.append(time.process_time() - started)
    print(f"| {label} | {min(seconds):.3f} |")
    return result


@contextmanager
def eager_attention(model):
    """transformers' own BLIP vision attention for a while, in place of capfleet's fused one."""
    from transformers.models.blip.modeling_blip import BlipAttention

    from capfleet.models.blip_attention import FusedBlipAttention

    fused = [module for module in model.modules() if type(module) is FusedBlipAttention]
    for module in fused:
        module.__class__ = BlipAttention
    try:
        yield
    finally:
        for module in fused:
            module.__class__ = FusedBlipAttention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="torch.profiler's table for one batch")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import transformers

    from capfleet.models.captioner import HFCaptioner
    from capfleet.models.scorer import HFScorer
    from tests import tiny_models

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        blip = tiny_models.build_blip(Path(temp) / "blip", tiny=False)
        clip = tiny_models.build_clip(Path(temp) / "clip", tiny=False)
        captioner = HFCaptioner.load(str(blip), "cpu", args.dtype, max_new_tokens=args.max_new_tokens)
        scorer = HFScorer.load(str(clip), "cpu", args.dtype)
    for model in (captioner.model, captioner.model.text_decoder):
        model.generation_config.min_new_tokens = args.max_new_tokens  # random weights seldom stop early
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8)) for _ in range(args.batch)]
    seeds = list(range(args.batch))
    rows = args.batch * args.candidates
    print(f"{args.batch} images x {args.candidates} candidates, {args.dtype}, {args.threads} torch thread(s)\n")
    print("| part | CPU-seconds |\n|---|---:|")
    with torch.inference_mode():
        inputs, _ = captioner.model_inputs(images, None)
        best_of("BLIP processor", lambda: captioner.model_inputs(images, None))
        encode = lambda: captioner.model.vision_model(**inputs)[0]  # noqa: E731
        embeds = best_of("BLIP vision encoder", encode)
        with eager_attention(captioner.model):
            best_of("BLIP vision encoder, transformers' eager attention", encode)
        generate = lambda: captioner.generate(images, args.candidates, None, seeds)  # noqa: E731
        texts = best_of("capfleet generate (vision encoder included)", generate)
        best_of("CLIP score (image and text features)", lambda: scorer.score(images, texts))
        key = captioner.model.text_decoder.bert.encoder.layer[0].crossattention.self.key
        layers = 2 * len(captioner.model.text_decoder.bert.encoder.layer)
        copies = embeds.repeat_interleave(args.candidates, dim=0)
        label = "cross-attention keys + values, every decoder layer,"
        best_of(f"{label} {rows} rows (HF generate)", lambda: [key(copies) for _ in range(layers)])
        best_of(f"{label} {args.batch} rows (capfleet)", lambda: [key(embeds) for _ in range(layers)])
        if args.profile:
            with torch.profiler.profile() as profile:
                scorer.score(images, generate())
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
