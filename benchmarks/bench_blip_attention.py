"""Whole `run_caption` runs with capfleet's fused BLIP vision attention against transformers' eager one.

Why: the fused attention (capfleet/models/blip_attention.py) is faster in the vision encoder alone
(profile_caption.py); this says what it buys a whole run, per dtype (capfleet fuses float32 models
only). One process loads full-size random-weight BLIP + CLIP (tests/tiny_models.py) once, then runs
alternate between the two attentions by switching the modules' class, `--repeats` times, so a slow
spell on a shared machine hits both.

    .venv/bin/python benchmarks/bench_blip_attention.py [--dtype float32 --quantize int8 --threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--quantize", default=None)
    parser.add_argument("--threads", type=int, help="torch threads (default: the usable CPUs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT.parent / "src"), str(ROOT.parent), str(ROOT)]
    import transformers
    from bench_pipeline import cpu_features, fix_length, make_images
    from profile_caption import eager_attention

    from capfleet.config import RunConfig
    from capfleet.models.blip_attention import fuse_vision_attention
    from capfleet.runners.lifecycle import run_caption
    from capfleet.runners.models import load_models
    from tests import tiny_models

    transformers.logging.set_verbosity_error()
    print(f"cpu: {cpu_features()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="capfleet-attention-") as temp:
        work = Path(temp)
        blip = tiny_models.build_blip(work / "blip", tiny=False)
        clip = tiny_models.build_clip(work / "clip", tiny=False)
        listing = work / "images.txt"
        listing.write_text("".join(f"{path}\n" for path in make_images(work / "images", args.images)))

        def config(out: Path | str) -> RunConfig:
            models = {"captioner": str(blip), "scorer": str(clip), "dtype": args.dtype, "quantize": args.quantize}
            return RunConfig(inputs=[str(listing)], output=str(out), threads=args.threads, progress=False, **models)

        models = load_models(config("-"))
        fix_length(models[0], models[0].options.max_new_tokens)
        fuse_vision_attention(models[0].model)  # the loader fuses float32 models only; bf16 is compared too
        cases = {"fused (capfleet)": nullcontext, "eager (transformers)": lambda: eager_attention(models[0].model)}
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for repetition in range(-1, args.repeats):  # -1: a warm-up of each, off the clock
            for name, attention in cases.items():
                with attention():
                    started = time.perf_counter()
                    run_caption(config(work / f"{name[:5]}-{repetition}"), models=models)
                    if repetition >= 0:
                        seconds[name].append(time.perf_counter() - started)
            if repetition >= 0:
                print(f"repetition {repetition + 1}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()))
    dtype = models[0].dtype if args.quantize is None else f"{models[0].dtype} + {args.quantize}"
    print(f"\n{args.images} images, {dtype}, load average now {os.getloadavg()[0]:.2f}")
    fused, eager = (min(values) for values in seconds.values())
    print(f"eager / fused = {eager / fused:.2f}x (best of {args.repeats}: {eager:.2f} s and {fused:.2f} s)")


if __name__ == "__main__":
    main()
