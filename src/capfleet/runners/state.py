"""The bookkeeping folder OUT/_capfleet: settings fingerprint, item manifest, done-markers, errors.

A shard counts as done only when its marker exists and lists as many items as the plan gives
it, so a `--limit` run's cut-short last shard is redone by the full run that follows.

What capfleet may delete is decided here, and only from what a recorded run says it wrote:
the exact files each shard recorded before publishing them, the staging/trash folders of the
shard names its manifest implies, its merged files and `_capfleet/` itself. Anything else in
OUT_DIR makes `--overwrite` refuse before it deletes a single file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from types import SimpleNamespace

from capfleet import __version__
from capfleet.config import ConfigError, RunConfig
from capfleet.formats.base import OUTPUTS_DIR, recorded_files, unrecorded_paths
from capfleet.io.location import STAGING_NAME, Location, jsonl_text
from capfleet.protocols import Source
from capfleet.sources.plan import ShardSpec

STATE_DIR = "_capfleet"
RUN_FILE = f"{STATE_DIR}/run.json"
MANIFEST_FILE = f"{STATE_DIR}/manifest.jsonl"
COMPLETIONS_DIR = f"{STATE_DIR}/completions"
ERRORS_DIR = f"{STATE_DIR}/errors"
FILTERED_DIR = f"{STATE_DIR}/filtered"
MERGED_FILE = f"{STATE_DIR}/merged.json"
# What a first start leaves in _capfleet before run.json exists: the lock and a manifest
# (complete, or a temp file cut short by a kill or a full disk).
# A task array's first starts also leave `tasks/` (their locks) there.
_START_LEFTOVERS = re.compile(r"lock|lease\.json|tasks|manifest\.jsonl|\.(manifest\.jsonl|run\.json)\.[0-9a-f]{8}")


class RunState:
    def __init__(self, location: Location):
        self.location = location

    def marker(self, shard: ShardSpec) -> str:
        return f"{COMPLETIONS_DIR}/{shard.name}.json"

    def errors_file(self, shard: ShardSpec) -> str:
        return f"{ERRORS_DIR}/errors-{shard.name}.jsonl"

    def filtered_file(self, shard: ShardSpec) -> str:
        return f"{FILTERED_DIR}/filtered-{shard.name}.jsonl"

    # -- starting a run -------------------------------------------------------------------
    def has_run(self) -> bool:
        return self.location.exists(RUN_FILE)

    def check(self, config: RunConfig) -> bool:
        """Read-only: may this run use OUT? True when it resumes an earlier run.

        Raises ConfigError before anything is written or deleted: other settings without
        --overwrite, or files that no recorded capfleet run wrote.
        """
        if self.has_run():
            if config.overwrite:
                self.foreign_entries_or_raise()
                return False
            self._check_stored(json.loads(self.location.read_text(RUN_FILE)), config)
            return True
        if not self._is_empty_or_interrupted_start():
            detail = " (--overwrite only ever deletes what a capfleet run wrote)" if config.overwrite else ""
            raise ConfigError(
                f"{self.location.url} is not empty and holds no capfleet run: pick an empty folder{detail}"
            )
        return False

    def _check_stored(self, stored: dict, config: RunConfig) -> None:
        """The recorded run must have these settings, and a task array the same number of tasks."""
        if stored.get("fingerprint") != config.fingerprint():
            raise ConfigError(_mismatch_message(self.location.url, stored.get("settings", {}), config))
        tasks = stored.get("tasks")
        if config.task_count is not None and tasks is not None and tasks != config.task_count:
            raise ConfigError(
                f"{self.location.url} was started as a task array of {tasks} tasks, not {config.task_count}: "
                f"rerun with --task-count {tasks} (each shard belongs to one task of that many)"
            )

    def prepare(self, config: RunConfig, task=None) -> bool:
        """Under the run lock (a task: under its own lock): check OUT, clear it for --overwrite,
        drop stale staging (a task: of its own shards only, the others may be writing theirs)."""
        resuming = self.check(config)
        if config.overwrite and self.has_run():
            self.clear()
        elif not resuming and task is None:
            self._clear_interrupted_start()
        self.location.remove_stale_staging(task.owns if task is not None else lambda name: True)
        return resuming

    def record_run(self, config: RunConfig, listing: Iterable[dict]) -> None:
        """Save the listing first, then run.json: a run.json always has its manifest beside it.

        The listing is the source's: one row per image for listed inputs, one per file for
        natural shards (tars, parquet), so a run over 100,000 tars records 100,000 rows.
        The tasks of a task array may all start in the same second: each creates both files only
        if absent and compares what is there with its own (same settings give the same bytes).
        """
        rows = jsonl_text(list(listing))
        payload = {"fingerprint": config.fingerprint(), "settings": config.fingerprint_fields(), "version": __version__}
        if config.task_count is None:
            self.location.write_text(MANIFEST_FILE, rows)
            self.location.write_json(RUN_FILE, payload)
            return
        if self.location.create_text(MANIFEST_FILE, rows) != rows:
            raise ConfigError(
                f"another task listed the inputs of {self.location.url} differently (they changed between the "
                "tasks' starts?): nothing was written; start every task on the same inputs"
            )
        text = json.dumps({**payload, "tasks": config.task_count}, indent=1, sort_keys=True)
        stored = self.location.create_text(RUN_FILE, text)
        if stored != text:
            self._check_stored(json.loads(stored), config)

    def _is_empty_or_interrupted_start(self) -> bool:
        top = self.location.list()
        if not top:
            return True
        if top != [STATE_DIR]:
            return False
        return all(_START_LEFTOVERS.fullmatch(name) for name in self.location.list(STATE_DIR))

    def _clear_interrupted_start(self) -> None:
        for name in self.location.list(STATE_DIR):
            if _START_LEFTOVERS.fullmatch(name) and name not in ("lock", "lease.json"):
                self.location.remove(f"{STATE_DIR}/{name}")

    # -- what belongs to the run ----------------------------------------------------------
    def manifest_rows(self) -> list[dict]:
        return self.location.read_lines(MANIFEST_FILE)

    def plan(self, config: RunConfig, source: Source) -> list[ShardSpec]:
        return source.plan(self.manifest_rows(), config.shard_size, config.limit)

    def recorded_plan(self) -> list[ShardSpec]:
        """Every shard of the recorded run, from its own settings and listing (no --limit)."""
        from capfleet.sources.kinds import open_source

        settings = self.recorded_settings()
        source = open_source(settings.get("inputs", []), SimpleNamespace(**settings))
        return source.plan(self.manifest_rows(), int(settings.get("shard_size", 1)), None)

    def recorded_settings(self) -> dict:
        """The recorded run's fingerprint settings (those left at their default are absent)."""
        return json.loads(self.location.read_text(RUN_FILE)).get("settings", {})

    def shard_names(self) -> set[str]:
        """Every shard name the recorded run can have written: its own plan, without --limit."""
        return {shard.name for shard in self.recorded_plan()}

    def recorded_tasks(self) -> int | None:
        """How many tasks the run was started as (a task array), else None."""
        return json.loads(self.location.read_text(RUN_FILE)).get("tasks")

    def missing_shards(self) -> list[ShardSpec]:
        """Shards of the recorded run that no run or task has finished yet."""
        done = self.done_counts()
        return [shard for shard in self.recorded_plan() if done.get(shard.name, -1) != shard.planned]

    def merged_files(self) -> list[str]:
        if not self.location.exists(MERGED_FILE):
            return []
        return json.loads(self.location.read_text(MERGED_FILE)).get("files", [])

    def record_merged(self, name: str) -> None:
        """`capfleet merge` wrote OUT/name: --overwrite may delete it later."""
        files = sorted({*self.merged_files(), name})
        self.location.write_json(MERGED_FILE, {"files": files})

    def recorded_outputs(self) -> set[str]:
        """Every path (relative to OUT) a shard of this run recorded publishing: files and folders."""
        paths: set[str] = set()
        for name in self.location.list(OUTPUTS_DIR):
            if name.endswith(".json") and not name.startswith("."):
                paths |= recorded_files(self.location, name[: -len(".json")])
        return paths

    def _foreign_paths(self, name: str, shards: set[str], merged: set[str], recorded: set[str]) -> list[str]:
        """What under top-level entry `name` no recorded run wrote (empty: all of it is ours)."""
        if name == STATE_DIR or name in merged:
            return []
        staging = STAGING_NAME.fullmatch(name)
        if staging:
            return [] if staging.group(2) in shards else [name]
        return unrecorded_paths(self.location, name, recorded)

    def foreign_entries_or_raise(self) -> list[str]:
        """The entries --overwrite would delete; raises, deleting nothing, if any holds what we did not write.

        Ours are `_capfleet/`, merged files, staging folders of the run's shards, and exactly the
        files and folders each shard recorded before publishing them (`_capfleet/outputs/`): a
        user's `00000.notes.txt` beside a shard, or `00000/my-edits.txt` inside one, is not.
        """
        try:
            shards, merged, recorded = self.shard_names(), set(self.merged_files()), self.recorded_outputs()
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot tell which files in {self.location.url} capfleet wrote ({exc}): nothing was deleted"
            ) from exc
        entries = self.location.list()
        foreign = [path for name in entries for path in self._foreign_paths(name, shards, merged, recorded)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ConfigError(
                f"{self.location.url} holds files capfleet did not write ({shown}): nothing was deleted; "
                "move them away or pick another output folder"
            )
        return entries

    def clear(self) -> None:
        """--overwrite: remove only what the recorded run wrote; keep the lock we hold."""
        for name in self.foreign_entries_or_raise():
            if name != STATE_DIR:
                self.location.remove(name)
        for name in self.location.list(STATE_DIR):
            if name not in ("lock", "lease.json"):
                self.location.remove(f"{STATE_DIR}/{name}")

    # -- progress -------------------------------------------------------------------------
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
        return {row["key"] for row in self.location.read_lines(self.errors_file(shard))}

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
