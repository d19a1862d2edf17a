"""What the job entry points share: flags on top of a YAML config, and the exit code.

A Ray job is ``ray job submit --working-dir . -- python jobs/<name>.py --config
jobs/<name>.yaml [--key value ...]``. Inside it the driver finds the cluster
through ``RAY_ADDRESS``, which Ray sets for every job, so ``sam_batch.driver.job.run``
joins the cluster instead of starting one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from sam_batch.cli import _job_flags, config_from_args
from sam_batch.config import JobConfig, Redactor
from sam_batch.errors import SamBatchError

Prepare = Callable[[argparse.Namespace, JobConfig], JobConfig]


def parser(description: str) -> argparse.ArgumentParser:
    """``sam-batch run``'s flags (``--config`` and every key), for a job script."""
    p = argparse.ArgumentParser(description=description)
    _job_flags(p)
    return p


def configure(build: Callable[[], argparse.ArgumentParser], prepare: Prepare,
              argv: Sequence[str] | None = None, own_keys: tuple[str, ...] = ()) -> JobConfig:
    """The config the job would run with, without running it (for checks and tests)."""
    return _configured(build().parse_args(argv), prepare, own_keys)


def _configured(args: argparse.Namespace, prepare: Prepare, own_keys: tuple[str, ...]
                ) -> JobConfig:
    """YAML, flags over it, then the job's own changes (``prepare``).

    ``own_keys``: top-level YAML keys the job reads itself, not ``JobConfig`` keys.
    """
    return prepare(args, config_from_args(args, own_keys))


def main(build: Callable[[], argparse.ArgumentParser], prepare: Prepare,
         argv: Sequence[str] | None = None, own_keys: tuple[str, ...] = ()) -> int:
    """Configure, run, print the summary; 1 if a video failed, 2 if the job could not run."""
    from sam_batch.driver.job import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = build().parse_args(argv)
    try:
        summary = run(_configured(args, prepare, own_keys))
    except SamBatchError as e:
        # The config may have failed before its secrets were known: the environment's then.
        redactor = getattr(args, "redactor", None) or Redactor(JobConfig().secrets())
        print(f"error: {redactor.scrub(str(e))}", file=sys.stderr)
        return 2
    print(args.redactor.scrub(summary.text()))
    return 0 if summary.ok else 1
