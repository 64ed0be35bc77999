"""One torch intra-op thread for tests that run small models in process (imported by the conftests that want it).

Small models gain nothing from intra-op threads, and on a shared 2-core box OpenMP spin-waiting makes them
20-50x slower: a built-in caption took 20-35 s with 2 threads and 1.1 s with 1 at load 18 (it decided whether
the service tests' timeouts held). The previous setting is restored for the rest of the session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
