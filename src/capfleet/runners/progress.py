"""A tqdm bar on a terminal; plain periodic log lines when output goes to a file or CI."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("capfleet")


class Progress:
    def __init__(self, total: int, enabled: bool | None = None, every_s: float = 30.0, unit: str = "img"):
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.every_s = every_s
        self._last_log = self.started
        use_bar = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, smoothing=0.05)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self._last_log >= self.every_s:
            self._last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%d/%d images, %.2f img/s, ETA %.0f s", self.done, self.total, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
