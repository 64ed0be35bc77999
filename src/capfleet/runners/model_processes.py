"""`--model-processes N`: N-1 helper processes that each hold the models and caption whole batches.

Why: one process with every core leaves cores idle while `generate` runs Python between small
matrix multiplies (the decoder's 24 rows x 1 token scale badly across threads). Measured on a
2-core EPYC: 2 processes x 1 thread captioned 1.21x as fast as 1 process x 2 threads, while
2 Python threads sharing one model gained 1.03x (the GIL binds). So the run's process keeps
reading, writing and publishing (every row is still written by it, in order: exactly-once
does not change) and captions batches itself, handing a batch to each helper that is idle.

A helper's captions are those the run's process would give: each image samples from its own
seed (`sampling.image_seed`), batches are the same, and every process runs the same torch
threads. A helper that fails to start (the system refuses the process, or it cannot load the
models) is dropped with a warning; one that dies mid-batch (killed, out of memory) is dropped
and its batch captioned here again; nothing was written for it yet, so no image is lost or
doubled. The measured case is a CPU's; on a GPU the processes share it, only when asked
(unmeasured): a small model leaves the GPU idle while Python runs between decoding steps, and
another process's kernels can fill those gaps.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from capfleet.config import RunConfig
from capfleet.decoding import DecodingOptions
from capfleet.memory import available_memory
from capfleet.runners.candidates import CandidateMaker, CandidateSettings, Captioned
from capfleet.sample import Sample

log = logging.getLogger("capfleet")
AUTO_PROCESSES = 2  # the measured case; more is the user's call (each process holds its own models)
# Auto helpers start only when the run's process has this much captioning left: a helper's start costs
# one core seconds (import torch, load the models), which a 1.2x gain repays after about 6x as long.
WORTH_STARTING_S = 30.0
_READY, _RESULT, _ERROR = "ready", "result", "error"


class Plan(NamedTuple):
    """How a run's model work splits: `processes` in all (this one included), `threads` torch threads each."""

    processes: int
    threads: int


