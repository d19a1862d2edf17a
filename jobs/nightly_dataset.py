"""Ray job: every video under a date-stamped prefix, into a dataset partitioned by date.

    ray job submit --working-dir . -- python jobs/nightly_dataset.py \
        --config jobs/nightly_dataset.yaml --date 2026-11-24

Reads the videos under ``{input_root}/{date}/`` (``*.mp4``, ``*.mov``, ...: the
suffixes ``--videos`` globs take; also in subfolders; any fsspec URL) and writes
``{output_root}/date={date}/``. The date defaults to today (UTC). Submitting the
same night again with the same config resumes it: the dataset there belongs to
the same job, so finished videos are kept and a video in progress continues
after its last committed chunk (the job never overwrites). Videos without
prompts are tracked in discovery mode (``discover`` in the YAML) where this
sam_batch has it.

Video ids are each file's path under the night's folder (``cam1/a.mp4`` ->
``cam1_a.mp4``): a function of the file alone, so a file that arrives later,
even one with the same name in another camera's folder, never renames the
videos already done (ids derived from file names alone would have to be
disambiguated, and would change when it came).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
import yaml

from sam_batch.config import JobConfig
from sam_batch.errors import ConfigError
from sam_batch.media.manifest import VIDEO_SUFFIXES

log = logging.getLogger("sam_batch")
#: The YAML section holding this job's own keys (``input_root``, ``output_root``).
SECTION = "nightly"


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--date", help="YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--input-root", help="prefix holding one folder per date")
    p.add_argument("--output-root", help="dataset root; the night goes to date=YYYY-MM-DD/")
    return p


def night(text: str | None) -> str:
    """The date to process, validated; today (UTC) by default."""
    if text is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"--date must be YYYY-MM-DD, not {text!r}") from None


def night_videos(input_root: str, date: str, storage_options: dict | None = None) -> list[str]:
    """Every video file under ``{input_root}/{date}/``, as URLs, sorted; hidden files skipped."""
    import fsspec

    folder = f"{input_root.rstrip('/')}/{date}"
    fs, path = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    if not fs.exists(path):
        raise ConfigError(f"no input for {date}: {folder} does not exist")
    protocol = folder.split("://")[0] + "://" if "://" in folder else ""
    found = sorted(p for p in fs.find(path) if p.lower().endswith(VIDEO_SUFFIXES)
                   and not posixpath.basename(p).startswith("."))
    return [f"{protocol}{p}" if protocol else p for p in found]


def night_manifest(input_root: str, date: str, urls: list[str]) -> list[dict]:
    """The night's manifest rows: every video with its stable id (see the module doc)."""
    folder = f"{input_root.rstrip('/')}/{date}/"
    root = folder.split("://", 1)[-1]
    rows = []
    for url in urls:
        rel = url.split("://", 1)[-1]
        rel = rel[len(root):] if rel.startswith(root) else posixpath.basename(rel)
        rows.append({"video": url, "video_id": re.sub(r"[^A-Za-z0-9._=+@,-]+", "_", rel)})
    return rows


def write_night_manifest(input_root: str, date: str, rows: list[dict]) -> str:
    """A local JSONL the driver reads; the same path for every submission of a night."""
    digest = hashlib.sha256(f"{input_root}|{date}".encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"sam_batch-nightly-{date}-{digest}.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def partition(output_root: str, date: str) -> str:
    return f"{output_root.rstrip('/')}/date={date}"


def own_keys() -> tuple[str, ...]:
    """YAML keys JobConfig does not take: the job's section, and ``discover`` before it had one."""
    return (SECTION,) + (() if "discover" in JobConfig.field_names() else ("discover",))


def prepare(args: argparse.Namespace, config: JobConfig) -> JobConfig:
    given = [f"--{k}" for k in ("manifest", "videos", "output") if getattr(args, k)]
    if given:
        raise ConfigError(f"{', '.join(given)}: this job takes its videos and output from "
                          "input_root, output_root and the date")
    data = {}
    if args.config:
        import fsspec

        with fsspec.open(args.config, "r") as f:
            data = yaml.safe_load(f) or {}
    roots = data.get(SECTION) or {}
    if "discover" in own_keys() and data.get("discover"):
        log.warning("discover: %s ignored: this sam_batch has no discovery mode; videos "
                    "without prompts will fail", data["discover"])
    input_root = args.input_root or roots.get("input_root")
    output_root = args.output_root or roots.get("output_root")
    if not input_root or not output_root:
        raise ConfigError(f"give input_root and output_root (flags or the YAML's {SECTION}: keys)")
    date = night(args.date)
    urls = night_videos(input_root, date, config.inputs_storage())
    if not urls:
        raise ConfigError(f"no videos under {input_root}/{date}")
    rows = night_manifest(input_root, date, urls)
    config.manifest, config.videos = write_night_manifest(input_root, date, rows), None
    config.output = partition(output_root, date)
    return config


def configure(argv: Sequence[str] | None = None) -> JobConfig:
    """The config a submission with ``argv`` runs, without running it."""
    return _common.configure(build_parser, prepare, argv, own_keys())


def main(argv: Sequence[str] | None = None) -> int:
    return _common.main(build_parser, prepare, argv, own_keys())


if __name__ == "__main__":
    sys.exit(main())
