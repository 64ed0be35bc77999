"""The errors a user acts on, and the one place that writes the "pip install 'capfleet[extra]'" line.

Light on purpose (it imports nothing from capfleet): every layer, plugins included, raises these.
"""

from __future__ import annotations

import importlib.util


class ConfigError(ValueError):
    """A setting the user must change; the message says what."""


class MissingExtra(ConfigError):
    """An optional package a chosen feature needs is not installed; the message gives the install line."""


def install_line(extra: str) -> str:
    """The command that installs an extra: every message naming one ends with it."""
    return f"pip install 'capfleet[{extra}]'"


def require(modules: tuple[str, ...], extra: str, what: str) -> None:
    """Fail fast, before any work, when `what` (a flag or feature) needs `extra` and one of `modules` is missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(f"{what} needs the '{extra}' extra ({missing[0]} is missing): {install_line(extra)}")
