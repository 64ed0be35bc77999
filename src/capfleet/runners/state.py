"""The bookkeeping folder OUT/_capfleet: settings fingerprint, item manifest, done-markers, errors.

A shard counts as done only when its marker exists and lists as many items as the plan gives
it, so a `--limit` run's cut-short last shard is redone by the full run that follows.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from capfleet import __version__
from capfleet.config import ConfigError, RunConfig
from capfleet.sample import Item
from capfleet.sinks.atomic import remove_stale_staging, write_json_atomic, write_lines_atomic
from capfleet.sources.plan import ShardSpec, plan_shards

STATE_DIR = "_capfleet"


class RunState:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / STATE_DIR

    @property
    def run_file(self) -> Path:
        return self.dir / "run.json"

    @property
    def manifest_file(self) -> Path:
        return self.dir / "manifest.jsonl"

    def marker(self, shard: ShardSpec) -> Path:
        return self.dir / "completions" / f"{shard.name}.json"

    def errors_file(self, shard: ShardSpec) -> Path:
        return self.dir / "errors" / f"errors-{shard.name}.jsonl"

    def prepare(self, config: RunConfig) -> bool:
        """Check OUT against the settings; returns True when resuming an earlier run."""
        if config.overwrite:
            self.clear()
        if self.run_file.exists():
            stored = json.loads(self.run_file.read_text())
            if stored.get("fingerprint") != config.fingerprint():
                raise ConfigError(_mismatch_message(self.root, stored.get("settings", {}), config))
            remove_stale_staging(self.root)
            return True
        if self.root.exists() and any(self.root.iterdir()):
            raise ConfigError(f"{self.root} is not empty and holds no capfleet run: pick an empty folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        return False

    def record_run(self, config: RunConfig, items: Iterable[Item]) -> None:
        """Save the listing first, then run.json: a run.json always has its manifest beside it."""
        write_lines_atomic(self.manifest_file, [item.to_json() for item in items])
        payload = {"fingerprint": config.fingerprint(), "settings": config.fingerprint_fields(), "version": __version__}
        write_json_atomic(self.run_file, payload)

    def load_items(self) -> list[Item]:
        with open(self.manifest_file, encoding="utf-8") as handle:
            return [Item.from_json(json.loads(line)) for line in handle if line.strip()]

    def plan(self, config: RunConfig) -> list[ShardSpec]:
        return plan_shards(self.load_items(), config.shard_size, config.limit)

    def is_done(self, shard: ShardSpec) -> bool:
        path = self.marker(shard)
        if not path.exists():
            return False
        return json.loads(path.read_text()).get("items") == len(shard.items)

    def mark_done(self, shard: ShardSpec, stats: dict) -> None:
        write_json_atomic(self.marker(shard), {"items": len(shard.items), **stats})

    def completed_stats(self) -> list[dict]:
        folder = self.dir / "completions"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

    def clear(self) -> None:
        """--overwrite: remove only what capfleet wrote, never other files of the user's."""
        if not self.root.exists():
            return
        for path in self.root.iterdir():
            if path.is_dir() and (
                path.name.isdigit() or path.name == STATE_DIR or path.name.startswith((".tmp-", ".old-"))
            ):
                shutil.rmtree(path)
        if any(self.root.iterdir()):
            raise ConfigError(f"{self.root} holds files capfleet did not write: pick an empty folder")


def _mismatch_message(root: Path, stored: dict, config: RunConfig) -> str:
    now = config.fingerprint_fields()
    changed = [f"{name}: {stored.get(name)!r} -> {now[name]!r}" for name in now if stored.get(name) != now[name]]
    return (
        f"{root} holds a run with other settings ({'; '.join(changed) or 'different version'}). "
        "Rerun with the same settings to resume, pass --overwrite to start over, or pick another output folder."
    )
