"""``python -m capfleet.train DATA -o MODEL_DIR [--max-steps N ...]``; under torchrun for multi-process:
``torchrun --nproc_per_node 4 -m capfleet.train DATA -o MODEL_DIR``. Flags mirror TrainConfig fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from .trainer import TrainConfig, train_main

_SKIP = {"data_dir", "output_dir", "model_overrides"}


def _flag_type(default: object) -> type:
    return type(default) if isinstance(default, (int, float, str)) and not isinstance(default, bool) else str


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m capfleet.train", description=__doc__)
    parser.add_argument("data_dir", nargs="+", help="imagefolder dataset dir(s) with */metadata.jsonl")
    parser.add_argument("-o", "--output-dir", required=True, help="model dir (HF bundle + logs + checkpoints)")
    parser.add_argument("--nproc", type=int, default=1, help="local DDP processes (without torchrun)")
    parser.add_argument("--model-overrides", type=json.loads, default={}, help='JSON, e.g. {"decoder_layers": 3}')
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.default is None:
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=_flag_type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    data_dir, output_dir, nproc = args.pop("data_dir"), args.pop("output_dir"), args.pop("nproc")
    result = train_main(data_dir if len(data_dir) > 1 else data_dir[0], output_dir, nproc=nproc, **args)
    if os.environ.get("RANK", "0") == "0":
        print(
            json.dumps(
                {
                    "model_dir": str(result.model_dir),
                    "steps": result.steps,
                    "last_loss": result.last_loss,
                    "skipped": result.skipped,
                    "seconds": result.seconds,
                }
            )
        )


if __name__ == "__main__":
    main()
