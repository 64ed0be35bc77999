"""Bound the CPU kernel caches before torch creates its first kernel.

On the CPU, bf16 matmuls and every convolution run through oneDNN, which compiles a kernel
("primitive") per input shape and keeps it in two caches, oneDNN's own and ideep's, 1024
entries each by default. Generation makes many shapes (batch x candidates x prompt length), and
a long-running bf16 process filled them: `capfleet serve` with the
built-in model went from 473 to 701 MB over 3,300 requests at 1024 entries, and from 474 to
523 MB at 64, at the same speed (benchmarks/bench_serve.py --soak 3300, benchmarks/README.md).

The capacities are read once, when the first kernel is made, so this runs on `import capfleet`;
a value the user exported wins (`os.environ.setdefault`).
"""

from __future__ import annotations

import os

KERNEL_CACHE_ENTRIES = "64"
CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_kernel_caches() -> None:
    for name in CACHE_VARIABLES:
        os.environ.setdefault(name, KERNEL_CACHE_ENTRIES)
