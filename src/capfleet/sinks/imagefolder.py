"""HF `imagefolder` output: OUT/SSSSS/{key}.ext + metadata.jsonl, one folder per shard.

`datasets.load_dataset("imagefolder", data_dir=OUT)` reads every finished shard directly:
it takes exactly one file named `metadata.jsonl` per folder, so that name is only ever used
inside shard folders (see DESIGN.md, output contract). With `--txt`, `{key}.txt` beside each
image holds its caption, the layout kohya sd-scripts and OneTrainer read; the imagefolder
loader ignores those files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from capfleet.metadata_jsonl import METADATA_NAME
from capfleet.sample import Sample
from capfleet.sinks.base import ShardWriter
from capfleet.sinks.location import Location

EMBEDDINGS_NAME = "embeddings.npz"  # keys, image, text: numpy arrays; dataset loaders skip the file
_MAX_STEM = 200  # with "_" + key + extension, well inside the usual 255-byte file-name limit


def output_stem(key: str, source: str, keep_names: bool) -> str:
    """`key`; with --keep-names `<original stem>_<key>`: readable, and the key keeps it unique
    (two `photo.jpg` from different folders) and the same on every rerun and in every shard."""
    if not keep_names:
        return key
    stem = os.path.splitext(os.path.basename(source.split("?", 1)[0].split("#", 1)[0].rstrip("/")))[0]
    stem = stem.strip()[:_MAX_STEM]
    return f"{stem}_{key}" if stem else key


def caption_lines(record: dict[str, Any], mode: str) -> str:
    """`best`: the chosen caption; `all`: every candidate, best score first, one per line."""
    if mode == "all" and record["candidates"]:
        order = sorted(range(len(record["candidates"])), key=lambda i: -record["scores"][i] if record["scores"] else i)
        texts = [record["candidates"][i] for i in order]
    else:
        texts = [record["text"]]
    return "".join(" ".join(text.split()) + "\n" for text in texts)


class ImageFolderShardWriter(ShardWriter):
    """Collects one shard's images and rows in a staging folder; `commit` publishes it."""

    def __init__(self, location: Location, name: str, txt: str = "none", keep_names: bool = False):
        super().__init__(location, name)
        self.txt = txt
        self.keep_names = keep_names
        self.rows: list[dict[str, Any]] = []
        self.embeddings: list[tuple[str, Any, Any]] = []

    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        """Store the original image bytes verbatim (lossless, no re-encode) and its row."""
        stem = output_stem(record["key"], sample.item.source, self.keep_names)
        file_name = f"{stem}{sample.extension}"
        (self.staged / file_name).write_bytes(sample.data or b"")
        if self.txt != "none":
            (self.staged / f"{stem}.txt").write_text(caption_lines(record, self.txt), encoding="utf-8")
        self.rows.append({"file_name": file_name, **record})

    def add_embeddings(self, key: str, image: Any, text: Any) -> None:
        """The scorer's embeddings of a written row's image and of its chosen caption."""
        self.embeddings.append((key, image, text))

    def _include(self, published: Path) -> int:
        rows = [
            json.loads(line) for line in (published / METADATA_NAME).read_text(encoding="utf-8").splitlines() if line
        ]
        for path in published.iterdir():
            if path.name == EMBEDDINGS_NAME:  # --retry-errors: keep the first pass's embeddings
                with np.load(path) as kept:
                    self.embeddings.extend(zip(kept["keys"].tolist(), kept["image"], kept["text"], strict=True))
            elif path.name != METADATA_NAME:
                shutil.copyfile(path, self.staged / path.name)
        self.rows.extend(rows)
        return len(rows)

    def _finish(self, staged: Path) -> None:
        with open(staged / METADATA_NAME, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)
        if self.embeddings:
            keys, images, texts = zip(*self.embeddings, strict=True)
            np.savez(staged / EMBEDDINGS_NAME, keys=np.array(keys), image=np.stack(images), text=np.stack(texts))


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """A published shard's rows, `file_name` relative to the output root."""
    with open(shard / METADATA_NAME, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                row["file_name"] = f"{shard.name}/{row['file_name']}"
                yield row
