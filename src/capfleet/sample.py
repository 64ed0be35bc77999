"""The unit of data flowing through a shard: one input image and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Item:
    """One planned input: where the image lives and the caption it came with.

    `key` is derived from the item's global position in the sorted input listing, so it is
    stable across reruns, runners and shard sizes.
    """

    key: str
    source: str
    original_text: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "original_text": self.original_text}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Item:
        return cls(row["key"], row["source"], row.get("original_text"))


@dataclass
class Sample:
    """An item after reading/decoding; `error` set means it will become an error record."""

    item: Item
    data: bytes | None = None
    image: Any = None  # PIL.Image.Image once decoded
    extension: str = ".jpg"
    error: str | None = None
    embeddings: Any = None  # (image, chosen caption) scorer embeddings when the run keeps them

    @property
    def key(self) -> str:
        return self.item.key

    def error_record(self) -> dict[str, Any]:
        return {"key": self.item.key, "source": self.item.source, "error": self.error}
