"""The shipped built-in model: quality on unseen scenes, whether ranking helps, size and speed.

    python benchmarks/bench_builtin.py [--scenes 500] [--model builtin]

Draws held-out scenes with a seed the model never saw in training (12345; training used 1),
captions them with `capfleet caption` (N sampled candidates ranked by the model's own
contrastive heads), and prints, for the ranked caption, the first sample alone, beam search and the
most-frequent-caption baseline: object accuracy (the caption names exactly the scene's colour+shape
objects), relation accuracy (every spatial claim true, over captions making one) and CIDEr, then
which part of the objects the wrong captions get wrong (count, colour, shape, colour+shape pairing).
Also the model's size on disk and images/s of the whole captioning run (decode, generate, score,
write) on this machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import torch

from capfleet.config import RunConfig
from capfleet.evaluate import caption_scores, most_frequent_caption_baseline, read_predictions, read_references
from capfleet.evaluate.scene_accuracy import scene_accuracy, scenes_of
from capfleet.models.registry import CAPTIONER_ALIASES, resolve_name
from capfleet.runners.lifecycle import run_caption
from capfleet.synth import generate_synthetic_dataset
from capfleet.synth.grounding import OBJECT_ERRORS, object_error

HELD_OUT_SEED = 12345


def caption(scenes: Path, out: Path, model: str, **options) -> tuple[dict[str, list[str]], float]:
    """{image source: candidates in ranked-kept order} and images/s of the run."""
    config = RunConfig(inputs=[str(scenes)], output=str(out), captioner=model, progress=False, **options)
    summary = run_caption(config)
    rows = read_predictions(out).rows.values()
    return {Path(p.source).name: [p.text, *p.candidates] for p in rows}, summary.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16: the CPU dtype to measure")
    parser.add_argument("--quantize", help="int8: dynamic int8 linear layers (with --dtype float32)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the usable CPUs; 1 on a busy machine)")
    args = parser.parse_args()
    model_dir = Path(resolve_name(args.model, CAPTIONER_ALIASES, "captioner"))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        generate_synthetic_dataset(args.scenes, temp / "scenes", seed=HELD_OUT_SEED, size=64, progress=False)
        refs = read_references(temp / "scenes")
        references = {ref.image_path.name: list(ref.captions) for ref in refs.rows.values()}
        scenes = {refs.rows[key].image_path.name: scene for key, scene in scenes_of(refs).items()}
        sampled, sampled_rate = caption(
            temp / "scenes",
            temp / "sampled",
            args.model,
            scorer=args.model,
            candidates=args.candidates,
            dtype=args.dtype,
            quantize=args.quantize,
            threads=args.threads,
        )
        beam, beam_rate = caption(temp / "scenes", temp / "beam", args.model, scorer="none", decoding="beam",
                                  candidates=1, dtype=args.dtype, quantize=args.quantize,
                              threads=args.threads)  # fmt: skip
    baseline = most_frequent_caption_baseline(references)
    systems = {
        f"best of {args.candidates} sampled, ranked by the model's scorer": {k: v[0] for k, v in sampled.items()},
        "first sample alone (no ranking)": {k: v[1] for k, v in sampled.items()},
        "beam search (3 beams), 1 caption": {k: v[0] for k, v in beam.items()},
        f"baseline: most frequent caption ({next(iter(baseline.values()))!r})": baseline,
    }
    size_mb = sum(f.stat().st_size for f in model_dir.iterdir()) / 1e6
    print(f"\nheld-out scenes: {len(references)} (seed {HELD_OUT_SEED})  model: {model_dir} ({size_mb:.1f} MB)")
    print(
        f"cores: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  torch {torch.__version__}  "
        f"dtype: {args.dtype}  quantize: {args.quantize}  "
        f"load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print("| captions | object acc. | relation acc. | captions with a spatial claim | CIDEr | BLEU-4 | ROUGE-L |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, predictions in systems.items():
        scores = caption_scores(references, predictions, tokenizer="simple", meteor=False)
        acc = scene_accuracy(scenes, predictions)
        relation = "n/a" if acc["relation_accuracy"] is None else f"{acc['relation_accuracy']:.1%}"
        print(
            f"| {name} | {acc['object_accuracy']:.1%} | {relation} | {acc['captions_with_relations']} | "
            f"{scores['CIDEr']:.3f} | {scores['BLEU-4']:.3f} | {scores['ROUGE-L']:.3f} |"
        )
    print("\nobject errors, share of scenes (`capfleet.synth.grounding.object_error`)\n")
    print(f"| captions | {' | '.join(OBJECT_ERRORS)} |")
    print(f"| --- |{' ---: |' * len(OBJECT_ERRORS)}")
    for name, predictions in list(systems.items())[:3]:
        errors = Counter(object_error(predictions[key], scenes[key]) for key in scenes)
        print(f"| {name} | {' | '.join(f'{errors[e] / len(scenes):.1%}' for e in OBJECT_ERRORS)} |")
    print(f"\nimages/s, whole run: sampled x{args.candidates} + ranking {sampled_rate:.1f}, beam {beam_rate:.1f}")


if __name__ == "__main__":
    main()
