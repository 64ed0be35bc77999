"""Distillation on the synthetic world, DLIP-style: teacher, distilled student, student without teacher.

    OMP_NUM_THREADS=1 python benchmarks/bench_distill.py [--scenes 4000] [--steps 2000] [--teacher builtin]

The README's first table uses the built-in model (the default). The larger teacher of its second table is
the built-in recipe at the `small` preset's size (width 256, 6 encoder and 4 decoder layers; about 23 minutes
with two threads on this project's 2-core machine when it is quiet, at commit 34fab5c's recipe):

    python scripts/build_builtin_model.py --width 256 --layers 6,4 --steps 1800 --threads 2 \
        --work /tmp/teacher --output /tmp/teacher/bundle
    OMP_NUM_THREADS=1 python benchmarks/bench_distill.py --teacher /tmp/teacher/bundle

Draws training scenes (seed 1, the built-in model's training seed) and held-out scenes (seed
12345, never trained on); distils the teacher into a student with `capfleet distill`'s code path
(teacher captions + token KL + the teacher's image tokens and per-token object predictions +
embedding matching + the student's contrastive loss) and trains the same student with
`capfleet train`'s code path, with the same settings and steps, twice: on the dataset's captions
alone, and with the synth-only ground-truth object loss (`--object-loss-weight 4`, what made the
teacher right; a real dataset has no such labels). A student of a teacher that grounds its relation words
(``ground_relations``) grounds its own in its object map: it is also measured with that off. Then, for the
models, on the held-out scenes: parameters,
images/s (5 sampled candidates ranked by the model's own scorer, in-process, one batch of 32 at a
time; and a whole `capfleet caption` run), CIDEr, object and relation accuracy of the chosen caption, and
text->image / image->text recall at 1/5/10 with the model's own embeddings (every reference
caption of a scene counts as its text). Everything runs in this one process on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from bench_builtin import HELD_OUT_SEED, caption

import capfleet
from capfleet.evaluate import caption_scores, read_references
from capfleet.evaluate.retrieval import retrieval_recall
from capfleet.evaluate.scene_accuracy import scene_accuracy, scenes_of
from capfleet.synth import generate_synthetic_dataset
from capfleet.train.distill import DistillConfig, capfleet_model_folder, distill_main
from capfleet.train.trainer import train_main

TRAIN_SEED = 1
CANDIDATES = 5
TRAINING_ONLY = ("object_head.", "feature_head.")  # heads that only give training targets: not counted


def student_settings(args: argparse.Namespace) -> dict:
    """The student's size and training recipe, the same with and without the teacher."""
    recipe = dict(image_size=64, batch_size=32, max_steps=args.steps, warmup_steps=100, lr=1e-3, save_every=0)
    recipe.update(contrastive_weight=0.5, hard_negatives=True, seed=0, num_threads=1, progress=False, plot=False)
    return {"preset": args.preset, "model_overrides": {"stem": "conv"}, **recipe}


def model_rate(model: capfleet.CaptionModel, images: list) -> float:
    """Images/s of caption() alone (sampled candidates + ranking), batches of 32, after a warm-up batch."""
    model.caption(images[:32], candidates=CANDIDATES, seed=0)
    start = time.perf_counter()
    model.caption(images, candidates=CANDIDATES, seed=0)
    return len(images) / (time.perf_counter() - start)


def measure(name: str, model_dir: str, scenes: Path, work: Path, refs, references: dict, truth: dict) -> dict:
    model = capfleet.load(model_dir, scorer=model_dir, device="cpu", batch_size=32)
    weights = model.captioner.model.named_parameters()
    params = sum(p.numel() for key, p in weights if not key.startswith(TRAINING_ONLY))
    paths = [ref.image_path for ref in refs.rows.values()]
    images = model.open_images(paths)
    rate = model_rate(model, images)
    ranked, run_rate = caption(scenes, work / name, model_dir, scorer=model_dir, candidates=CANDIDATES, threads=1)
    chosen = {key: texts[0] for key, texts in ranked.items()}
    cider = caption_scores(references, chosen, tokenizer="simple", meteor=False)["CIDEr"]
    accuracy = scene_accuracy(truth, chosen)
    texts = [(row, text) for row, ref in enumerate(refs.rows.values()) for text in ref.captions]
    recall = retrieval_recall(
        torch.from_numpy(model.embed_images(images)),
        torch.from_numpy(model.embed_texts([text for _, text in texts])),
        [row for row, _ in texts],
    )
    return {"name": name, "params": params, "rate": rate, "run_rate": run_rate, "CIDEr": cider,
            "objects": accuracy["object_accuracy"], "relations": accuracy["relation_accuracy"],
            "claims": accuracy["captions_with_relations"], **recall}  # fmt: skip


