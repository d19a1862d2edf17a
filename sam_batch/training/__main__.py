"""``python -m sam_batch.training --out DIR --steps N --seed S``: train sam-batch-tiny."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from sam_batch.training.train import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_batch.training",
                                     description="Train sam-batch-tiny on synthetic videos.")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "out":
            parser.add_argument(flag, required=True, help="folder for checkpoints and logs")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default,
                                help=f"default {f.default}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    summary = train(TrainConfig(**vars(args)))
    print(json.dumps({"best": summary["best"], "steps": summary["steps"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
