"""Join the per-shard metadata into one file, for tools that want a single table.

The merged file is deliberately NOT called metadata.jsonl: beside the per-shard files the
imagefolder loader would then return every row twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from capfleet.runners.state import RUN_FILE
from capfleet.sinks.imagefolder import METADATA_NAME
from capfleet.sinks.location import Location

MERGED_NAME = "captions.jsonl"


def merge_shards(root: str | Path, output: str | Path | None = None) -> tuple[Path, int]:
    """Write every shard's rows, in shard order, with `file_name` relative to `root`."""
    root = Path(root)
    if root.is_file():
        raise ValueError(f"{root} is a file: give the folder `capfleet caption -o` wrote")
    if not root.is_dir():
        raise FileNotFoundError(f"no such output folder: {root}")
    if not (root / RUN_FILE).is_file():
        raise ValueError(f"{root} is not a capfleet caption output (no {RUN_FILE}): nothing merged")
    rows = []
    for metadata in sorted(root.glob(f"[0-9]*/{METADATA_NAME}")):
        shard = metadata.parent.name
        with open(metadata, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    row["file_name"] = f"{shard}/{row['file_name']}"
                    rows.append(row)
    target = Path(output) if output is not None else root / MERGED_NAME
    if target.name == METADATA_NAME:
        raise ValueError(f"refusing to name the merged file {METADATA_NAME}: the dataset would load every row twice")
    Location(target.parent).write_lines(target.name, rows)
    return target, len(rows)
