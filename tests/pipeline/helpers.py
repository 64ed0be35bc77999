"""Reading a capfleet output back the way users do."""

from __future__ import annotations

import json
from pathlib import Path


def read_rows(out: Path) -> list[dict]:
    rows = []
    for metadata in sorted(out.glob("[0-9]*/metadata.jsonl")):
        rows += [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
    return rows


def read_errors(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "_capfleet" / "errors").glob("errors-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def load_with_datasets(out: Path):
    import datasets

    return datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
