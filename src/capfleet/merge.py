"""Join the per-shard metadata into one file, for tools that want a single table.

The merged file is deliberately NOT called metadata.jsonl: beside the per-shard files the
imagefolder loader would then return every row twice.
"""

from __future__ import annotations

from pathlib import Path

from capfleet.config import RunConfig
from capfleet.formats import read_shard_rows
from capfleet.io.location import Location
from capfleet.metadata_jsonl import METADATA_NAME
from capfleet.runners.state import RUN_FILE, RunState

MERGED_NAME = "captions.jsonl"


def merge_shards(root: str | Path, output: str | Path | None = None) -> tuple[Path, int]:
    """Write every shard's rows, in shard order, whatever the format; `file_name` says where each
    row's image is (`SSSSS/name` in a folder, `SSSSS.tar:key` or `SSSSS.parquet:key` in a file)."""
    root = Path(root)
    if root.is_file():
        raise ValueError(f"{root} is a file: give the folder `capfleet caption -o` wrote")
    if not root.is_dir():
        raise FileNotFoundError(f"no such output folder: {root}")
    if not (root / RUN_FILE).is_file():
        raise ValueError(f"{root} is not a capfleet caption output (no {RUN_FILE}): nothing merged")
    state = RunState(Location(root))
    output_format = state.recorded_settings().get("format", RunConfig.format)
    rows = []
    for shard in sorted(p for p in root.iterdir() if p.name.split(".", 1)[0].isdigit()):
        rows.extend(read_shard_rows(shard, output_format))
    target = Path(output) if output is not None else root / MERGED_NAME
    if target.name == METADATA_NAME:
        raise ValueError(f"refusing to name the merged file {METADATA_NAME}: the dataset would load every row twice")
    Location(target.parent).write_lines(target.name, rows)
    if target.parent.resolve() == root.resolve():
        state.record_merged(target.name)  # so --overwrite may remove it later
    return target, len(rows)
