"""Which videos to process and with which prompts: manifests and globs.

A manifest is JSONL, CSV or Parquet with one video per row: ``video`` (URL),
optional ``video_id`` and ``prompts`` (a list, or its JSON text in CSV). Every
row is checked up front. A row that cannot be used becomes an entry with an
``error`` naming the row and the field; the job records it as a failed video and
goes on with the others. Only a manifest that cannot be read at all stops a job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec

from sam_batch.errors import ManifestError, PromptError
from sam_batch.plan.prompts import Prompt

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoEntry:
    """One requested video; ``error`` set when its row is unusable."""

    row: int  # 1-based row (line) of the manifest, or position in the glob expansion
    video: str
    video_id: str
    prompts: tuple[Prompt, ...] = ()
    error: str | None = None


def read_manifest(url: str, storage_options: dict | None = None) -> list[VideoEntry]:
    """Read and check a manifest; ``ManifestError`` only if the file is unreadable."""
    rows = _read_rows(url, storage_options or {})
    return _finish(
        [_entry(i, row, f"manifest {url} row {i}") for i, row in enumerate(rows, start=1)]
    )


def expand_videos(patterns: Iterable[str], storage_options: dict | None = None
                  ) -> list[VideoEntry]:
    """Videos named by URLs or globs (``s3://b/2026-11-25/*.mp4``); no prompts."""
    urls: list[str] = []
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            urls.append(pattern)
            continue
        fs, path = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
        if fs.isfile(path):  # a file whose name holds *, ? or [ is that file, not a glob
            urls.append(pattern)
            continue
        protocol = pattern.split("://", 1)[0] + "://" if "://" in pattern else ""
        matches = sorted(
            m for m in fs.glob(fsspec.core.strip_protocol(pattern))
            if m.lower().endswith(VIDEO_SUFFIXES)
        )
        if not matches:
            raise ManifestError(f"no video files match {pattern}")
        urls += [protocol + m if protocol and not m.startswith(protocol) else m for m in matches]
    return _finish([VideoEntry(i, u, "") for i, u in enumerate(urls, start=1)])


def _read_rows(url: str, storage_options: dict) -> list[dict]:
    try:
        with fsspec.open(url, "rb", **storage_options) as f:
            data = f.read()
    except FileNotFoundError as e:
        raise ManifestError(f"manifest {url} does not exist") from e
    suffix = posixpath.splitext(url.split("?", 1)[0])[1].lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            rows = []
            for n, line in enumerate(data.decode().splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ManifestError(f"manifest {url} line {n} is not JSON: {e}") from e
            return rows
        if suffix == ".csv":
            return list(csv.DictReader(io.StringIO(data.decode())))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data)).to_pylist()
    except UnicodeDecodeError as e:
        raise ManifestError(f"manifest {url} is not text") from e
    raise ManifestError(f"manifest {url}: use a .jsonl, .csv or .parquet file")


def _entry(row: int, data: object, where: str) -> VideoEntry:
    if not isinstance(data, dict):
        return VideoEntry(row, "", "", error=f"{where}: expected an object with a 'video' field")
    video = data.get("video")
    video_id = data.get("video_id") or ""
    if not isinstance(video, str) or not video.strip():
        return VideoEntry(row, "", str(video_id), error=f"{where}: field 'video' is missing")
    if not isinstance(video_id, str):
        return VideoEntry(row, video, str(video_id),
                          error=f"{where}: field 'video_id' must be a string")
    raw = data.get("prompts")
    try:
        prompts = tuple(Prompt.from_dict(p) for p in _prompt_list(raw))
    except (PromptError, ValueError) as e:
        return VideoEntry(row, video, video_id, error=f"{where}: field 'prompts': {e}")
    return VideoEntry(row, video.strip(), video_id, prompts)


def _prompt_list(raw: object) -> list:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e})") from e
    if not isinstance(raw, list):
        raise ValueError("must be a list of prompts")
    return [{k: v for k, v in p.items() if v is not None} if isinstance(p, dict) else p
            for p in raw]


def _finish(entries: list[VideoEntry]) -> list[VideoEntry]:
    """Derive missing ids from file names (a URL hash breaks ties) and fail every
    row of an id given twice: guessing which prompts belong to which would be worse."""
    derived = [e.video_id or _id_from_url(e.video) for e in entries]
    stems = Counter(d for e, d in zip(entries, derived, strict=True) if not e.video_id)
    given = Counter(e.video_id for e in entries if e.video_id)
    ids = []
    for e, d in zip(entries, derived, strict=True):
        if not e.video_id and (stems[d] > 1 or d in given):
            d = f"{d}-{hashlib.sha1(e.video.encode()).hexdigest()[:8]}"
        ids.append(d)
    counts = Counter(ids)
    out = []
    for e, vid in zip(entries, ids, strict=True):
        error = e.error
        if error is None and counts[vid] > 1:
            rows = [str(x.row) for x, v in zip(entries, ids, strict=True) if v == vid]
            error = f"row {e.row}: duplicate video_id {vid!r} (rows {', '.join(rows)})"
        out.append(VideoEntry(e.row, e.video, vid, e.prompts, error))
    return out


def _id_from_url(url: str) -> str:
    path = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    stem = posixpath.splitext(posixpath.basename(path))[0] or "video"
    return re.sub(r"[^A-Za-z0-9._=+@,-]+", "_", stem)
