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
    "embeddings",
)


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
    batch_size: int = 8
    workers: int = 4
    shard_size: int = 1000
    limit: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb threshold
    overwrite: bool = False
    shard_retries: int = 2  # a shard that raises (disk, network, OOM) is redone this many times
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise
    embeddings: bool = False  # keep the scorer's image and chosen-caption embeddings beside each shard

    def validate(self) -> RunConfig:
        if not self.inputs:
            raise ConfigError("give at least one INPUT (a folder, an image, a file list or a URL)")
        checks = [
            (self.candidates >= 1, "--candidates must be >= 1"),
            (self.decoding in DECODINGS, f"--decoding must be one of {', '.join(DECODINGS)}"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.max_new_tokens >= 1, "--max-new-tokens must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.shard_size >= 1, "--shard-size must be >= 1"),
            (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}"),
            (self.max_pixels >= 1, "--max-pixels must be >= 1"),
            (self.shard_retries >= 0, "--shard-retries must be >= 0"),
            (not self.embeddings or self.scorer != "none", "--embeddings needs a scorer (not --scorer none)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def fingerprint_fields(self) -> dict:
        values = asdict(self)
        return {name: values[name] for name in _FINGERPRINT_FIELDS}

    def fingerprint(self) -> str:
        blob = json.dumps(self.fingerprint_fields(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
