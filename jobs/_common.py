"""What the job entry points share: flags on top of a YAML config, and the exit code.

A Ray job is ``ray job submit --working-dir . -- python jobs/<name>.py --config
jobs/<name>.yaml [--key value ...]``. Inside it the driver finds the cluster
through ``RAY_ADDRESS``, which Ray sets for every job, so ``sam_batch.job.run``
joins the cluster instead of starting one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from sam_batch.cli import _job_flags, config_from_args
from sam_batch.config import JobConfig
from sam_batch.errors import SamBatchError


def parser(description: str) -> argparse.ArgumentParser:
    """``sam-batch run``'s flags (``--config`` and every key), for a job script."""
    p = argparse.ArgumentParser(description=description)
    _job_flags(p)
    return p


def main(build: Callable[[], argparse.ArgumentParser],
         prepare: Callable[[argparse.Namespace, JobConfig], JobConfig],
         argv: Sequence[str] | None = None, own_keys: tuple[str, ...] = ()) -> int:
    """Parse, let the job adjust the config, run, print the summary; 1 if a video failed."""
    from sam_batch.job import run

    args = build().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        config = prepare(args, config_from_args(args, own_keys))
        summary = run(config)
    except SamBatchError as e:
        print(f"error: {args.redactor.scrub(str(e))}", file=sys.stderr)
        return 2
    print(args.redactor.scrub(summary.text()))
    return 0 if summary.ok else 1
