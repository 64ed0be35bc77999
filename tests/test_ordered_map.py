"""capfleet.parallel.ordered_map: input order, a bounded window, and cheap items done in the calling thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from capfleet.parallel import ordered_map


def test_order_is_kept_and_inline_items_run_in_the_calling_thread():
    caller = threading.get_ident()
    threads: dict[int, int] = {}

    def work(item: int) -> int:
        threads[item] = threading.get_ident()
        return item * item

    with ThreadPoolExecutor(3) as pool:
        results = list(ordered_map(work, range(40), pool, window=5, inline=lambda item: item % 2 == 0))
    assert results == [item * item for item in range(40)]
    assert all(threads[item] == caller for item in range(0, 40, 2))
    assert all(threads[item] != caller for item in range(1, 40, 2))


def test_no_more_than_the_window_is_in_flight():
    started: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        results = ordered_map(lambda item: started.append(item) or item, range(100), pool, window=6)
        first = next(results)
        pool.submit(lambda: None).result()  # the pool has run what was submitted
        assert first == 0 and len(started) <= 7  # the window, plus the one refilled after the first yield
        assert list(results) == list(range(1, 100))


def test_inline_items_are_not_read_ahead_while_nothing_is_in_flight():
    """A tar's samples, already read, go straight through: the reader holds no window of them."""
    pulled: list[int] = []

    def items():
        for item in range(10):
            pulled.append(item)
            yield item

    with ThreadPoolExecutor(2) as pool:
        results = ordered_map(lambda item: item, items(), pool, window=5, inline=lambda item: True)
        assert next(results) == 0 and pulled == [0]
        assert list(results) == list(range(1, 10))
