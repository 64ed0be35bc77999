"""Small datasets in capfleet's two output layouts (synth references, caption predictions), written by hand."""

from __future__ import annotations

import json
from pathlib import Path

# Six images with distinct two-phrasing references, so CIDEr's IDF has something to weigh.
REFERENCES = {
    "000000000": ["a red circle on the left", "a red circle left of center"],
    "000000001": ["two blue squares side by side", "a pair of blue squares"],
    "000000002": ["a green triangle above a yellow star", "a yellow star below a green triangle"],
    "000000003": ["a small purple circle in the corner", "a tiny purple circle at the corner"],
    "000000004": ["an orange square next to a blue circle", "a blue circle beside an orange square"],
    "000000005": ["three white stars on a black background", "white stars on black"],
}


def write_shards(root: Path, rows: list[dict], shard_size: int = 4) -> Path:
    """``root/NNNNN/metadata.jsonl``, ``shard_size`` rows per folder, as capfleet writes them."""
    for start in range(0, len(rows), shard_size):
        folder = root / f"{start // shard_size:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(r) for r in rows[start : start + shard_size]]
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def synth_rows(references: dict[str, list[str]] = REFERENCES) -> list[dict]:
    return [
        {"file_name": f"{k}.png", "text": c[0], "captions": c, "key": k, "source": "synth:seed=0", "scene": "{}"}
        for k, c in references.items()
    ]


def caption_row(key: str, text: str, source: str = "", original_text: str = "", candidates=None) -> dict:
    candidates = [text] if candidates is None else candidates
    return {
        "file_name": f"{key}.png",
        "text": text,
        "candidates": candidates,
        "scores": [0.3] * len(candidates),
        "original_text": original_text,
        "key": key,
        "source": source or f"/data/in/{key}.png",
        "captioner": "tiny",
        "scorer": "tiny-clip",
    }
