"""The teacher's pass over a dataset, for distillation: its chosen caption for every image and its
image and text embeddings, computed once and kept in ``STUDENT_DIR/teacher`` so a rerun resumes.

The captions go through :func:`capfleet.load` (the production API: candidates sampled and ranked
exactly as ``capfleet caption`` does), so any teacher capfleet can caption with works here.
``teacher/metadata.jsonl`` is an ordinary captioned imagefolder (absolute image paths) that the
trainer reads like any dataset; ``teacher/embeddings.npz`` holds the embedding targets.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from capfleet.decoding import CANDIDATES, DEFAULT
from capfleet.metadata_jsonl import METADATA_NAME

from .data import CaptionRecord, scan_imagefolder

TEACHER_DIR = "teacher"
EMBEDDINGS_NAME = "embeddings.npz"
DONE_NAME = "teacher.json"  # written last: its presence means the pass is complete


@dataclass(frozen=True)
class TeacherSettings:
    """What the teacher pass depends on; a rerun with other settings must not reuse its output."""

    captioner: str
    scorer: str  # a scorer name, or "none" (no ranking and no embedding targets)
    data: tuple[str, ...]
    candidates: int = CANDIDATES
    decoding: str = DEFAULT.decoding
    max_new_tokens: int = DEFAULT.max_new_tokens
    data_captions: bool = True  # the dataset's own captions are targets beside the teacher's
    seed: int = 0
    batch_size: int = 32  # images per teacher call (each call samples from its own seed)

    @property
    def caption_mode(self) -> str:
        """How the trainer reads ``teacher/metadata.jsonl``: every caption, or the teacher's alone."""
        return "all" if self.data_captions else "text"


@dataclass
class TeacherTargets:
    """The trainer's view of a finished pass: row of each image / text in the embedding matrices."""

    folder: Path
    image_rows: dict[str, int]
    text_rows: dict[str, int]
    image_embeddings: np.ndarray | None
    text_embeddings: np.ndarray | None

    @property
    def embedding_dim(self) -> int | None:
        return None if self.image_embeddings is None else int(self.image_embeddings.shape[1])


def _unique_images(records: list[CaptionRecord]) -> dict[Path, list[str]]:
    """{image: its dataset captions, in order, without repeats}."""
    images: dict[Path, list[str]] = {}
    for rec in records:
        captions = images.setdefault(rec.image_path, [])
        for text in (rec.text, *rec.captions):
            if text and text not in captions:
                captions.append(text)
    return images


def _bar(total: int, desc: str, progress: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress)


def _caption_rows(model: Any, images: dict[Path, list[str]], settings: TeacherSettings, progress: bool):
    """(metadata rows, image embeddings or None): the teacher's caption and embedding of every image."""
    paths, rows, embeddings = list(images), [], []
    with _bar(len(paths), "teacher captions", progress, "img") as bar:
        for start in range(0, len(paths), settings.batch_size):
            chunk = paths[start : start + settings.batch_size]
            opened = model.open_images(chunk)
            results = model.caption(
                opened,
                candidates=settings.candidates,
                decoding=settings.decoding,
                max_new_tokens=settings.max_new_tokens,
                seed=settings.seed + start,
            )
            if model.scorer is not None:
                embeddings.append(model.embed_images(opened))
            for path, result in zip(chunk, results, strict=True):
                extra = images[path] if settings.data_captions else []
                captions = [c for c in dict.fromkeys([result.text.strip(), *extra]) if c]
                rows.append(
                    {
                        "file_name": str(path.resolve()),
                        "text": result.text.strip(),
                        "captions": captions,
                        "teacher_candidates": result.candidates,
                    }
                )
            bar.update(len(chunk))
    return rows, (np.concatenate(embeddings) if embeddings else None)


def _embed_texts(model: Any, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    parts = []
    with _bar(len(texts), "teacher text embeddings", progress, "text") as bar:
        for start in range(0, len(texts), batch_size * 8):
            chunk = texts[start : start + batch_size * 8]
            parts.append(model.embed_texts(chunk))
            bar.update(len(chunk))
    return np.concatenate(parts)


def run_teacher(
    out_dir: str | Path, settings: TeacherSettings, device: str = "auto", progress: bool = True
) -> TeacherTargets:
    """Caption and embed the dataset with the teacher into ``out_dir/teacher``, or reuse an earlier
    complete pass made with the same settings (a different one is a ValueError)."""
    folder = Path(out_dir) / TEACHER_DIR
    done = folder / DONE_NAME
    if done.is_file():
        saved, current = json.loads(done.read_text())["settings"], json.loads(json.dumps(asdict(settings)))
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            raise ValueError(
                f"{out_dir} was distilled with other teacher settings ({', '.join(changed)}): "
                f"use a new -o folder, or delete {folder} to redo the teacher pass"
            )
        return load_targets(folder)
    scan = scan_imagefolder(list(settings.data), "all")
    if not scan.records:
        raise ValueError(f"no usable images in {', '.join(settings.data)} (need */metadata.jsonl rows with images)")
    import capfleet

    # batches as big as the pass's: with a capfleet teacher, embed_images then reuses the encoding caption() made
    model = capfleet.load(settings.captioner, settings.scorer, device=device, batch_size=settings.batch_size)
    rows, image_embeddings = _caption_rows(model, _unique_images(scan.records), settings, progress)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))
    arrays: dict[str, np.ndarray] = {}
    if image_embeddings is not None:
        # the texts as the trainer will read them, so every training sample finds its target
        records = scan_imagefolder(folder, settings.caption_mode, verify_images=False).records
        texts = list(dict.fromkeys(rec.text for rec in records))
        arrays = {
            "images": np.asarray([row["file_name"] for row in rows]),
            "image_embeddings": image_embeddings.astype(np.float32),
            "texts": np.asarray(texts),
            "text_embeddings": _embed_texts(model, texts, settings.batch_size, progress).astype(np.float32),
        }
    np.savez(folder / EMBEDDINGS_NAME, **arrays)
    summary = {"settings": asdict(settings), "images": len(rows), "skipped": dict(scan.skipped)}
    temp = folder / f".{DONE_NAME}.tmp"
    temp.write_text(json.dumps(summary, indent=2))
    os.replace(temp, done)
    return load_targets(folder)


def load_targets(folder: Path) -> TeacherTargets:
    with np.load(folder / EMBEDDINGS_NAME) as saved:
        if "images" not in saved:
            return TeacherTargets(folder, {}, {}, None, None)
        return TeacherTargets(
            folder,
            {str(name): i for i, name in enumerate(saved["images"])},
            {str(text): i for i, text in enumerate(saved["texts"])},
            saved["image_embeddings"],
            saved["text_embeddings"],
        )
