"""Bound the CPU kernel caches before torch creates its first kernel.

On the CPU, bf16 matmuls and every convolution run through oneDNN, which compiles a kernel
("primitive") per input shape and keeps it in two caches, oneDNN's own and ideep's, 1024
entries each by default. Generation makes many shapes (batch x candidates x prompt length), and
an entry can hold many MB, so a long-running process kept growing: in bf16 with batches of 1-8
images, the built-in model went from 443 to 900 MB over 800 calls and BLIP-base + CLIP gained
823 MB in its first 10 calls (`capfleet serve`: 513 to 922 MB over 3,300 requests). At 64
entries each, the built-in model stays at 486 MB after 600 calls and BLIP + CLIP gains 417 MB
over 20 calls (51 MB of it in the last 10: the cache is full); at 32 BLIP ran about half as
fast (kernels rebuilt on every call; a rough figure, measured on a busy machine). Measured
with /proc RSS, 1 torch thread.

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
