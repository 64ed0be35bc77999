"""The bookkeeping folder OUT/_capfleet: settings fingerprint, item manifest, done-markers, errors.

A shard counts as done only when its marker exists and lists as many items as the plan gives
it, so a `--limit` run's cut-short last shard is redone by the full run that follows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from capfleet import __version__
from capfleet.config import ConfigError, RunConfig
from capfleet.sinks.location import Location
from capfleet.sources.plan import ShardSpec

STATE_DIR = "_capfleet"
RUN_FILE = f"{STATE_DIR}/run.json"
MANIFEST_FILE = f"{STATE_DIR}/manifest.jsonl"
COMPLETIONS_DIR = f"{STATE_DIR}/completions"
ERRORS_DIR = f"{STATE_DIR}/errors"


def _is_ours(name: str) -> bool:
    """Shard outputs are named by shard number: a folder `00000`, or a file `00000.tar`/`.parquet`."""
    return name.split(".", 1)[0].isdigit() or name == STATE_DIR or name.startswith((".tmp-", ".old-"))


class RunState:
    def __init__(self, location: Location):
        self.location = location

    def marker(self, shard: ShardSpec) -> str:
        return f"{COMPLETIONS_DIR}/{shard.name}.json"

    def errors_file(self, shard: ShardSpec) -> str:
        return f"{ERRORS_DIR}/errors-{shard.name}.jsonl"

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

    def record_run(self, config: RunConfig, listing: Iterable[dict]) -> None:
        """Save the listing first, then run.json: a run.json always has its manifest beside it.

        The listing is the source's: one row per image for listed inputs, one per file for
        natural shards (tars, parquet), so a run over 100,000 tars records 100,000 rows.
        """
        self.location.write_lines(MANIFEST_FILE, list(listing))
        payload = {"fingerprint": config.fingerprint(), "settings": config.fingerprint_fields(), "version": __version__}
        self.location.write_json(RUN_FILE, payload)

    def manifest_rows(self) -> list[dict]:
        lines = self.location.read_text(MANIFEST_FILE).splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def plan(self, config: RunConfig, source) -> list[ShardSpec]:
        return source.plan(self.manifest_rows(), config.shard_size, config.limit)

    def done_counts(self) -> dict[str, int | None]:
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
        return json.loads(self.location.read_text(self.marker(shard))).get("items") == shard.planned

    def failed_keys(self, shard: ShardSpec) -> set[str]:
        """The keys the shard's error records name (`--retry-errors` reads them again)."""
        if not self.location.exists(self.errors_file(shard)):
            return set()
        lines = self.location.read_text(self.errors_file(shard)).splitlines()
        return {json.loads(line)["key"] for line in lines if line.strip()}

    def shards_with_errors(self) -> set[str]:
        """Names of shards whose error file is not empty, listing the folder once."""
        names = set()
        for name in self.location.list(ERRORS_DIR):
            if name.startswith("errors-") and name.endswith(".jsonl"):
                if self.location.read_text(f"{ERRORS_DIR}/{name}").strip():
                    names.add(name[len("errors-") : -len(".jsonl")])
        return names

    def mark_done(self, shard: ShardSpec, stats: dict) -> None:
        """`items` is what the plan asked of the shard (null: a whole input file), not what it held."""
        self.location.write_json(self.marker(shard), {"items": shard.planned, **stats})

    def clear(self) -> None:
        """--overwrite: remove only what capfleet wrote, never other files of the user's."""
        for name in self.location.list():
            if _is_ours(name):
                self.location.remove(name)
        if self.location.list():
            raise ConfigError(f"{self.location.url} holds files capfleet did not write: pick an empty folder")


def _mismatch_message(where: str, stored: dict, config: RunConfig) -> str:
    now = config.fingerprint_fields()
    changed = [f"{name}: {stored.get(name)!r} -> {now[name]!r}" for name in now if stored.get(name) != now[name]]
    return (
        f"{where} holds a run with other settings ({'; '.join(changed) or 'different version'}). "
        "Rerun with the same settings to resume, pass --overwrite to start over, or pick another output folder."
    )