def plan(config: RunConfig, total_threads: int, spare_memory: bool = True) -> Plan:
    """`--model-processes`, or auto: 2 on a CPU run of the transformers engine with 2+ threads when memory
    holds a second copy of the models (`spare_memory`: a 7B VLM's second copy would not fit a laptop), else 1
    (auto helpers then start only once the work left is worth it: `worth_starting`). On a GPU only when
    asked: the processes share it, each filling the gaps the others' Python leaves between kernels."""
    from capfleet.models.runtime import pick_device

    device = pick_device(config.device).type
    if config.model_processes is not None:  # on a GPU only when asked: the processes share it (unmeasured)
        count = config.model_processes
    else:
        usable = (
            config.captioner != "none"
            and config.engine == "transformers"
            and config.gpus == 1
            and device == "cpu"
            and spare_memory
        )
        count = min(AUTO_PROCESSES, total_threads) if usable else 1
    return Plan(count, max(1, total_threads // count))


def model_bytes(models: tuple) -> int:
    """Bytes of the parameters and buffers the run's models hold (shared tensors once)."""
    import torch

    seen: dict[int, int] = {}
    for holder in models:
        for module in vars(holder).values() if holder is not None else ():
            if isinstance(module, torch.nn.Module):
                for tensor in (*module.parameters(), *module.buffers()):
                    seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


class HelperLost(RuntimeError):
    """A helper process died (killed, out of memory) or failed to start."""


@dataclass(frozen=True)
class _Job:
    samples: list[Sample]
    seeds: list[int | None]
    settings: CandidateSettings
    decoding: DecodingOptions


def _serve(settings: dict, threads: int, after_load, connection) -> None:
    """A helper's life: load the models, say ready, then caption each job until the run closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it closes the helpers
    import transformers

    from capfleet.runners.models import load_models

    transformers.utils.logging.disable_progress_bar()
    try:
        captioner, scorer = load_models(RunConfig(**{**settings, "threads": threads}))
        if after_load is not None:
            after_load(captioner, scorer)
        word = (_READY, None)
    except Exception as exc:
        word = (_ERROR, f"{type(exc).__name__}: {exc}")
    try:
        connection.send(word)
    except OSError:  # the run was killed while this helper loaded: nobody to tell
        return
    if word[0] == _ERROR:
        return
    while True:
        try:
            job: _Job = connection.recv()
        except (EOFError, OSError):  # the run ended or died: so does its helper
            return
        maker = CandidateMaker(captioner, scorer, job.settings, job.decoding)
        try:
            reply = (_RESULT, (maker.make(job.samples, job.seeds), maker.counts))
        except Exception as exc:
            reply = (_ERROR, f"{type(exc).__name__}: {exc}")
        try:
            connection.send(reply)
        except OSError:  # the run stopped (Ctrl-C) while this batch ran
            return


class Helper:
    """One helper process and its pipe; at most one job at a time."""

    def __init__(self, context, settings: dict, threads: int, after_load):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(settings, threads, after_load, theirs), daemon=True, name="capfleet-model"
        )
        self.process.start()
        theirs.close()
        self.ready = self.busy = self.lost = False
        self.images = 0  # captioned here, for the run's log

    def idle(self) -> bool:
        """Loaded and without a job; notices a helper that failed to start or died."""
        if self.lost or self.busy:
            return False
        if not self.ready:
            if not self.has_result():
                return False
            try:
                kind, message = self._receive()
            except HelperLost:
                return False  # died while loading: dropped, with a warning
            if kind == _ERROR:
                self._drop(f"could not load the models: {message}")
                return False
            self.ready = True
        return True

    def submit(self, job: _Job) -> None:
        self.busy = True
        try:
            self.connection.send(job)
        except OSError as exc:
            self._drop(f"died ({exc})")
            raise HelperLost(self._why) from exc

    def result(self, written: bool = True) -> tuple[list[Captioned], Counter]:
        """The job's results and hygiene counts; raises HelperLost, or RuntimeError with the job's own error.
        `written=False`: the rows will not be written (their shard is retried), so `images` does not count them."""
        kind, value = self._receive()
        self.busy = False
        if kind == _ERROR:
            raise RuntimeError(value)
        if written:
            self.images += len(value[0])
        return value

    def close(self) -> None:
        """An idle helper ends when its pipe closes; one still loading or busy (Ctrl-C mid-batch) is not waited for."""
        self.connection.close()
        if self.busy or not self.ready:
            self.process.terminate()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)

    def has_result(self) -> bool:
        """A message waits: the ready word after loading, or the job's result."""
        try:
            return self.connection.poll()
        except OSError:
            return True  # _receive reports it

    def _receive(self):
        try:
            return self.connection.recv()
        except (EOFError, OSError) as exc:
            self.process.join(timeout=1)
            self._drop(f"died (exit code {self.process.exitcode}: killed, or out of memory)")
            raise HelperLost(self._why) from exc

    def _drop(self, why: str) -> None:
        self.lost, self.busy, self._why = True, False, f"model process {self.process.pid} {why}"
        log.warning("%s; its batches are captioned in the run's own process", self._why)


class ModelProcesses:
    """The helpers of a run (or of a caller that keeps them across runs: `run_caption(model_processes=...)`)."""

    def __init__(
        self,
        config: RunConfig,
        helpers: int,
        threads: int,
        after_load: Callable | None = None,
        start: bool = True,
        memory_needed: int = 0,
    ):
        """`after_load(captioner, scorer)`: a picklable function each helper applies to the models it loaded.
        `start=False`: spawned by `start` (auto: once the work left is worth it, and while `memory_needed`
        bytes are still free: other processes on the machine may have taken what was free at the run's start)."""
        self.settings = {**asdict(config), "progress": False, "model_processes": 1}
        self.count, self.threads, self.after_load = helpers, threads, after_load
        self.memory_needed = memory_needed
        self.helpers: list[Helper] = []
        self.tried = False  # `start` ran (its helpers may have been refused: the run then captions alone)
        self._threads_alone: int | None = None  # this process's torch threads before it shared them
        self._told_no_room = False
        if start:
            self.start()

    @property
    def started(self) -> bool:
        return bool(self.helpers)

    def start(self) -> None:
        """Spawn the helpers; when the system refuses a process (EAGAIN: the user's process limit), those
        started so far caption, or none: the run goes on in its own process."""
        context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive a fork
        self.tried = True
        for _ in range(self.count):
            try:
                self.helpers.append(Helper(context, self.settings, self.threads, self.after_load))
            except OSError as exc:
                log.warning("could not start a model process (%s); its batches are captioned in the run's own "
                            "process", exc)  # fmt: skip
                break
        if self.helpers:
            pids = ", ".join(str(helper.process.pid) for helper in self.helpers)
            log.info("captioning in %d processes x %d torch threads (--model-processes; helper pids %s)",
                     len(self.helpers) + 1, self.threads, pids)  # fmt: skip

    def share_threads(self) -> None:
        """This process captions beside the helpers: it takes its share of the threads, as each of them does."""
        import torch

        if self._threads_alone is None:
            self._threads_alone = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def worth_starting(self, seconds_left: float) -> bool:
        return not self.tried and seconds_left >= WORTH_STARTING_S and self._room_for_models()

    def _room_for_models(self) -> bool:
        if not self.memory_needed:
            return True
        free = available_memory() or 0
        if free >= self.memory_needed:
            return True
        if not self._told_no_room:
            self._told_no_room = True
            log.info("no helper process yet: %.1f GB free, its copy of the models needs %.1f GB",
                     free / 1e9, self.memory_needed / 1e9)  # fmt: skip
        return False

    def take_back_threads(self) -> None:
        """This process's threads as before `share_threads` (no helper is left, or the run ends)."""
        import torch

        if self._threads_alone is not None:
            torch.set_num_threads(self._threads_alone)
            self._threads_alone = None

    def idle_helper(self) -> Helper | None:
        """An idle helper; when none is left alive, this process takes back the threads it shared."""
        idle = next((helper for helper in self.helpers if helper.idle()), None)
        if idle is None and all(helper.lost for helper in self.helpers):
            self.take_back_threads()
        return idle

    def wait_until_ready(self, timeout: float = 600) -> int:
        """Block until every helper has loaded its models (or failed to); the number ready."""
        for helper in self.helpers:
            if not helper.lost and not helper.ready and helper.connection.poll(timeout):
                helper.idle()
        return sum(helper.ready and not helper.lost for helper in self.helpers)

    @property
    def images(self) -> int:
        """Images the helpers captioned so far."""
        return sum(helper.images for helper in self.helpers)

    def close(self) -> None:
        for helper in self.helpers:
            helper.close()


def job(samples: list[Sample], seeds: list[int | None], maker: CandidateMaker) -> _Job:
    """What a helper needs of a batch: keys, items, fields and decoded images (not the file's bytes, nor
    the metadata a decoded image carries in `info`: EXIF, ICC profile, XMP, PNG text, megabytes at times)."""
    slim = [replace(sample, data=None, members=(), image=_pixels(sample.image)) for sample in samples]
    return _Job(slim, seeds, maker.settings, maker.decoding)


def _pixels(image):
    """The image without its `info` (a copy: the run's own sample keeps it)."""
    if image is None or not image.info:
        return image
    bare = image.copy()
    bare.info = {}
    return bare


def for_run(config: RunConfig, models: tuple, after_load: Callable | None = None) -> ModelProcesses | None:
    """The helpers the settings call for (`plan`): started when `--model-processes` asked for them, else
    left for the run to start once its work left is worth it; None when the run is one process. `models`:
    the run's own, loaded: auto needs room for a helper's copy of them, twice over (loading peaks above it)."""
    from capfleet.cpus import available_cpus

    if config.captioner == "none":
        return None
    free, needed = available_memory(), 2 * model_bytes(models)
    split = plan(config, config.threads or available_cpus(), free is not None and free >= needed)
    if split.processes == 1:
        return None
    if config.model_processes is not None:  # asked for: started now, whatever memory says
        return ModelProcesses(config, split.processes - 1, split.threads, after_load)
    return ModelProcesses(config, split.processes - 1, split.threads, after_load, start=False, memory_needed=needed)
