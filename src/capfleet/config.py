"""RunConfig: every knob of a caption run, its defaults, validation and the resume fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from capfleet.errors import ConfigError
from capfleet.io.paths import local_path
from capfleet.stages.hygiene import HygieneOptions

__all__ = ["ConfigError", "RunConfig"]  # ConfigError lives in capfleet.errors; users import it from here too

DECODINGS = ("sample", "beam")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
ENGINES = ("transformers", "vllm", "openai")
RUNNERS = ("local", "beam", "ray")

# Fields that change which rows a run writes. A rerun into the same output must match them;
# the rest (batch size, workers, device, limit) only change speed or how much is done now.
_FINGERPRINT_FIELDS = (
    "inputs",
    "captioner",
    "scorer",
    "candidates",
    "decoding",
    "max_new_tokens",
    "prompt",
    "seed",
    "shard_size",
    "top_p",
    "max_pixels",
)
FORMATS = ("imagefolder", "webdataset", "parquet", "artifacts")
TXT_MODES = ("none", "best", "all")
# Filter settings change which images get rows, but join the fingerprint only when set, so runs
# made before filters existed (or without them) keep their fingerprint and resume.
_FILTER_FIELDS = (
    "min_side",
    "max_aspect_ratio",
    "max_text_area",
    "watermark_model",
    "watermark_threshold",
    "nsfw_threshold",
    "dedup",
    "dedup_distance",
)
DEDUP_MODES = ("exact", "near")
# Added after runs were recorded: part of the fingerprint only when changed from the default,
# so upgrading capfleet does not refuse to resume a run started with the older version.
_FINGERPRINT_FIELDS_IF_SET = (
    "max_bytes",
    "format",
    "txt",
    "images",
    "image_column",
    "caption_column",
    *_FILTER_FIELDS,
    "engine",
    "hygiene",
    "strip_openers",
    "min_words",
    "max_words",
    "resample_attempts",
    "keep_names",
    "embeddings",
    "quantize",
)


@dataclass
class RunConfig:
    inputs: list[str]
    output: str
    captioner: str = "blip"
    scorer: str = "auto"  # the captioner's own scorer where it has one, else clip (see default_scorer)
    candidates: int = 5
    decoding: str = "sample"
    top_p: float = 0.9
    max_new_tokens: int = 30
    prompt: str | None = None
    seed: int = 0
    batch_size: int | None = None  # None: chosen by measurement (capfleet.tuning)
    workers: int = 4
    shard_size: int = 1000
    limit: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb threshold
    max_bytes: int = 100_000_000  # larger files become error records; enforced while reading
    overwrite: bool = False
    shard_retries: int = 2  # a shard that raises (disk, network, OOM) is redone this many times
    http_timeout: float = 30.0  # seconds one http(s) image download may take, connection and body
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise
    format: str = "imagefolder"  # output format, see capfleet.formats
    txt: str = "none"  # also write KEY.txt beside each image: the best caption, or all candidates
    images: bool = True  # parquet output: False writes only key, source and captions (a sidecar)
    image_column: str | None = None  # table inputs; None: autodetect
    caption_column: str | None = None
    retry_errors: bool = False  # redo only the images recorded as errors in finished shards
    # Filters (docs/filters.md); None = off. Without max_aspect_ratio, beyond 20:1 stays a decode error.
    min_side: int | None = None
    max_aspect_ratio: float | None = None
    max_text_area: float | None = None
    watermark_model: str | None = None
    watermark_threshold: float | None = None
    nsfw_threshold: float | None = None
    dedup: str | None = None
    dedup_distance: int | None = None
    # Engines (README "Engines"): where the captions come from.
    engine: str = "transformers"
    api_base: str | None = None  # openai: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable holding the key (never the key itself)
    concurrency: int = 8  # openai: requests in flight
    request_timeout: float = 60.0  # openai: seconds per request
    retries: int = 4  # openai: retries of a request after 429, 5xx, timeouts and dropped connections
    image_size: int = 0  # openai: shorter side images are sent at; 0 = the model's own when known
    tensor_parallel_size: int = 1  # vllm: GPUs one engine spans
    gpus: int = 1  # data parallel: one engine per GPU, pending shards divided among them (local runner)
    # Caption hygiene (README "Caption hygiene").
    hygiene: bool = True
    strip_openers: bool = False
    min_words: int = 1
    max_words: int = 0  # 0: no upper limit
    resample_attempts: int = 2
    threads: int | None = None  # torch threads; None: the CPUs this process may use (capfleet.cpus)
    keep_names: bool = False  # output files named <stem>_<key>.ext instead of <key>.ext
    quantize: str | None = None  # "int8": dynamic int8 linear layers (CPU, float32), opt-in
    embeddings: bool = False  # keep the scorer's image and chosen-caption embeddings beside each shard
    # Where shards run (runners/lifecycle.py): local (this process; --gpus N processes) or ray.
    runner: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else a running local cluster, else start one
    ray_workers: int | None = None  # actors; None: one per CPU (or GPU) the cluster offers them
    ray_cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # Ray: fractional GPUs let several actors share one
    # Task arrays (runners/task_array.py): this process is task `task_index` of `task_count`.
    task_index: int | None = None
    task_count: int | None = None

    def validate(self) -> RunConfig:
        if not self.inputs:
            raise ConfigError("give at least one INPUT (a folder, an image, a file list or a URL)")
        local_output = local_path(self.output)
        if local_output is not None and os.path.isfile(local_output):
            raise ConfigError(f"output {self.output} is a file: -o needs a folder (new or empty) or a bucket URL")
        if self.scorer == "auto":
            from capfleet.models.registry import default_scorer

            self.scorer = default_scorer(self.captioner)
        checks = [
            (self.candidates >= 1, "--candidates must be >= 1"),
            (self.decoding in DECODINGS, f"--decoding must be one of {', '.join(DECODINGS)}"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.max_new_tokens >= 1, "--max-new-tokens must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, "--batch-size must be auto or >= 1"),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.shard_size >= 1, "--shard-size must be >= 1"),
            (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}"),
            (self.max_pixels >= 1, "--max-pixels must be >= 1"),
            (self.max_bytes >= 1, "--max-bytes must be >= 1"),
            (self.shard_retries >= 0, "--shard-retries must be >= 0"),
            (self.format in FORMATS, f"--format must be one of {', '.join(FORMATS)}"),
            (self.txt in TXT_MODES, f"--txt must be one of {', '.join(TXT_MODES)}"),
            (self.txt == "none" or self.format == "imagefolder", "--txt needs --format imagefolder"),
            (self.images or self.format == "parquet", "--no-images needs --format parquet"),
            (self.http_timeout > 0, "--http-timeout must be > 0"),
            *self._filter_checks(),
            (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}"),
            (self.engine != "openai" or bool(self.api_base), "--engine openai needs --api-base URL"),
            (not self.api_base or self.api_base.startswith(("http://", "https://")), "--api-base must be http(s)://"),
            (
                "@" not in (self.api_base or "").split("://", 1)[-1].split("/", 1)[0],
                "--api-base must not hold credentials: put the key in the variable --api-key-env names",
            ),
            (self.concurrency >= 1, "--concurrency must be >= 1"),
            (self.request_timeout > 0, "--request-timeout must be > 0"),
            (self.retries >= 0, "--retries must be >= 0"),
            (self.image_size >= 0, "--image-size must be >= 0"),
            (self.tensor_parallel_size >= 1, "--tensor-parallel-size must be >= 1"),
            (self.gpus >= 1, "--gpus must be >= 1"),
            (self.min_words >= 0, "--min-words must be >= 0"),
            (self.max_words == 0 or self.max_words >= self.min_words, "--max-words must be 0 or >= --min-words"),
            (self.resample_attempts >= 0, "--resample-attempts must be >= 0"),
            (self.runner in RUNNERS, f"--runner must be one of {', '.join(RUNNERS)}"),
            (self.gpus == 1 or self.runner == "local", "--gpus is for the local runner (Ray: --gpus-per-worker)"),
            (self.ray_workers is None or self.ray_workers >= 1, "--ray-workers must be >= 1"),
            (self.ray_cpus_per_worker > 0, "--ray-cpus-per-worker must be > 0"),
            (self.gpus_per_worker >= 0, "--gpus-per-worker must be >= 0"),
            (self.threads is None or self.threads >= 1, "--threads must be >= 1"),
            (not self.embeddings or self.scorer != "none", "--embeddings needs a scorer (not --scorer none)"),
            (self.quantize in (None, "int8"), "--quantize must be int8"),
            (self.quantize is None or self.engine == "transformers", "--quantize needs --engine transformers"),
            (not self.embeddings or self.format == "imagefolder", "--embeddings needs --format imagefolder"),
            *self._task_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.prompt:
            from capfleet.models.prompts import prompt_fields  # imports this module

            prompt_fields(self.prompt)  # a template that cannot be parsed stops the run here
        return self

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
            (self.dedup is None, "--dedup needs every shard hashed before any is captioned: run it without task flags"),
        ]

    def _filter_checks(self) -> list[tuple[bool, str]]:
        def unset_or(name: str, ok) -> bool:
            value = getattr(self, name)
            return value is None or ok(value)

        return [
            (unset_or("min_side", lambda v: v >= 1), "--min-side must be >= 1"),
            (unset_or("max_aspect_ratio", lambda v: v >= 1), "--max-aspect-ratio must be >= 1"),
            (unset_or("max_text_area", lambda v: 0 <= v <= 1), "--max-text-area must be in [0, 1]"),
            (unset_or("watermark_threshold", lambda v: 0 <= v <= 1), "--watermark-threshold must be in [0, 1]"),
            (
                self.watermark_threshold is None or self.watermark_model is not None,
                "--watermark-threshold needs --watermark-model",
            ),
            (unset_or("nsfw_threshold", lambda v: 0 <= v <= 1), "--nsfw-threshold must be in [0, 1]"),
            (unset_or("dedup", lambda v: v in DEDUP_MODES), f"--dedup must be one of {', '.join(DEDUP_MODES)}"),
            (unset_or("dedup_distance", lambda v: 0 <= v <= 16), "--dedup-distance must be in [0, 16]"),
            (self.dedup_distance is None or self.dedup == "near", "--dedup-distance needs --dedup near"),
        ]

    def hygiene_options(self) -> HygieneOptions:
        return HygieneOptions(self.hygiene, self.strip_openers, self.min_words, self.max_words, self.resample_attempts)

    def fingerprint_fields(self) -> dict:
        values, defaults = asdict(self), RunConfig(inputs=[], output="")
        fields = {name: values[name] for name in _FINGERPRINT_FIELDS}
        fields.update(
            {name: values[name] for name in _FINGERPRINT_FIELDS_IF_SET if values[name] != getattr(defaults, name)}
        )
        return fields

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
