"""HF `imagefolder` output: OUT/SSSSS/{key}.ext + metadata.jsonl, one folder per shard.

`datasets.load_dataset("imagefolder", data_dir=OUT)` reads every finished shard directly:
it takes exactly one file named `metadata.jsonl` per folder, so that name is only ever used
inside shard folders (see DESIGN.md, output contract).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from capfleet.sinks.location import Location

METADATA_NAME = "metadata.jsonl"
EMBEDDINGS_NAME = "embeddings.npz"  # keys, image, text: numpy arrays; dataset loaders skip the file


class ImageFolderShardWriter:
    """Collects one shard's images and rows in a staging folder; `commit` publishes it."""

    def __init__(self, location: Location, name: str):
        self.location = location
        self.name = name
        self.rows: list[dict[str, Any]] = []
        self.embeddings: list[tuple[str, Any, Any]] = []
        self._staged: Path | None = None

    def write(self, record: dict[str, Any], image_bytes: bytes, extension: str) -> None:
        """Store the original image bytes verbatim (lossless, no re-encode) and its row."""
        if self._staged is None:
            self._staged = self.location.staging_dir(self.name)
        file_name = f"{record['key']}{extension}"
        (self._staged / file_name).write_bytes(image_bytes)
        self.rows.append({"file_name": file_name, **record})

    def add_embeddings(self, key: str, image: Any, text: Any) -> None:
        """The scorer's embeddings of a written row's image and of its chosen caption."""
        self.embeddings.append((key, image, text))

    def commit(self) -> int:
        """Publish the shard folder (none when every image failed); returns rows written."""
        if self._staged is None:
            self.location.remove(self.name)  # a stale copy from an earlier, different attempt
            return 0
        with open(self._staged / METADATA_NAME, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)
        if self.embeddings:
            keys, images, texts = zip(*self.embeddings, strict=True)
            np.savez(self._staged / EMBEDDINGS_NAME, keys=np.array(keys), image=np.stack(images), text=np.stack(texts))
        self.location.publish_dir(self._staged, self.name)
        self._staged = None
        return len(self.rows)

    def abort(self) -> None:
        if self._staged is not None:
            shutil.rmtree(self._staged, ignore_errors=True)
            self._staged = None


class ImageFolderSink:
    """The default output: a self-contained dataset folder (images are copied in)."""

    def __init__(self, location: Location):
        self.location = location

    def open(self, shard_name: str) -> ImageFolderShardWriter:
        return ImageFolderShardWriter(self.location, shard_name)
