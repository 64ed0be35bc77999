"""Throughput of capfleet against the loops it claims to beat, measured in one run.

Why: the project states two speed goals, and they only mean something when both sides of each
ratio run in the same process, on the same images, with the same weights and torch threads:

1. captioning (BLIP captioner + CLIP scorer): `run_caption` must reach >= 2x the images/s of a plain
   per-image loop (open, PIL decode, processor, generate N candidates, CLIP score, write image +
   JSON line; batch 1, one Python thread) on the same weights, and >= 1.3x the
   best of the loops a knowledgeable user writes: a batched loop in capfleet's dtype (same batch,
   candidates, tokens and threads, `torch.inference_mode`, images decoded in a thread pool) and
   `transformers.pipeline` with `batch_size`. The loops run BLIP as transformers loads it (eager
   attention; capfleet fuses a float32 BLIP's), in capfleet's dtype and int8 setting, and share
   capfleet's CLIP;
2. without a model (`captioner="none"`: read, decode, shrink, write shards), capfleet must stay
   within 10% of a tight read + `decode_image` loop (ratio >= 0.90).

No weights can be downloaded, so the models are random-weight builds of the real architectures
from tests/tiny_models.py (`--size full`: real sizes; `--size tiny`: seconds, for a smoke test).
Random weights rarely emit EOS; generation is pinned to exactly --max-new-tokens anyway
(min_new_tokens), so both sides generate the same number of tokens. Model loading is excluded, and so is
the start of the helper processes (`--model-processes` auto, which a run starts once it has 30 s of work
left, so these rows are the pace of such a run), which load models too.

Run on demand, never in CI:  .venv/bin/python benchmarks/bench_pipeline.py [--size tiny]
"""

from __future__ import annotations

import argparse
import copy
import functools
import io
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
MIN_SIDE = 384  # what run_caption shrinks to when there is no captioner (captioner="none")


def fix_length(captioner, tokens: int) -> None:
    """Every candidate exactly `tokens` long on both sides: random weights rarely stop early."""
    for model in (captioner.model, getattr(captioner.model, "text_decoder", None)):
        if model is not None:
            model.generation_config.min_new_tokens = tokens


def pin_length(tokens: int, captioner, scorer) -> None:
    """`fix_length` as a helper process applies it to the models it loaded (`ModelProcesses(after_load=...)`)."""
    fix_length(captioner, tokens)


def helpers_cpu_seconds(helpers) -> float:
    """CPU-seconds the helper processes used so far (this process's `process_time` does not count them)."""
    if helpers is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for helper in helpers.helpers:
        fields = Path(f"/proc/{helper.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def users_model(captioner, path: Path, tokens: int, int8: bool):
    """The captioner as a user's loop has it: the same weights and dtype (int8 linear layers when capfleet's
    has them), loaded by transformers' own class, so with transformers' attention, not capfleet's fused
    float32 BLIP vision attention (models/blip_attention.py)."""
    from capfleet.models.quantize import quantize_int8

    user = copy.copy(captioner)
    user.model = type(captioner.model).from_pretrained(path, dtype=captioner.dtype).to(captioner.device).eval()
    if int8:
        quantize_int8(user.model)
    fix_length(user, tokens)
    return user


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Photo-like 640x480 JPEGs (q90): smooth gradients, blurred shapes, sensor-like noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    paths = []
    for index in range(count):
        a, b = rng.uniform(0, 255, (2, 3))
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / 800 + 0.5
        base = np.clip(a + (b - a) * t[..., None], 0, 255).astype(np.uint8)
        image = Image.fromarray(base)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(4, 10))):
            x0, y0 = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            box = (x0, y0, x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(30, 250)))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
        pixels += rng.normal(0, 6, pixels.shape)
        path = folder / f"img{index:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