def ungrounded(model_dir: Path, out: Path) -> dict[str, str]:
    """{name: a copy of the distilled student with relation grounding off} when it grounds: what grounding
    adds to the same weights."""
    config = json.loads((model_dir / "config.json").read_text())
    if not config.get("ground_relations"):
        return {}
    out.mkdir()
    for path in model_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, out / path.name)
    (out / "config.json").write_text(json.dumps({**config, "ground_relations": False}, indent=2))
    return {"distilled student, grounding off": str(out)}


def smaller(teacher: dict, row: dict) -> str:
    return "" if row is teacher else f" ({teacher['params'] / row['params']:.1f}x smaller)"


def print_table(rows: list[dict], header: str) -> None:
    print(header)
    print("| model | params | images/s (model) | images/s (caption run) | CIDEr | object acc. "
          "| relation acc. (captions with a claim) | t2i R@1 / 5 / 10 | i2t R@1 / 5 / 10 |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    teacher = rows[0]
    for row in rows:
        t2i = " / ".join(f"{row[f't2i_R@{k}']:.1%}" for k in (1, 5, 10))
        i2t = " / ".join(f"{row[f'i2t_R@{k}']:.1%}" for k in (1, 5, 10))
        relations = "n/a" if row["relations"] is None else f"{row['relations']:.1%}"
        print(
            f"| {row['name']} | {row['params'] / 1e6:.2f} M{smaller(teacher, row)} "
            f"| {row['rate']:.1f} ({row['rate'] / teacher['rate']:.2f}x) | {row['run_rate']:.1f} "
            f"| {row['CIDEr']:.3f} | {row['objects']:.1%} | {relations} ({row['claims']}) | {t2i} | {i2t} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4000, help="training scenes")
    parser.add_argument("--held-out", type=int, default=300)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--teacher", default="builtin")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before, started = os.getloadavg()[0], time.time()
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        generate_synthetic_dataset(args.scenes, work / "train", seed=TRAIN_SEED, size=64, progress=False)
        generate_synthetic_dataset(args.held_out, work / "held", seed=HELD_OUT_SEED, size=64, progress=False)
        t0 = time.time()
        config = DistillConfig(teacher=args.teacher)
        distilled = distill_main(str(work / "train"), str(work / "distilled"), config, **student_settings(args))
        t1 = time.time()
        train_main(str(work / "train"), str(work / "plain"), caption_mode="all", **student_settings(args))
        t2 = time.time()
        train_main(str(work / "train"), str(work / "labels"), caption_mode="all", object_loss_weight=4.0,
                   **student_settings(args))  # fmt: skip
        t3 = time.time()
        refs = read_references(work / "held")
        names = {key: ref.image_path.name for key, ref in refs.rows.items()}
        references = {names[key]: list(ref.captions) for key, ref in refs.rows.items()}
        truth = {names[key]: scene for key, scene in scenes_of(refs).items()}
        models = {
            f"teacher ({args.teacher})": capfleet_model_folder(args.teacher) or args.teacher,
            "distilled student": str(work / "distilled"),
            **ungrounded(work / "distilled", work / "ungrounded"),
            "student without teacher": str(work / "plain"),
            "student without teacher, object labels": str(work / "labels"),
        }
        rows = [measure(name, folder, work / "held", work, refs, references, truth) for name, folder in models.items()]
    header = (
        f"\ntraining scenes: {args.scenes} (seed {TRAIN_SEED}), {args.steps} steps of 32, preset {args.preset} "
        f"+ conv stem; held-out scenes: {args.held_out} (seed {HELD_OUT_SEED})\n"
        f"distil: {t1 - t0:.0f} s (teacher pass + training; KL {distilled.kl_reason}; embeddings "
        f"{'on' if distilled.embed else 'off'}; image tokens {'on' if distilled.features else 'off'}; token "
        f"objects {'on' if distilled.objects else 'off'}), train without teacher: {t2 - t1:.0f} s, "
        f"with object labels: {t3 - t2:.0f} s\n"
        f"cores: {os.cpu_count()}  torch threads: {torch.get_num_threads()}  torch {torch.__version__}  "
        f"load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{(time.time() - started) / 60:.1f} min in all\n"
    )
    print_table(rows, header)


if __name__ == "__main__":
    main()
