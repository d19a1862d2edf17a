"""Ray job: every video under tonight's date-stamped prefix, into a dataset partitioned by date.

    ray job submit --working-dir . -- python jobs/nightly_dataset.py \
        --config jobs/nightly_dataset.yaml --date 2026-11-24

Reads ``{input_root}/{date}/`` (mp4, mov, mkv, webm, avi), writes
``{output_root}/date={date}/``. Submitting the same night again resumes it: the
dataset there belongs to the same job, so finished videos are kept and a video
in progress continues after its last committed chunk. Videos without prompts are
tracked in discovery mode (``discover`` in the YAML).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
import yaml

from sam_batch.config import JobConfig
from sam_batch.errors import ConfigError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--date", help="YYYY-MM-DD (default: yesterday, UTC: the night just ended)")
    p.add_argument("--input-root", help="prefix holding one folder per date")
    p.add_argument("--output-root", help="dataset root; the night goes to date=YYYY-MM-DD/")
    return p


def night(text: str | None) -> str:
    """The date to process, validated; yesterday (UTC) by default."""
    if text is None:
        return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"--date must be YYYY-MM-DD, not {text!r}") from None


def night_videos(input_root: str, date: str, storage_options: dict | None = None) -> list[str]:
    """Every video file under ``{input_root}/{date}/``, as URLs, sorted."""
    import fsspec

    folder = f"{input_root.rstrip('/')}/{date}"
    fs, path = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    if not fs.exists(path):
        raise ConfigError(f"no input for {date}: {folder} does not exist")
    protocol = folder.split("://")[0] + "://" if "://" in folder else ""
    found = sorted(p for p in fs.find(path) if p.lower().endswith(VIDEO_SUFFIXES))
    return [f"{protocol}{p}" if protocol else p for p in found]


def partition(output_root: str, date: str) -> str:
    return f"{output_root.rstrip('/')}/date={date}"


def prepare(args: argparse.Namespace, config: JobConfig) -> JobConfig:
    roots = {}
    if args.config:
        import fsspec

        with fsspec.open(args.config, "r") as f:
            roots = (yaml.safe_load(f) or {}).get("nightly") or {}
    input_root = args.input_root or roots.get("input_root")
    output_root = args.output_root or roots.get("output_root")
    if not input_root or not output_root:
        raise ConfigError("give input_root and output_root (flags or the YAML's nightly: keys)")
    date = night(args.date)
    config.manifest, config.videos = None, night_videos(input_root, date,
                                                        config.inputs_storage())
    if not config.videos:
        raise ConfigError(f"no videos under {input_root}/{date}")
    config.output = partition(output_root, date)
    return config


def main(argv: list[str] | None = None) -> int:
    return _common.main(build_parser, prepare, argv, own_keys=("nightly",))


if __name__ == "__main__":
    sys.exit(main())