class GpuBusy:
    """GPU utilisation sampled while one case runs, so the busy figure is capfleet's, not the whole bench's."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.samples: dict[str, list[int]] = {}

    def during(self, function, *args):
        if not self.enabled:
            return function(*args)
        import torch

        samples = self.samples.setdefault(function.__name__, [])
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                samples.append(torch.cuda.utilization())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            return function(*args)
        finally:
            done.set()
            sampler.join()

    @property
    def shares(self) -> dict[str, float]:
        return {name: sum(values) / len(values) for name, values in self.samples.items() if values}


def run_config(
    args, inputs: Path, out: Path | str, captioner: str, scorer: str, dtype: str = "auto", quantize=None, **more
):
    """One RunConfig for loading and running (`more`: other RunConfig fields)."""
    from capfleet.config import RunConfig

    return RunConfig(
        inputs=[str(inputs)],
        output=str(out),
        captioner=captioner,
        scorer=scorer,
        candidates=args.candidates,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        dtype=dtype,
        quantize=quantize,
        threads=args.threads,  # load_models sets torch's threads from it: None would undo --threads
        model_processes=args.model_processes,
        progress=False,
        **more,
    )


RESAMPLED: dict[str, int] = {}  # output folder -> images capfleet's hygiene sampled again (extra generate calls)


def capfleet_run(config, models, helpers=None) -> float:
    from capfleet.runners.lifecycle import run_caption

    summary = run_caption(config, models=models, model_processes=helpers)
    assert summary.stats.failed == 0 and summary.stats.seen == summary.stats.captioned, summary.lines()
    RESAMPLED[Path(config.output).name] = summary.stats.hygiene.get("images_resampled", 0)
    return summary.wall_seconds


def plain_loop(paths: list[Path], out: Path, args, captioner, scorer) -> float:
    """What a user writes by hand: one image at a time, everything in this thread."""
    import torch

    model, processor, tokenizer = captioner.model, captioner.processor, captioner.tokenizer
    out.mkdir(parents=True)
    torch.manual_seed(0)
    started = time.perf_counter()
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as rows, torch.inference_mode():
        for index, path in enumerate(paths):
            data = path.read_bytes()
            image = Image.open(io.BytesIO(data)).convert("RGB")
            inputs = processor(images=[image], return_tensors="pt")
            output = model.generate(
                pixel_values=inputs["pixel_values"].to(captioner.device),
                do_sample=True,
                top_p=captioner.options.top_p,
                top_k=0,
                num_beams=1,
                num_return_sequences=args.candidates,
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
            )
            texts = [t.strip() for t in tokenizer.batch_decode(output, skip_special_tokens=True)]
            scores = scorer.score([image], [texts]).scores[0]
            best = texts[scores.index(max(scores))]
            (out / f"{index:09d}.jpg").write_bytes(data)
            row = {"file_name": f"{index:09d}.jpg", "text": best, "candidates": texts, "scores": scores}
            rows.write(json.dumps(row) + "\n")
    return time.perf_counter() - started


def cpu_features() -> str:
    """The CPU model and the matmul features that decide capfleet's dtype, so a figure says where it holds."""
    import torch

    from capfleet.models.runtime import CPUINFO_VARIABLE, cpu_flags

    source = os.environ.get(CPUINFO_VARIABLE)
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = cpu_flags() or frozenset()
    names = {"amx_tile": "AMX", "avx512_bf16": "AVX-512 BF16", "avx512_vnni": "AVX-512 VNNI", "avx512f": "AVX-512F"}
    names["avx2"] = "AVX2"
    found = [label for flag, label in names.items() if flag in flags] or ["none of AMX/AVX-512/AVX2"]
    seen = f" as capfleet sees them (${CPUINFO_VARIABLE}={source})" if source else ""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model}; features{seen}: {', '.join(found)}; torch CPU capability {capability}"


def without_bf16(folder: Path) -> str:
    """A copy of /proc/cpuinfo without the flags that give native bf16, for $CAPFLEET_CPUINFO."""
    native = {"amx_bf16", "amx_tile", "amx_int8", "avx512_bf16"}
    lines = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, colon, value = line.partition(":")
        keep = [flag for flag in value.split() if flag not in native]
        lines.append(f"{name}: {' '.join(keep)}" if name.strip() == "flags" else line)
    path = folder / "cpuinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def open_rgb(path: Path) -> tuple[bytes, Image.Image]:
    data = path.read_bytes()
    return data, Image.open(io.BytesIO(data)).convert("RGB")


def write_rows(out: Path, start: int, decoded, candidates: list[list[str]], scores: list[list[float]], rows) -> None:
    for offset, ((data, _), texts, row_scores) in enumerate(zip(decoded, candidates, scores, strict=True)):
        name = f"{start + offset:09d}.jpg"
        (out / name).write_bytes(data)
        best = texts[row_scores.index(max(row_scores))]
        rows.write(json.dumps({"file_name": name, "text": best, "candidates": texts, "scores": row_scores}) + "\n")


