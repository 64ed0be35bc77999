"""Make a finished shard appear all at once: stage in a hidden folder, then rename into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


def staging_dir(root: Path, name: str) -> Path:
    """A hidden, unique folder beside the final one (same filesystem, so rename is atomic).

    Hidden (dot) names are skipped by dataset loaders, and unique names keep two workers that
    redo the same shard (a Beam retry) from writing into each other's files.
    """
    path = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def publish_dir(staged: Path, final: Path) -> None:
    """Replace `final` with `staged`. A reader sees the old complete shard or the new one.

    Two workers redoing the same shard (a Beam retry) produce identical folders, so whichever
    rename loses simply drops its copy.
    """
    trash = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    try:
        final.rename(trash)
    except FileNotFoundError:
        pass
    try:
        staged.rename(final)
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write a small JSON file so that it exists complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(temp, path)


def write_lines_atomic(path: Path, rows: list[dict]) -> None:
    """JSON lines written to a temp name and renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(temp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temp, path)


def remove_stale_staging(root: Path) -> int:
    """Delete staging folders left by a crashed run; returns how many were removed."""
    removed = 0
    for path in root.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    for path in root.glob(".old-*"):
        shutil.rmtree(path, ignore_errors=True)
    return removed
