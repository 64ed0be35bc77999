"""P captioning processes x C/P torch threads against one process x C threads, on a CPU.

Why: issue 25 asked whether CPU data parallelism (one model per process, as `--gpus N` runs one per
GPU) beats one process using every core: the decoder's small matrix multiplies (24 rows x 1 token)
scale badly across threads, and processes overlap each other's Python and decoding. Each process
loads full-size random-weight BLIP + CLIP (tests/tiny_models.py) and runs whole `run_caption` calls
on its equal share of the images (capfleet's defaults otherwise); models are loaded and warmed up
before the clock, which runs from a common start to the last process done. The two set-ups take
turns, `--repeats` times, so a slow spell on a shared machine hits both.

    .venv/bin/python benchmarks/bench_cpu_processes.py [--processes 2] [--images 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def run_config(models: Path, images: Path, out: Path | str, threads: int):
    from capfleet.config import RunConfig

    blip, clip = str(models / "blip"), str(models / "clip")
    return RunConfig(
        inputs=[str(images)], output=str(out), captioner=blip, scorer=clip, threads=threads, progress=False
    )


def worker(models: Path, images: Path, out: Path, threads: int, tokens: int, start, done) -> None:
    """Load once, warm up, then one whole run per repetition when `start` releases everyone."""
    import transformers
    from bench_pipeline import fix_length

    from capfleet.runners.lifecycle import run_caption
    from capfleet.runners.models import load_models

    transformers.logging.set_verbosity_error()
    loaded = load_models(run_config(models, images, "-", threads))
    fix_length(loaded[0], tokens)
    run_caption(run_config(models, images, out / "warm-up", threads), models=loaded)
    for repetition in itertools.count():  # until the parent terminates it
        start.wait()
        run_caption(run_config(models, images, out / f"run-{repetition}", threads), models=loaded)
        done.put(repetition)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT.parent / "src"), str(ROOT.parent), str(ROOT)]
    from bench_pipeline import cpu_features, make_images

    from capfleet.cpus import available_cpus
    from tests import tiny_models

    cpus = available_cpus()
    print(f"cpu: {cpu_features()}; {cpus} usable CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="capfleet-processes-") as temp:
        work = Path(temp)
        tiny_models.build_blip(work / "models" / "blip", tiny=False)
        tiny_models.build_clip(work / "models" / "clip", tiny=False)
        paths = make_images(work / "images", args.images)
        setups = {
            "1 process": (1, cpus),
            f"{args.processes} processes": (args.processes, max(1, cpus // args.processes)),
        }
        context = multiprocessing.get_context("spawn")
        done = context.Queue()
        groups, workers = {}, []
        for name, (count, threads) in setups.items():
            groups[name] = context.Barrier(count + 1)
            share = -(-args.images // count)  # images per process
            for index in range(count):
                listing = work / f"{name}-{index}.txt"
                listing.write_text("".join(f"{path}\n" for path in paths[index * share : (index + 1) * share]))
                where = (work / "models", listing, work / f"{name}-{index}", threads, args.max_new_tokens)
                process = context.Process(target=worker, args=(*where, groups[name], done), daemon=True)
                process.start()
                workers.append(process)
        seconds: dict[str, list[float]] = {name: [] for name in setups}
        for repetition in range(args.repeats):
            for name, (count, _) in setups.items():
                groups[name].wait()  # every worker of the set-up loaded and waiting: the clock starts
                started = time.perf_counter()
                for _ in range(count):
                    done.get()
                seconds[name].append(time.perf_counter() - started)
            print(f"repetition {repetition + 1}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()))
        for process in workers:
            process.terminate()
    print(f"\n{args.images} images, load average now {os.getloadavg()[0]:.2f}\n")
    print("| set-up | torch threads each | best s | mean s |\n|---|---:|---:|---:|")
    for name, (_, threads) in setups.items():
        values = seconds[name]
        print(f"| {name} | {threads} | {min(values):.2f} | {sum(values) / len(values):.2f} |")
    one, many = seconds["1 process"], seconds[f"{args.processes} processes"]
    print(f"\n{args.processes} processes / 1 process = {min(one) / min(many):.2f}x (best), "
          f"{sum(one) / sum(many):.2f}x (mean)")  # fmt: skip


if __name__ == "__main__":
    main()