def batched_loop(paths: list[Path], out: Path, args, captioner, scorer, batch: int) -> float:
    """The strong hand-written peer: `batch` images per generate in the captioner's dtype,
    inference_mode, decoding in a thread pool ahead of the model."""
    import torch

    model, processor, tokenizer = captioner.model, captioner.processor, captioner.tokenizer
    out.mkdir(parents=True)
    torch.manual_seed(0)
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(args.workers) as pool,
        open(out / "metadata.jsonl", "w", encoding="utf-8") as rows,
        torch.inference_mode(),
    ):
        decoded_all = pool.map(open_rgb, paths)
        for start in range(0, len(paths), batch):
            decoded = list(itertools.islice(decoded_all, batch))
            images = [image for _, image in decoded]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(captioner.device, captioner.dtype)
            output = model.generate(
                pixel_values=pixels,
                do_sample=True,
                top_p=captioner.options.top_p,
                top_k=0,
                num_return_sequences=args.candidates,
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
            )
            texts = [t.strip() for t in tokenizer.batch_decode(output, skip_special_tokens=True)]
            candidates = [texts[i : i + args.candidates] for i in range(0, len(texts), args.candidates)]
            write_rows(out, start, decoded, candidates, scorer.score(images, candidates).scores, rows)
    return time.perf_counter() - started


def hf_pipeline(paths: list[Path], out: Path, args, pipe, scorer, batch: int) -> float:
    """`transformers.pipeline` with batch_size (image-to-text is image-text-to-text in transformers 5:
    an empty prompt), then CLIP scoring per batch; decoding in a thread pool as in batched_loop."""
    import torch

    out.mkdir(parents=True)
    torch.manual_seed(0)
    kwargs = {"do_sample": True, "top_p": 0.9, "top_k": 0, "num_return_sequences": args.candidates}
    kwargs |= {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens}
    started = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool, open(out / "metadata.jsonl", "w", encoding="utf-8") as rows:
        decoded_all = pool.map(open_rgb, paths)
        for start in range(0, len(paths), batch):
            decoded = list(itertools.islice(decoded_all, batch))
            images = [image for _, image in decoded]
            results = pipe(images, text=[""] * len(images), batch_size=batch, generate_kwargs=kwargs)
            candidates = pipeline_candidates(results, len(images), args.candidates)
            write_rows(out, start, decoded, candidates, scorer.score(images, candidates).scores, rows)
    return time.perf_counter() - started


def pipeline_candidates(results: list, images: int, candidates: int) -> list[list[str]]:
    """Each image's texts: transformers releases return one list per image or one flat list."""
    groups = [group if isinstance(group, list) else [group] for group in results]
    if len(groups) != images:
        flat = [item for group in groups for item in group]
        if len(flat) != images * candidates:
            raise ValueError(f"transformers.pipeline returned {len(flat)} texts for {images} images")
        groups = [flat[i : i + candidates] for i in range(0, len(flat), candidates)]
    if any(len(group) != candidates for group in groups):
        counts = sorted({len(group) for group in groups})
        print(f"note: transformers.pipeline returned {counts} texts per image, not {candidates}")
    return [[item["generated_text"].strip() for item in group] for group in groups]


def chosen_captions_changed(first: Path, second: Path) -> int:
    """How many images got another chosen caption in two runs over the same images."""

    def chosen(out: Path) -> dict[str, str]:
        rows = [json.loads(line) for path in sorted(out.glob("[0-9]*/metadata.jsonl")) for line in open(path)]
        return {row["key"]: row["text"] for row in rows}

    a, b = chosen(first), chosen(second)
    return sum(a[key] != b.get(key) for key in a)


