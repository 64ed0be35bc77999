"""What every filter shares: the rejection record, and ONNX sessions loaded once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from capfleet.sample import Sample

PANEL = "Filters"  # where --help lists every filter's options
T = TypeVar("T")
_loaded: dict[tuple, Any] = {}
_lock = threading.RLock()  # a factory may load another shared model


def reject(sample: Sample, name: str, score: float, threshold: float, **extra: Any) -> None:
    """Mark a sample filtered: it becomes a record in _capfleet/filtered/, never a silent drop."""
    sample.filtered = {
        "key": sample.key,
        "source": sample.item.source,
        "filter": name,
        "score": score,
        "threshold": threshold,
        **extra,
    }


def load_once(key: tuple, factory: Callable[[], T]) -> T:
    """One instance per process (like the models): reader threads and Beam DoFns share it."""
    with _lock:
        if key not in _loaded:
            _loaded[key] = factory()
        return _loaded[key]


def onnx_session(path: str):
    """An ONNX Runtime session on CUDA when available, else one CPU thread per call.

    Reader threads call it concurrently (`run` is thread-safe); they are the parallelism, so
    each call stays on one core instead of every thread spawning a pool of its own.
    """
    import onnxruntime

    def create():
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        return onnxruntime.InferenceSession(path, options, providers=providers)

    return load_once(("onnx", path), create)
