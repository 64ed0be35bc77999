"""RunConfig: every knob of a caption run, its defaults, validation and the resume fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

DECODINGS = ("sample", "beam")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")

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
_FINGERPRINT_FIELDS_IF_SET = ("max_bytes", "format", "txt", "images", "image_column", "caption_column", *_FILTER_FIELDS)


class ConfigError(ValueError):
    """A setting the user must change; the message says what."""


@dataclass
class RunConfig:
    inputs: list[str]
    output: str
    captioner: str = "blip"
    scorer: str = "clip"
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
    format: str = "imagefolder"  # output format, see capfleet.sinks
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

    def validate(self) -> RunConfig:
        if not self.inputs:
            raise ConfigError("give at least one INPUT (a folder, an image, a file list or a URL)")
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
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

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
