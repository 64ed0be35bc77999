"""RunConfig: every knob of a caption run, its defaults, validation and the resume fingerprint.

Each setting is declared once, as an `option()` field with its default, help text, fingerprint
role and --help panel (capfleet.options); the engines and filters declare theirs in their own
plugin modules, and RunConfig is composed from them all by dataclass inheritance. `capfleet
caption` builds its options from these fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from capfleet import plugins
from capfleet.decoding import CANDIDATES, DECODINGS, DEFAULT
from capfleet.errors import ConfigError
from capfleet.io.paths import local_path
from capfleet.models.engines.openai_api import Options as OpenAIOptions
from capfleet.models.engines.transformers_local import Options as TransformersOptions
from capfleet.models.engines.vllm_offline import Options as VLLMOptions
from capfleet.models.registry import CAPTIONER_ALIASES, SCORER_ALIASES, model_names
from capfleet.options import fingerprint_fields, option
from capfleet.stages.filters.dedup import Options as DedupOptions
from capfleet.stages.filters.nsfw import Options as NsfwOptions
from capfleet.stages.filters.ocr import Options as OcrOptions
from capfleet.stages.filters.size import Options as SizeOptions
from capfleet.stages.filters.watermark import Options as WatermarkOptions
from capfleet.stages.hygiene import HygieneOptions

__all__ = ["ConfigError", "RunConfig"]  # ConfigError lives in capfleet.errors; users import it from here too

RUNNERS = ("local", "beam", "ray")
# --help panels (the filters' and the engines' own are named in their modules).
MODELS, SAMPLING, INPUT, OUTPUT, HYGIENE, WHERE = (
    "Models",
    "Captioning",
    "Input",
    "Output",
    "Caption hygiene",
    "Runners",
)


@dataclass
class CoreOptions:
    """What every run has: the inputs, the models and how they sample, reading and pacing."""

    # The CLI's INPUT arguments (folders, images, file lists or URLs) and -o (a folder or bucket URL).
    inputs: list[str] = field(metadata={"fingerprint": "always", "cli": False})
    output: str = field(metadata={"fingerprint": "never", "cli": False})
    captioner: str = option(
        "blip",
        f"{model_names(CAPTIONER_ALIASES)}, a hub id (org/name), a local model folder, or none (copy only).",
        fingerprint="always",
        panel=MODELS,
        metavar="NAME",
    )
    scorer: str = option(
        "auto",
        "auto (the captioner's own scorer: builtin and capfleet-trained models; else clip), "
        f"{model_names(SCORER_ALIASES)}, a hub id, a local model folder, or none.",
        fingerprint="always",
        panel=MODELS,
        metavar="NAME",
    )
    engine: str = option(
        "transformers",
        f"{' | '.join(plugins.names('engine'))}: where captions come from (openai: an OpenAI-compatible endpoint).",
        fingerprint="if_set",
        choices=plugins.names("engine"),
        panel=MODELS,
    )
    device: str = option("auto", "auto | cpu | cuda.", choices=("auto", "cpu", "cuda"), panel=MODELS)
    dtype: str = option(
        "auto",
        "auto (bf16/fp16 on GPU; bf16 on CPUs with AMX or AVX512-BF16, fp32 with int8 linear layers on other "
        "CPUs with AVX512-VNNI, else fp32) | float32 | float16 | bfloat16",
        choices=("auto", "float32", "float16", "bfloat16"),
        panel=MODELS,
    )
    threads: int | None = option(
        None,
        "Torch threads for the models (default: the CPUs this process may use, affinity and cgroup quota).",
        panel=MODELS,
    )
    candidates: int = option(
        CANDIDATES,
        "Candidate captions sampled per image; the best-scored is kept.",
        fingerprint="always",
        panel=SAMPLING,
    )
    decoding: str = option(
        DEFAULT.decoding, "sample (nucleus) | beam.", fingerprint="always", choices=DECODINGS, panel=SAMPLING
    )
    top_p: float = option(DEFAULT.top_p, "Nucleus sampling mass.", fingerprint="always", panel=SAMPLING)
    max_new_tokens: int = option(
        DEFAULT.max_new_tokens, "Longest caption, in tokens.", fingerprint="always", panel=SAMPLING
    )
    prompt: str | None = option(
        None,
        "Text prefix (BLIP, GIT) or instruction (chat VLMs); may use {original_text} and json fields.",
        fingerprint="always",
        panel=SAMPLING,
    )
    seed: int = option(
        0, "Sampling seed; same seed and settings give the same rows.", fingerprint="always", panel=SAMPLING
    )
    limit: int | None = option(None, "Only the first N images (exactly those a full run does first).", panel=INPUT)
    max_pixels: int = option(
        89_478_485,  # Pillow's own decompression-bomb threshold
        "Decompression-bomb guard: larger images become errors.",
        fingerprint="always",
        panel=INPUT,
    )
    max_bytes: int = option(
        100_000_000,
        "Files larger than this (bytes) become errors; enforced while reading.",
        fingerprint="if_set",
        panel=INPUT,
    )
    http_timeout: float = option(30.0, "Seconds one http(s) image download may take, body included.", panel=INPUT)
    image_column: str | None = option(
        None, "Table inputs: the image column (default: autodetect).", fingerprint="if_set", panel=INPUT
    )
    caption_column: str | None = option(
        None, "Table inputs: the original caption column.", fingerprint="if_set", panel=INPUT
    )
    batch_size: int | None = option(  # None: chosen by measurement (capfleet.tuning)
        None, "Images per model call, or auto: measured on CPU, largest that fits on CUDA (cached)."
    )
    workers: int = option(
        4, "Threads reading and decoding ahead of the model (default: the CPUs this process may use, >= 4)."
    )
    shard_retries: int = option(2, "Times a shard that raised is redone from scratch.")
    progress: bool | None = option(None, "Progress bar (default: on a TTY).")
    retry_errors: bool = option(False, "Redo only the images recorded as errors in finished shards.")


@dataclass
class HygieneSettings:
    """Caption hygiene (README "Caption hygiene"): degenerate candidates dropped before ranking."""

    hygiene: bool = option(True, "Drop degenerate candidates before ranking.", fingerprint="if_set", panel=HYGIENE)
    strip_openers: bool = option(
        False, "Strip boilerplate openers ('This image shows ...').", fingerprint="if_set", panel=HYGIENE
    )
    min_words: int = option(1, "Hygiene: shorter candidates are degenerate.", fingerprint="if_set", panel=HYGIENE)
    max_words: int = option(
        0, "Hygiene: longer candidates are degenerate (0: no limit).", fingerprint="if_set", panel=HYGIENE
    )
    resample_attempts: int = option(
        2, "Hygiene: re-samples of an image whose candidates all fail.", fingerprint="if_set", panel=HYGIENE
    )


@dataclass
class OutputOptions:
    """Where and how rows are written (the format settings move to the format plugins)."""

    shard_size: int = option(1000, "Images per output shard (unit of resume).", fingerprint="always", panel=OUTPUT)
    overwrite: bool = option(False, "Discard an earlier run in OUTPUT and start over.", panel=OUTPUT)
    format: str = option(
        "imagefolder",
        "imagefolder | webdataset (a tar per shard) | parquet | artifacts (or a registered format plugin).",
        fingerprint="if_set",
        flag="--format",
        panel=OUTPUT,
    )
    txt: str = option(
        "none",
        "best | all: also write KEY.txt beside each image (LoRA trainers' layout); all: every candidate.",
        fingerprint="if_set",
        choices=("none", "best", "all"),
        panel=OUTPUT,
    )
    images: bool = option(True, "parquet: --no-images writes captions only.", fingerprint="if_set", panel=OUTPUT)
    keep_names: bool = option(
        False,
        "Name output files <original stem>_<key>.ext instead of <key>.ext (unique, stable on rerun).",
        fingerprint="if_set",
        panel=OUTPUT,
    )
    embeddings: bool = option(
        False,
        "Keep the scorer's image and chosen-caption embeddings (SHARD/embeddings.npz).",
        fingerprint="if_set",
        flag="--embeddings",
        panel=OUTPUT,
    )


@dataclass
class RunnerOptions:
    """Where shards run (runners/lifecycle.py), and task arrays (runners/task_array.py)."""

    runner: str = option(
        "local",
        "local (this process; --gpus N processes) | beam (Apache Beam) | ray.",
        choices=RUNNERS,
        panel=WHERE,
    )
    gpus: int = option(1, "One engine per GPU, shards divided among them (local runner).", panel=WHERE)
    model_processes: int | None = option(
        None,
        "Processes that each hold the models and caption their own batches, torch threads divided among them "
        "(default: 2 on a CPU with 2+ threads once a run has 30 s of captioning left, else 1; on a GPU, "
        "given, they share it).",
        panel=WHERE,
    )
    ray_address: str | None = option(
        None,
        "Ray: the cluster to join (default: RAY_ADDRESS, else a running local cluster, else a new one).",
        panel=WHERE,
    )
    ray_workers: int | None = option(None, "Ray: actors, each loading the models once (default: all fit).", panel=WHERE)
    ray_cpus_per_worker: float = option(1.0, "Ray: CPUs each actor reserves.", panel=WHERE)
    gpus_per_worker: float = option(0.0, "Ray: GPUs each actor reserves (0.5: two actors per GPU).", panel=WHERE)
    task_index: int | None = option(
        None,
        "This process is task I of a task array (default: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, "
        "or Kubernetes' JOB_COMPLETION_INDEX); it takes the pending shards that belong to it.",
        panel=WHERE,
    )
    task_count: int | None = option(
        None,
        "Tasks in the array (default: SLURM_ARRAY_TASK_COUNT; a Kubernetes Job needs it given).",
        panel=WHERE,
    )


# Dataclass fields come from the last base first: CoreOptions, listed last, holds the two required ones.
@dataclass
class RunConfig(
    RunnerOptions,
    OutputOptions,
    NsfwOptions,
    OcrOptions,
    WatermarkOptions,
    SizeOptions,
    DedupOptions,
    HygieneSettings,
    VLLMOptions,
    OpenAIOptions,
    TransformersOptions,
    CoreOptions,
):
    """Every setting of a caption run; `validate()` checks them without changing any."""

    @property
    def scorer_name(self) -> str:
        """The scorer the run uses: `auto` resolved to the captioner's own, clip, or none."""
        if self.scorer != "auto":
            return self.scorer
        from capfleet.models.registry import default_scorer

        return default_scorer(self.captioner)

    def validate(self) -> RunConfig:
        if not self.inputs:
            raise ConfigError("give at least one INPUT (a folder, an image, a file list or a URL)")
        local_output = local_path(self.output)
        if local_output is not None and os.path.isfile(local_output):
            raise ConfigError(f"output {self.output} is a file: -o needs a folder (new or empty) or a bucket URL")
        problems = [*self._core_problems(), *self._plugin_problems(), *self._runner_problems()]
        if problems:
            raise ConfigError(problems[0])
        if self.prompt:
            from capfleet.models.prompts import prompt_fields

            prompt_fields(self.prompt)  # a template that cannot be parsed stops the run here
        return self

    def _core_problems(self) -> list[str]:
        choices = [
            f"{_flag(item)} must be one of {', '.join(item.metadata['choices'])}"
            for item in dataclasses.fields(self)
            if item.metadata.get("choices") and getattr(self, item.name) not in _allowed(item)
        ]
        checks = [
            (self.candidates >= 1, "--candidates must be >= 1"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.max_new_tokens >= 1, "--max-new-tokens must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, "--batch-size must be auto or >= 1"),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.shard_size >= 1, "--shard-size must be >= 1"),
            (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
            (self.max_pixels >= 1, "--max-pixels must be >= 1"),
            (self.max_bytes >= 1, "--max-bytes must be >= 1"),
            (self.shard_retries >= 0, "--shard-retries must be >= 0"),
            (self.format in plugins.names("format"), f"--format must be one of {', '.join(plugins.names('format'))}"),
            (self.http_timeout > 0, "--http-timeout must be > 0"),
            (self.min_words >= 0, "--min-words must be >= 0"),
            (self.max_words == 0 or self.max_words >= self.min_words, "--max-words must be 0 or >= --min-words"),
            (self.resample_attempts >= 0, "--resample-attempts must be >= 0"),
            (self.threads is None or self.threads >= 1, "--threads must be >= 1"),
            (not self.embeddings or self.scorer_name != "none", "--embeddings needs a scorer (not --scorer none)"),
        ]
        return choices + [message for ok, message in checks if not ok]

    def _plugin_problems(self) -> list[str]:
        """Each filter's and engine's problems with these settings, then the chosen format's (which
        refuses the settings it does not honour, such as --txt outside imagefolder)."""
        problems = [
            problem
            for kind in ("filter", "engine")
            for module in plugins.modules(kind)
            for problem in module.check(self)
        ]
        if self.format in plugins.names("format"):
            problems += plugins.find("format", self.format).check(self)
        return problems

    def _runner_problems(self) -> list[str]:
        checks = [
            (self.gpus >= 1, "--gpus must be >= 1"),
            (self.gpus == 1 or self.runner == "local", "--gpus is for the local runner (Ray: --gpus-per-worker)"),
            (self.model_processes is None or self.model_processes >= 1, "--model-processes must be >= 1"),
            (
                self.model_processes in (None, 1) or (self.runner == "local" and self.gpus == 1),
                "--model-processes is for the local runner on one device (several GPUs: --gpus N; Ray: --ray-workers)",
            ),
            (self.ray_workers is None or self.ray_workers >= 1, "--ray-workers must be >= 1"),
            (self.ray_cpus_per_worker > 0, "--ray-cpus-per-worker must be > 0"),
            (self.gpus_per_worker >= 0, "--gpus-per-worker must be >= 0"),
        ]
        return [message for ok, message in [*checks, *self._task_checks()] if not ok]

    def _task_checks(self) -> list[tuple[bool, str]]:
        if self.task_index is None and self.task_count is None:
            return []
        count = self.task_count
        return [
            (self.task_index is not None and count is not None, "--task-index and --task-count go together"),
            (count is None or count >= 1, "--task-count must be >= 1"),
            (
                self.task_index is None or count is None or 0 <= self.task_index < count,
                f"--task-index must be in 0 .. {(count or 1) - 1} (--task-count {count}), not {self.task_index}",
            ),
            (not self.overwrite, "--overwrite cannot be given to a task array: clear OUT with one plain run first"),
        ]

    def hygiene_options(self) -> HygieneOptions:
        return HygieneOptions(self.hygiene, self.strip_openers, self.min_words, self.max_words, self.resample_attempts)

    def fingerprint_fields(self) -> dict:
        """The settings that decide the rows, `auto` resolved (runs record the scorer they used)."""
        return {**fingerprint_fields(self), "scorer": self.scorer_name}

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _allowed(item: dataclasses.Field) -> tuple:
    """A setting's choices; None too where None (unset) is its default."""
    return (*item.metadata["choices"], *((None,) if item.default is None else ()))


def _flag(item: dataclasses.Field) -> str:
    """The CLI flag of a setting, as errors name it."""
    return item.metadata.get("flag") or "--" + item.name.replace("_", "-")
