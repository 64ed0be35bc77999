"""What every `capfleet` command shares: logging set-up, the one-line error exit, absolute paths."""

from __future__ import annotations

import logging
import os
import sys

import typer

from capfleet.io.paths import is_url


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # e.g. one "Retrying in 8s" warning per retry, each printed twice
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # e.g. the torchvision-less image-processor fallback notice
    hf_logging.disable_progress_bar()


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def exit_now(code: int) -> None:
    """Exit without joining worker threads: one stuck on a dead mount or a silent server would
    otherwise keep a Ctrl-C'd run alive. Shards are published atomically, so nothing is lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def absolute(spec: str) -> str:
    return spec if is_url(spec) else os.path.abspath(spec)
