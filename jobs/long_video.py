"""Ray job: one or a few long videos, cut into parallel segments over the cluster's GPUs.

    ray job submit --working-dir . -- python jobs/long_video.py --config jobs/long_video.yaml \
        --videos s3://bucket/raw/match.mp4 --output s3://bucket/datasets/match

Every ``sam-batch run`` flag works here and overrides the YAML. With
``segments: auto`` a video gets as many segments as keep the workers busy.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common

from sam_batch.config import JobConfig


def build_parser() -> argparse.ArgumentParser:
    return _common.parser(__doc__.split("\n")[0])


def prepare(args: argparse.Namespace, config: JobConfig) -> JobConfig:
    return config


def configure(argv: list[str] | None = None) -> JobConfig:
    """The config a submission with ``argv`` runs, without running it."""
    return _common.configure(build_parser, prepare, argv)


def main(argv: list[str] | None = None) -> int:
    return _common.main(build_parser, prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