def raw_decode(paths: list[Path], max_pixels: int) -> float:
    """The floor for the model-free pipeline: read bytes + capfleet's own decode_image, one thread."""
    from capfleet.stages.decode import decode_image

    started = time.perf_counter()
    for path in paths:
        decode_image(path.read_bytes(), max_pixels, min_side=MIN_SIDE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="full", help="model architecture sizes")
    parser.add_argument("--images", type=int, help="images for the model rows (default: full 16, tiny 64)")
    parser.add_argument("--decode-images", type=int, default=400, help="images for the model-free rows")
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--batch-size", type=int, help="capfleet's batch size (default: auto, the CLI's default)")
    parser.add_argument("--workers", type=int, help="capfleet's I/O threads (default: the CLI's, cpus.default_workers)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (benchmarks/gpu_check.sh), every case")
    parser.add_argument("--threads", type=int, help="torch threads, both sides (default: the CLI's, the usable CPUs)")
    parser.add_argument("--dtype", default="auto", help="capfleet's --dtype (the plain loop is always float32)")
    parser.add_argument("--quantize", default=None, help="capfleet's --quantize (int8; with --dtype float32)")
    parser.add_argument(
        "--model-processes",
        type=int,
        help="capfleet's --model-processes (default: auto, 2 on a CPU with 2+ threads; on a GPU only when given)",
    )
    parser.add_argument(
        "--no-native-bf16",
        action="store_true",
        help="measure what --dtype auto does on a CPU without native bf16: capfleet reads a copy of /proc/cpuinfo "
        "without the AMX and AVX-512 BF16 flags ($CAPFLEET_CPUINFO); the matmuls still run on this CPU",
    )
    parser.add_argument("--keep", help="work folder to use and keep (default: a temp folder, removed)")
    args = parser.parse_args()
    args.images = args.images or (16 if args.size == "full" else 64)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch
    import transformers

    from capfleet.cpus import available_cpus, default_workers
    from capfleet.decoding import DecodingOptions
    from capfleet.models.runtime import CPUINFO_VARIABLE
    from capfleet.runners.model_processes import for_run
    from capfleet.runners.models import load_models
    from capfleet.stages.decode import decode_image
    from capfleet.tuning import DEFAULT_BATCH_SIZE, MIN_IMAGES_TO_TUNE, choose_batch_size
    from tests import tiny_models

    if args.no_native_bf16:
        os.environ[CPUINFO_VARIABLE] = without_bf16(Path(tempfile.mkdtemp(prefix="capfleet-cpuinfo-")))
    args.workers = args.workers or default_workers()
    torch.set_num_threads(args.threads or available_cpus())
    transformers.logging.set_verbosity_error()
    print(f"cpu: {cpu_features()}")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), "
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}"
    )

    with tempfile.TemporaryDirectory(prefix="capfleet-bench-") as temp:
        work = Path(args.keep or temp)
        print(f"building {args.size} random-weight BLIP + CLIP and {args.decode_images} images in {work} ...")
        tiny = args.size == "tiny"
        blip = tiny_models.build_blip(work / f"blip-{args.size}", tiny=tiny)
        clip = tiny_models.build_clip(work / f"clip-{args.size}", tiny=tiny)
        paths = make_images(work / "images", max(args.images, args.decode_images))
        model_paths = paths[: args.images]
        model_list = work / "model-images.txt"
        model_list.write_text("".join(f"{p}\n" for p in model_paths))

        config = run_config(args, model_list, "-", str(blip), str(clip), "float32")
        captioner, scorer = load_models(config)  # fp32: what a user's plain loop loads
        fast = load_models(run_config(args, model_list, "-", str(blip), str(clip), args.dtype, args.quantize))
        int8 = any("quantized" in type(module).__module__ for module in fast[0].model.modules())
        print(f"capfleet --dtype {args.dtype}: {fast[0].dtype}{' with int8 linear layers' if int8 else ''}; "
              f"plain loop: {captioner.dtype}")  # fmt: skip
        assert captioner.options.max_new_tokens == args.max_new_tokens
        for model in (captioner, fast[0]):
            fix_length(model, args.max_new_tokens)
        plain = users_model(captioner, blip, args.max_new_tokens, int8=False)  # float32, what a plain loop loads
        peer = (users_model(fast[0], blip, args.max_new_tokens, int8), fast[1])  # the batched baselines' models
        # The helper processes `capfleet caption` starts (--model-processes auto, once a run has enough work left),
        # started and loaded before the clock like the models, with the same pinned length; their first batches
        # off it too.
        fast_config = run_config(args, model_list, "-", str(blip), str(clip), args.dtype, args.quantize)
        pinned = functools.partial(pin_length, args.max_new_tokens)
        helpers = {
            "fast": for_run(fast_config, fast, after_load=pinned),
            "fp32": for_run(config, (captioner, scorer), after_load=pinned),
        }
        for name, group in helpers.items():
            if group is not None:
                if not group.started:  # auto starts them once a run has 30 s of work left: these rows show that pace
                    group.start()
                ready = group.wait_until_ready()
                print(f"capfleet ({name}): {ready + 1} processes x {group.threads} torch threads each")
        capfleet_run(replace(fast_config, output=str(work / "warmup-capfleet")), fast, helpers["fast"])
        capfleet_run(replace(config, output=str(work / "warmup-capfleet-fp32")), (captioner, scorer), helpers["fp32"])
        # First-call costs (allocator, oneDNN kernels for each shape) off the clock, for both sides.
        plain_loop(model_paths[:1], work / "warmup", args, plain, scorer)
        warm = [decode_image(p.read_bytes(), config.max_pixels, captioner.input_size())[0] for p in model_paths]
        batch = args.batch_size or DEFAULT_BATCH_SIZE  # what auto picks below its tuning threshold
        for pair in ((captioner, scorer), fast, (plain, scorer), peer):
            pair[1].score(warm[:batch], pair[0].generate(warm[:batch], args.candidates))
        if args.batch_size is None and args.device == "cuda":
            # The search runs once per GPU and model (then cached), and the batched baselines get the batch it
            # finds: a user who knows their GPU would not run batch 8 on it, so the ratio is not batch size alone.
            decoding = DecodingOptions.of_run(fast_config)
            batch = choose_batch_size(*fast, args.candidates, decoding, pending_images=MIN_IMAGES_TO_TUNE)
        pipe = transformers.pipeline(
            "image-text-to-text", model=peer[0].model, processor=peer[0].processor, device=peer[0].device
        )
        batched_loop(model_paths[:batch], work / "warmup-batched", args, *peer, batch)
        try:
            hf_pipeline(model_paths[:batch], work / "warmup-pipeline", args, pipe, peer[1], batch)
        except Exception as exc:  # a transformers release whose pipeline output differs: report, go on
            print(f"transformers.pipeline baseline skipped: {type(exc).__name__}: {exc}")
            pipe = None
        busy = GpuBusy(False)  # switched on for the timed runs only
        cases = {
            "plain": lambda rep: plain_loop(model_paths, work / f"plain-{rep}", args, plain, scorer),
            "capfleet": lambda rep: busy.during(
                capfleet_run,
                run_config(args, model_list, work / f"capfleet-{rep}", str(blip), str(clip), args.dtype, args.quantize),
                fast,
                helpers["fast"],
            ),
            # Hygiene re-samples images whose candidates all fail (random weights: far more than real ones):
            # extra generate calls no baseline makes. Off here, so both sides do the same work.
            "capfleet-once": lambda rep: capfleet_run(
                run_config(
                    args,
                    model_list,
                    work / f"capfleet-once-{rep}",
                    str(blip),
                    str(clip),
                    args.dtype,
                    args.quantize,
                    resample_attempts=0,
                ),
                fast,
                helpers["fast"],
            ),  # fmt: skip
            "batched": lambda rep: busy.during(batched_loop, model_paths, work / f"batched-{rep}", args, *peer, batch),
            "pipeline": lambda rep: hf_pipeline(model_paths, work / f"pipeline-{rep}", args, pipe, peer[1], batch),
            "capfleet-fp32": lambda rep: capfleet_run(
                run_config(args, model_list, work / f"capfleet-fp32-{rep}", str(blip), str(clip), "float32"),
                (captioner, scorer),
                helpers["fp32"],
            ),
            "raw": lambda rep: raw_decode(paths[: args.decode_images], config.max_pixels),
            "none": lambda rep: capfleet_run(
                run_config(args, work / "images", work / f"none-{rep}", "none", "none"), (None, None)
            ),
        }
        if pipe is None:
            del cases["pipeline"]
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}  # CPU-seconds of every thread of this process
        busy.enabled = args.device == "cuda"
        for rep in range(args.repeats):  # interleaved, so a slow spell on a shared machine hits every case
            for name, run in cases.items():
                group = helpers["fp32" if name == "capfleet-fp32" else "fast"] if name.startswith("capfleet") else None
                started = time.process_time() + helpers_cpu_seconds(group)
                times[name].append(run(rep))
                cpu[name].append(time.process_time() + helpers_cpu_seconds(group) - started)
            print(f"repetition {rep + 1}/{args.repeats}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
        seconds = {name: sum(values) / len(values) for name, values in times.items()}
        cpu_seconds = {name: sum(values) / len(values) for name, values in cpu.items()}
        changed = chosen_captions_changed(work / "capfleet-0", work / "capfleet-fp32-0")
        for group in helpers.values():
            if group is not None:
                group.close()

    seconds.setdefault("pipeline", float("nan"))
    times.setdefault("pipeline", [float("nan")])
    counts = {
        "plain": args.images,
        "capfleet": args.images,
        "capfleet-fp32": args.images,
        "capfleet-once": args.images,
        "batched": args.images,
        "pipeline": args.images,
        "raw": args.decode_images,
        "none": args.decode_images,
    }
    rates = {name: counts[name] / value for name, value in seconds.items()}
    best = {name: counts[name] / min(values) for name, values in times.items()}
    speedup, model_free = rates["capfleet"] / rates["plain"], rates["none"] / rates["raw"]
    setting = f"--dtype {args.dtype}" + (f" --quantize {args.quantize}" if args.quantize else "")
    rows = [
        (f"plain loop (batch 1, one Python thread), {args.size} BLIP + CLIP", "plain", 1.0),
        (
            f"capfleet run_caption (batch {args.batch_size or 'auto'}, {args.workers} workers, --dtype {args.dtype})",
            "capfleet",
            speedup,
        ),
        ("capfleet run_caption, --resample-attempts 0", "capfleet-once", rates["capfleet-once"] / rates["plain"]),
        ("capfleet run_caption, float32", "capfleet-fp32", rates["capfleet-fp32"] / rates["plain"]),
        (
            f"batched loop (batch {batch}, {fast[0].dtype}, decode thread pool)",
            "batched",
            rates["batched"] / rates["plain"],
        ),
        (
            f"transformers.pipeline (batch_size {batch}, {fast[0].dtype})",
            "pipeline",
            rates["pipeline"] / rates["plain"],
        ),
        ("raw read + decode_image (1 thread)", "raw", 1.0),
        ("capfleet run_caption, captioner=none", "none", model_free),
    ]
    print(f"\n{args.candidates} candidates x {args.max_new_tokens} new tokens, mean of {args.repeats} run(s), "
          f"load average now {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| case | images | seconds | images/s | ratio | CPU-seconds |\n|---|---:|---:|---:|---:|---:|")
    for label, name, ratio in rows:
        print(f"| {label} | {counts[name]} | {seconds[name]:.2f} | {rates[name]:.3f} | {ratio:.2f} | "
              f"{cpu_seconds.get(name, math.nan):.2f} |")  # fmt: skip
    print(f"\ncapfleet / plain loop = {speedup:.2f}x (goal >= 2x)")
    print(f"images capfleet sampled again (hygiene: all candidates degenerate), per run: {RESAMPLED}")
    print(f"chosen captions that differ between {setting} and float32: {changed} of {args.images}")
    print(f"model-free pipeline / raw decode = {model_free:.2f} (goal >= 0.90)")
    baselines = [name for name in ("batched", "pipeline") if not math.isnan(rates[name])]
    strongest = max(baselines, key=rates.get)
    print(f"(best runs instead of means: {best['capfleet'] / best['plain']:.2f}x, {best['none'] / best['raw']:.2f} and "
          f"{best['capfleet'] / max(best[name] for name in baselines):.2f}x the best batched baseline)")  # fmt: skip
    for name, share in busy.shares.items():
        print(f"GPU busy during the {name} runs (torch.cuda.utilization, every 0.2 s): mean {share:.0f}%")
    print(
        f"capfleet / batched loop = {rates['capfleet'] / rates['batched']:.2f}x, "
        f"capfleet / transformers.pipeline = {rates['capfleet'] / rates['pipeline']:.2f}x (goal >= 1.3x the best)"
    )
    per_cpu = {name: cpu_seconds[name] for name in ("plain", "capfleet", "capfleet-once", *baselines)}
    print(
        "per CPU-second (the work each does; wall seconds on a shared machine also count others' load): "
        f"capfleet / plain loop = {per_cpu['plain'] / per_cpu['capfleet']:.2f}x, capfleet / best batched "
        f"baseline = {min(per_cpu[name] for name in baselines) / per_cpu['capfleet']:.2f}x "
        f"({min(per_cpu[name] for name in baselines) / per_cpu['capfleet-once']:.2f}x with --resample-attempts 0)"
    )
    once = rates["capfleet-once"] / rates[strongest]
    print(f"capfleet / best batched baseline = {rates['capfleet'] / rates[strongest]:.2f}x "
          f"({once:.2f}x with --resample-attempts 0, the baselines' work)")  # fmt: skip


if __name__ == "__main__":
    main()
