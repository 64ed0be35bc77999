"""HF `imagefolder` output: OUT/SSSSS/{key}.ext + metadata.jsonl, one folder per shard.

`datasets.load_dataset("imagefolder", data_dir=OUT)` reads every finished shard directly:
it takes exactly one file named `metadata.jsonl` per folder, so that name is only ever used
inside shard folders (see DESIGN.md, output contract). With `--txt`, `{key}.txt` beside each
image holds its caption, the layout kohya sd-scripts and OneTrainer read; the imagefolder
loader ignores those files.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from capfleet.formats.base import ShardWriter, unsupported
from capfleet.io.location import Location, jsonl_text
from capfleet.metadata_jsonl import METADATA_NAME, metadata_rows
from capfleet.sample import Sample

NAME = "imagefolder"
EXTRA = None
REQUIRES: tuple[str, ...] = ()
Options = None  # its settings (--txt, --keep-names) are RunConfig fields
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

    def _add(self, record: dict[str, Any], sample: Sample) -> None:
        """Store the original image bytes verbatim (lossless, no re-encode) and its row."""
        stem = output_stem(record["key"], sample.item.source, self.keep_names)
        file_name = f"{stem}{sample.extension}"
        (self.staged / file_name).write_bytes(sample.data or b"")
        if self.txt != "none":
            (self.staged / f"{stem}.txt").write_text(caption_lines(record, self.txt), encoding="utf-8")
        self.rows.append({"file_name": file_name, **record})

    def _include(self, published: Path) -> int:
        rows = [row for _, row in metadata_rows(published, Counter())]
        for path in published.iterdir():
            if path.name == EMBEDDINGS_NAME:  # --retry-errors: keep the first pass's embeddings
                with np.load(path) as kept:
                    self.embeddings.extend(zip(kept["keys"].tolist(), kept["image"], kept["text"], strict=True))
            elif path.name != METADATA_NAME:
                shutil.copyfile(path, self.staged / path.name)
        self.rows.extend(rows)
        return len(rows)

    def _finish(self, staged: Path) -> None:
        (staged / METADATA_NAME).write_text(jsonl_text(self.rows), encoding="utf-8")
        if self.embeddings:
            keys, images, texts = zip(*self.embeddings, strict=True)
            np.savez(staged / EMBEDDINGS_NAME, keys=np.array(keys), image=np.stack(images), text=np.stack(texts))


def check(config: Any) -> list[str]:
    return unsupported(config, honours=("--txt", "--embeddings"))


def open(config: Any, location: Location, shard_name: str) -> ImageFolderShardWriter:  # noqa: A001 - the contract
    return ImageFolderShardWriter(location, shard_name, config.txt, config.keep_names)


def read_rows(shard: Path) -> Iterator[dict[str, Any]]:
    """A published shard's rows, `file_name` relative to the output root."""
    for _, row in metadata_rows(shard, Counter()):
        yield {**row, "file_name": f"{shard.name}/{row['file_name']}"}
