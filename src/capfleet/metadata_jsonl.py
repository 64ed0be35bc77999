"""The imagefolder `metadata.jsonl` row format, read in one place.

capfleet's output shards, `capfleet synth` scenes, HF imagefolder datasets and the folders that
`capfleet train`, `eval` and the listing of caption files read all share it. A leaf module (json
and paths only), so sources, formats, train/ and evaluate/ import it without import cycles.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METADATA_NAME = "metadata.jsonl"


def parse_metadata_line(line: str) -> dict[str, Any] | None:
    """One `metadata.jsonl` row: a JSON object naming its image, else None (every reader skips it)."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):  # malformed, or nested deeper than the parser allows
        return None
    return row if isinstance(row, dict) and isinstance(row.get("file_name"), str) and row["file_name"] else None


def metadata_files(root: Path) -> list[Path]:
    """A dataset's metadata files: `root/metadata.jsonl` (a one-folder dataset), then each shard's."""
    files = sorted(root.glob(f"*/{METADATA_NAME}"))
    if (root / METADATA_NAME).is_file():
        files.insert(0, root / METADATA_NAME)
    return files


def metadata_rows(root: Path, skipped: Counter) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(folder, row) for every usable row of every metadata file under `root`; `skipped["bad_row"]`
    counts the others (capfleet's output, `capfleet synth` scenes, any HF imagefolder dataset)."""
    for meta in metadata_files(root):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            row = parse_metadata_line(line)
            if row is None:
                skipped["bad_row"] += 1
            else:
                yield meta.parent, row
