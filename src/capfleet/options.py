"""Settings declared once: default, help text, CLI flag and fingerprint role live on the dataclass field.

`RunConfig` is composed from the option dataclasses of the core and of each plugin (engine, filter,
format); the CLI builds `capfleet caption`'s options from these fields, and the resume fingerprint
reads each field's role instead of a hand-kept list.

Fingerprint roles: "always" (changes which rows a run writes; recorded since the first release),
"if_set" (the same, added later: recorded only when it differs from its default, so runs made before
it existed keep their fingerprint and resume), "never" (speed or how much is done now).
"""

from __future__ import annotations

import dataclasses
from typing import Any

ROLES = ("always", "if_set", "never")


def option(
    default: Any,
    help: str,
    *,
    fingerprint: str = "never",
    flag: str | None = None,
    choices: tuple | None = None,
    panel: str = "Run",
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field carrying its CLI and fingerprint metadata (`cli=False`: API-only setting)."""
    if fingerprint not in ROLES:
        raise ValueError(f"fingerprint role {fingerprint!r}; choose from {ROLES}")
    metadata = {"help": help, "fingerprint": fingerprint, "flag": flag, "choices": choices, "panel": panel}
    metadata |= {"metavar": metavar, "cli": cli}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def fingerprint_fields(config: Any) -> dict[str, Any]:
    """The settings that decide a run's rows: "always" fields, and "if_set" fields that differ from their default."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        role = field.metadata.get("fingerprint", "never")
        value = getattr(config, field.name)
        if role == "always" or (role == "if_set" and value != _default(field)):
            values[field.name] = value
    return values


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default
