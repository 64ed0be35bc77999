"""Captioned imagefolder datasets (``DIR/*/metadata.jsonl``, as written by ``capfleet caption`` and
``capfleet synth``) for training the captioner.

Real datasets have holes (a missing or truncated image, an empty caption, a broken JSON line). Those rows
are skipped and counted, never raised: a long training run must not die on sample 3 million.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from capfleet.metadata_jsonl import METADATA_NAME, metadata_files, metadata_rows
from capfleet.modeling.losses import IGNORE_LABEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionRecord:
    """One (image, caption) pair; ``key`` is the image path relative to the dataset root; ``scene`` is the
    row's scene-graph JSON (synth datasets), the ground truth of the auxiliary object loss."""

    key: str
    image_path: Path
    text: str
    captions: tuple[str, ...] = ()
    scene: str = ""


@dataclass
class ScanResult:
    records: list[CaptionRecord] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def _image_ok(path: Path) -> bool:
    """Cheap validity check (header + structure, no full decode)."""
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # PIL raises many types for bad bytes
        return False


def scan_imagefolder(
    roots: str | Path | Iterable[str | Path], caption_mode: str = "text", verify_images: bool = True
) -> ScanResult:
    """Read every ``metadata.jsonl`` under ``roots``. ``caption_mode="text"`` gives one sample per image (its
    ``text``); ``"all"`` one sample per ground-truth phrasing in ``captions`` (falling back to ``text``)."""
    if caption_mode not in ("text", "all"):
        raise ValueError(f"caption_mode must be 'text' or 'all', got {caption_mode!r}")
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    result = ScanResult()
    for root in map(Path, roots):
        if not metadata_files(root):
            log.warning("no %s found under %s", METADATA_NAME, root)
        for folder, row in metadata_rows(root, result.skipped):
            _add_row(result, root, folder, row, caption_mode, verify_images)
    return result


def _add_row(result: ScanResult, root: Path, folder: Path, row: dict, caption_mode: str, verify: bool) -> None:
    file_name = row["file_name"]
    text = row.get("text") if isinstance(row.get("text"), str) else ""
    alts = [c.strip() for c in row.get("captions") or [] if isinstance(c, str) and c.strip()]
    texts = (alts or [text.strip()]) if caption_mode == "all" else [text.strip()]
    texts = [t for t in texts if t]
    if not texts:
        result.skipped["empty_caption"] += 1
        return
    path = folder / file_name
    if not path.is_file():
        result.skipped["missing_image"] += 1
        return
    if verify and not _image_ok(path):
        result.skipped["unreadable_image"] += 1
        return
    key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    scene = row.get("scene") if isinstance(row.get("scene"), str) else ""
    result.records.extend(CaptionRecord(key, path, t, tuple(alts), scene) for t in texts)


def split_by_key(
    records: Sequence[CaptionRecord], held_out_fraction: float = 0.1, seed: int = 0
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """Deterministic train / held-out split by a hash of each record's key: stable when the dataset grows or
    is reordered, and every phrasing of one image lands on the same side."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError("held_out_fraction must be in [0, 1)")
    train, held = [], []
    for rec in records:
        digest = hashlib.sha1(f"{seed}:{rec.key}".encode()).digest()
        (held if int.from_bytes(digest[:8], "big") / 2**64 < held_out_fraction else train).append(rec)
    return train, held


class CaptionDataset(Dataset):
    """Yields ``(pixel_values [C,H,W] float tensor, input_ids [L] long tensor)``, plus a third item
    ``targets(record)`` when ``targets`` is given (e.g. per-token object classes, see train.objects).

    ``transform`` maps a PIL RGB image to the pixel tensor (e.g. an HF image processor wrapped by
    :func:`image_transform`); ``tokenize`` maps a caption to token ids with BOS/EOS. Images that fail to
    decode at load time are counted in ``skipped`` (per process) and replaced by the next good sample so
    batch shapes, and therefore multi-process training, stay in lock-step.
    """

    def __init__(
        self,
        records: Sequence[CaptionRecord],
        transform: Callable[[Image.Image], torch.Tensor],
        tokenize: Callable[[str], list[int]],
        skipped: Counter | None = None,
        targets: Callable[[CaptionRecord], torch.Tensor] | None = None,
    ) -> None:
        if not records:
            raise ValueError("no usable samples (every row was skipped or the dataset is empty)")
        self.records = list(records)
        self.transform, self.tokenize, self.targets = transform, tokenize, targets
        self.skipped: Counter = Counter(skipped or {})

    @classmethod
    def from_dir(
        cls,
        roots: str | Path | Iterable[str | Path],
        transform: Callable[[Image.Image], torch.Tensor],
        tokenize: Callable[[str], list[int]],
        caption_mode: str = "text",
    ) -> CaptionDataset:
        scan = scan_imagefolder(roots, caption_mode)
        return cls(scan.records, transform, tokenize, scan.skipped)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, rec: CaptionRecord) -> tuple[torch.Tensor, ...]:
        with Image.open(rec.image_path) as im:
            pixels = self.transform(im.convert("RGB"))
        ids = torch.tensor(self.tokenize(rec.text), dtype=torch.long)
        return (pixels, ids) if self.targets is None else (pixels, ids, self.targets(rec))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        for step in range(len(self.records)):
            rec = self.records[(index + step) % len(self.records)]
            try:
                return self._load(rec)
            except Exception as exc:  # decode errors are data problems, not bugs: count and move on
                self.skipped["unreadable_image"] += 1
                log.warning("skipping %s: %s", rec.image_path, exc)
        raise RuntimeError("no sample in the dataset could be loaded")


def image_transform(image_processor: Any) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised [C,H,W] tensor through an HF image processor (same path as inference)."""

    def transform(image: Image.Image) -> torch.Tensor:
        return image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    return transform


def text_tokenizer(tokenizer: Any, max_length: int) -> Callable[[str], list[int]]:
    """Caption -> ``[BOS] ... [EOS]`` ids, truncated to ``max_length`` with EOS kept last."""

    def tokenize(text: str) -> list[int]:
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        if ids and ids[-1] != tokenizer.eos_token_id:
            ids[-1] = tokenizer.eos_token_id
        return ids

    return tokenize


def collate(batch: Sequence[tuple[torch.Tensor, ...]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack images, right-pad ids; ``labels`` are the ids with padding as IGNORE_LABEL; a dataset's third item
    (per-image targets) is stacked as ``object_targets``."""
    pixels = torch.stack([b[0] for b in batch])
    length = max(len(b[1]) for b in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for i, tok in enumerate(b[1] for b in batch):
        ids[i, : len(tok)], mask[i, : len(tok)] = tok, 1
    labels = ids.masked_fill(mask == 0, IGNORE_LABEL)
    out = {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "labels": labels}
    if len(batch[0]) > 2:
        out["object_targets"] = torch.stack([b[2] for b in batch])
    return out
