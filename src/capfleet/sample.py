"""The unit of data flowing through a shard: one input image and what became of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KEY_WIDTH = 9


def position_key(position: int) -> str:
    """The key of the image at `position` in a listing: what its sampling seeds derive from."""
    return f"{position:0{KEY_WIDTH}d}"


@dataclass(frozen=True)
class Item:
    """One planned input: where the image lives and the caption it came with.

    `key` is derived from the item's global position in the sorted input listing, so it is
    stable across reruns, runners and shard sizes.
    """

    key: str
    source: str
    original_text: str | None = None
    fields: dict[str, Any] | None = None  # the image's json (metadata row or sidecar), for --prompt templates

    def to_json(self) -> dict[str, Any]:
        row = {"key": self.key, "source": self.source, "original_text": self.original_text}
        return {**row, "fields": self.fields} if self.fields else row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Item:
        return cls(row["key"], row["source"], row.get("original_text"), row.get("fields"))


@dataclass
class Sample:
    """An item after reading/decoding; `error` set means it will become an error record."""

    item: Item
    data: bytes | None = None
    image: Any = None  # PIL.Image.Image once decoded
    extension: str = ".jpg"
    error: str | None = None
    # A webdataset sample's own `__key__` and its members (extension, bytes) in archive order,
    # so a webdataset output can carry them over byte for byte.
    archive_key: str | None = None
    members: tuple[tuple[str, bytes], ...] = ()
    original_size: tuple[int, int] | None = None  # (width, height) of the stored image
    fields: dict[str, Any] = field(default_factory=dict)  # filter scores, added to the row
    filtered: dict[str, Any] | None = None  # set by a filter that rejects it: its record
    embeddings: Any = None  # (image, chosen caption) scorer embeddings when the run keeps them

    @property
    def key(self) -> str:
        return self.item.key

    def error_record(self) -> dict[str, Any]:
        return {"key": self.item.key, "source": self.item.source, "error": self.error}
