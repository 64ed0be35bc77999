"""The bookkeeping folder OUT/_capfleet: settings fingerprint, item manifest, done-markers, errors.

A shard counts as done only when its marker exists and lists as many items as the plan gives
it, so a `--limit` run's cut-short last shard is redone by the full run that follows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from capfleet import __version__
from capfleet.config import ConfigError, RunConfig
from capfleet.sample import Item
from capfleet.sinks.location import Location
from capfleet.sources.plan import ShardSpec, plan_shards

STATE_DIR = "_capfleet"
RUN_FILE = f"{STATE_DIR}/run.json"
MANIFEST_FILE = f"{STATE_DIR}/manifest.jsonl"
COMPLETIONS_DIR = f"{STATE_DIR}/completions"
ERRORS_DIR = f"{STATE_DIR}/errors"
FILTERED_DIR = f"{STATE_DIR}/filtered"


def _is_ours(name: str) -> bool:
    return name.isdigit() or name == STATE_DIR or name.startswith((".tmp-", ".old-"))


class RunState:
    def __init__(self, location: Location):
        self.location = location

    def marker(self, shard: ShardSpec) -> str:
        return f"{COMPLETIONS_DIR}/{shard.name}.json"

    def errors_file(self, shard: ShardSpec) -> str:
        return f"{ERRORS_DIR}/errors-{shard.name}.jsonl"

    def filtered_file(self, shard: ShardSpec) -> str:
        return f"{FILTERED_DIR}/filtered-{shard.name}.jsonl"

    def prepare(self, config: RunConfig) -> bool:
        """Check OUT against the settings; returns True when resuming an earlier run."""
        if config.overwrite:
            self.clear()
        if self.location.exists(RUN_FILE):
            stored = json.loads(self.location.read_text(RUN_FILE))
            if stored.get("fingerprint") != config.fingerprint():
                raise ConfigError(_mismatch_message(self.location.url, stored.get("settings", {}), config))
            self.location.remove_stale_staging()
            return True
        if self.location.list():
            raise ConfigError(f"{self.location.url} is not empty and holds no capfleet run: pick an empty folder")
        return False

    def record_run(self, config: RunConfig, items: Iterable[Item]) -> None:
        """Save the listing first, then run.json: a run.json always has its manifest beside it."""
        self.location.write_lines(MANIFEST_FILE, [item.to_json() for item in items])
        payload = {"fingerprint": config.fingerprint(), "settings": config.fingerprint_fields(), "version": __version__}
        self.location.write_json(RUN_FILE, payload)

    def load_items(self) -> list[Item]:
        lines = self.location.read_text(MANIFEST_FILE).splitlines()
        return [Item.from_json(json.loads(line)) for line in lines if line.strip()]

    def plan(self, config: RunConfig) -> list[ShardSpec]:
        return plan_shards(self.load_items(), config.shard_size, config.limit)

    def done_counts(self) -> dict[str, int]:
        """Shard name -> items its marker covers, listing the markers once (not one stat each)."""
        counts = {}
        for name in self.location.list(COMPLETIONS_DIR):
            if name.endswith(".json") and not name.startswith("."):
                marker = json.loads(self.location.read_text(f"{COMPLETIONS_DIR}/{name}"))
                counts[name[: -len(".json")]] = marker.get("items")
        return counts

    def is_done(self, shard: ShardSpec) -> bool:
        if not self.location.exists(self.marker(shard)):
            return False
        return json.loads(self.location.read_text(self.marker(shard))).get("items") == len(shard.items)

    def mark_done(self, shard: ShardSpec, stats: dict) -> None:
        self.location.write_json(self.marker(shard), {"items": len(shard.items), **stats})

    def clear(self) -> None:
        """--overwrite: remove only what capfleet wrote, never other files of the user's."""
        for name in self.location.list():
            if _is_ours(name):
                self.location.remove(name)
        if self.location.list():
            raise ConfigError(f"{self.location.url} holds files capfleet did not write: pick an empty folder")


def _mismatch_message(where: str, stored: dict, config: RunConfig) -> str:
    now = config.fingerprint_fields()
    names = dict.fromkeys([*now, *stored])  # a filter set in only one of the two runs is a change too
    changed = [
        f"{name}: {stored.get(name)!r} -> {now.get(name)!r}" for name in names if stored.get(name) != now.get(name)
    ]
    return (
        f"{where} holds a run with other settings ({'; '.join(changed) or 'different version'}). "
        "Rerun with the same settings to resume, pass --overwrite to start over, or pick another output folder."
    )
