"""What per-image sampling costs: HF's batch-wide sampling against capfleet's per-image sampler.

    python benchmarks/bench_sampling.py [--model builtin] [--images 64] [--batch-size 8] [--device cpu]

capfleet gives each image its own generator so its captions do not depend on its batch
(models/sampling.py). This times `model.generate` on the same preprocessed batches both ways,
interleaved `--repeats` times: HF's own nucleus sampling from one global generator (what capfleet
did before), and capfleet's `HFCaptioner.generate` path with per-image seeds. Generation is pinned
to `--max-new-tokens` new tokens on both sides, so both produce the same amount of text.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from capfleet.models import load_captioner
from capfleet.models.sampling import image_seed
from capfleet.synth import generate_synthetic_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from PIL import Image

    with tempfile.TemporaryDirectory() as temp:
        generate_synthetic_dataset(args.images, temp, seed=5, size=96, shard_size=args.images, progress=False)
        paths = sorted(p for p in (os.path.join(d, f) for d, _, fs in os.walk(temp) for f in fs) if p.endswith("png"))
        images = [Image.open(path).convert("RGB") for path in paths]
    captioner = load_captioner(args.model, device=args.device, max_new_tokens=args.max_new_tokens)
    pinned = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens}
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]

    def hf_global_generator(batch, first):
        inputs, _ = captioner.model_inputs(batch, None)
        captioner.model.generate(
            **inputs, **pinned, do_sample=True, top_p=0.9, top_k=0, num_return_sequences=args.candidates
        )

    def per_image_generators(batch, first):
        seeds = [image_seed(0, f"{first + i:09d}") for i in range(len(batch))]
        kwargs = captioner.options.generate_kwargs(args.candidates, seeds)
        inputs, _ = captioner.model_inputs(batch, None)
        captioner.model.generate(**inputs, **{**kwargs, **pinned})

    cases = {
        "HF sampling, one global generator": hf_global_generator,
        "capfleet per-image sampler": per_image_generators,
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for run in cases.values():  # warm-up
            run(batches[0], 0)
        for _ in range(args.repeats):
            for name, run in cases.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for index, batch in enumerate(batches):
                    run(batch, index * args.batch_size)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                timings[name].append(len(images) / (time.perf_counter() - started))

    print(f"model={args.model} device={args.device} threads={args.threads} images={len(images)}")
    print(f"batch={args.batch_size} candidates={args.candidates} new tokens={args.max_new_tokens} (pinned)")
    print(f"| case | images/s (mean of {args.repeats}) | ratio | best images/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    baseline = timings[next(iter(cases))]
    base_mean, base_best = sum(baseline) / len(baseline), max(baseline)
    for name, values in timings.items():
        mean, best = sum(values) / len(values), max(values)
        print(f"| {name} | {mean:.2f} | {mean / base_mean:.3f} | {best:.2f} | {best / base_best:.3f} |")


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    main()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
