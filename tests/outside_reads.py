"""Catch a test that reads a file beside the checkout (a workspace's ../shared, say).

A user's clone has nothing beside it, so a test that reads there passes only on our machines.
An audit hook sees every `open`, `os.listdir` and `os.scandir` of this process; a path under the
checkout's parent folder but outside the checkout is recorded. Temporary and home folders
(pytest's tmp_path, ~/.cache) are not the checkout's neighbours, even when they share its parent.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
_EVENTS = {"open", "os.listdir", "os.scandir"}


class OutsideReads:
    """Paths read beside the checkout, in the order they were read."""

    def __init__(self, checkout: Path = CHECKOUT):
        self.checkout = str(checkout)
        self.neighbourhood = str(checkout.parent)
        self.allowed = [
            prefix
            for prefix in (os.path.realpath(tempfile.gettempdir()), os.path.expanduser("~"))
            if not self.checkout.startswith(prefix + os.sep)  # a checkout under /tmp still guards its siblings
        ]
        self.paths: list[str] = []

    def is_outside(self, path: str) -> bool:
        path = os.path.abspath(path)
        if not path.startswith(self.neighbourhood + os.sep) or self.neighbourhood == os.sep:
            return False
        if path == self.checkout or path.startswith(self.checkout + os.sep):
            return False
        return not any(path == prefix or path.startswith(prefix + os.sep) for prefix in self.allowed)

    def audit(self, event: str, args: tuple) -> None:
        if event not in _EVENTS or not args or isinstance(args[0], int) or args[0] is None:
            return
        try:
            path = os.fsdecode(args[0])
        except TypeError:
            return
        if self.is_outside(path):
            self.paths.append(path)

    def take(self) -> list[str]:
        paths, self.paths = self.paths, []
        return paths


def install() -> OutsideReads:
    reads = OutsideReads()
    sys.addaudithook(reads.audit)
    return reads
