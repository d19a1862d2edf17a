"""``sam-batch correct``: re-track a finished dataset's videos from a correction on.

Each line of the prompts file names a ``video_id`` and prompts (the manifest's
format: points/labels, a box or a mask; existing or new object ids) on one frame
``t`` of that video. Frames before ``t`` stay as they are; frames from ``t`` on
are re-tracked with the correction as a conditioning frame, exactly as the
official predictor does after a propagation (``track.correct``). The work starts
from the kept state nearest before ``t`` (``--keep-states``), replaying at most
the frames between without writing them.

Order of changes: every check first (unknown video, frame outside it, bad prompts,
a dataset of another model, segmented videos); then a pending marker; the
re-tracking into a staging area; the per-file switch of the masks, the states, the
tracks table; ``_job.json`` with the correction appended to its history; the
marker and the staging area last. Until the switch the previous dataset is
untouched; after a crash, the same command finishes the correction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import fsspec

from sam_batch.config import JobConfig
from sam_batch.dataset.corrections import (
    PENDING_FILE,
    correction_state_frame,
    move_states,
    staged_complete,
    staging_folder,
    switch_masks,
)
from sam_batch.dataset.layout import JOB_FILE, MaskFile, probe_path, states_folder
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.retention import KeepStates
from sam_batch.dataset.writer import write_job_file, write_video_row
from sam_batch.errors import ConfigError, PromptError, SamBatchError
from sam_batch.finish.finalize import finalize_video
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import plan_video
from sam_batch.plan.corrections import CorrectionRequest
from sam_batch.plan.prompts import Prompt, validate_prompts

#: A state of a segment or object group other than the first (``s001-c...``, ``init-s001``).
_OTHER_CHAIN = re.compile(r"^(init-s\d{3}|s(?!000)\d{3}-c)")


@dataclass(frozen=True)
class Corrected:
    video_id: str
    frame: int
    retracked: int
    frames: int
    replayed: int

    def text(self) -> str:
        return (f"{self.video_id}: re-tracked {self.retracked} of {self.frames} frames from "
                f"frame {self.frame} (replayed {self.replayed} frames from a kept state)")


def correct(dataset: str, prompts_url: str, storage_options: dict | None = None,
            input_storage_options: dict | None = None, checkpoint: str | None = None,
            address: str | None = None) -> list[Corrected]:
    out = Location(dataset, storage_options)
    if not out.exists(JOB_FILE):
        raise ConfigError(f"{dataset} holds no complete dataset (no {JOB_FILE}): run or "
                          "resume its job first")
    job = json.loads(out.read(JOB_FILE))
    config = JobConfig.from_dict(job["config"], where=JOB_FILE)
    config = replace(config, output=dataset, storage_options=dict(storage_options or {}),
                     input_storage_options=input_storage_options, address=address,
                     checkpoint=checkpoint or config.checkpoint)
    if checkpoint and job.get("model", {}).get("weights", "").startswith("random"):
        config = replace(config, random_weights=False)
    wanted = _read_prompts(prompts_url, config.inputs_storage())
    ds = Dataset(dataset, config.storage_options)
    requests = [_request(out, ds, config, job, video_id, prompts)
                for video_id, prompts in wanted.items()]
    records = [r.to_record() for r in requests]
    if out.exists(PENDING_FILE):
        pending = json.loads(out.read(PENDING_FILE))
        if pending["corrections"] != records:
            raise ConfigError(f"another correction of this dataset did not finish: run it "
                              f"again first (it is recorded in {PENDING_FILE})")
    else:
        out.write(PENDING_FILE, json.dumps({"corrections": records}, indent=2).encode())
    todo = [r for r in requests
            if not staged_complete(out, r.video_id, [c.chunk_idx for c in r.chunks], r.frame)]
    if todo:
        from sam_batch.runtime.correction import run_corrections

        try:
            run_corrections(config, todo)
        except SamBatchError:
            for r in todo:  # nothing visible changed: leave the dataset as it was
                out.delete(staging_folder(r.video_id))
            out.delete(PENDING_FILE)
            raise
    keep = KeepStates.parse(config.keep_states)
    done = []
    for r in requests:
        chunks = [c.chunk_idx for c in r.chunks]
        kept = [c.chunk_idx for i, c in enumerate(r.chunks)
                if keep.keeps(c.start, c.end, last=i == len(r.chunks) - 1)]
        switch_masks(out, r.video_id, r.frame, chunks)
        move_states(out, r.video_id, r.frame, chunks, kept)
        objects = finalize_video(dataset, config.storage_options, r.video_id, None)
        row = Dataset(dataset, config.storage_options).video(r.video_id)
        write_video_row(out, {**row, "objects": objects})
        done.append(Corrected(r.video_id, r.frame, r.retracked, r.info.num_frames, r.replayed))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history = list(job.get("corrections", []))
    history += [{**rec, "applied_at": now, "frames_retracked": d.retracked,
                 "frames_replayed": d.replayed} for rec, d in zip(records, done, strict=True)]
    write_job_file(out, {**job, "corrections": history})
    for r in requests:
        out.delete(staging_folder(r.video_id))
    out.delete(PENDING_FILE)
    return done


def _read_prompts(url: str, storage_options: dict) -> dict[str, list[Prompt]]:
    try:
        with fsspec.open(url, "r", **storage_options) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"prompts file {url} does not exist") from None
    wanted: dict[str, list[Prompt]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video_id = row["video_id"]
            prompts = [Prompt.from_dict(p) for p in row["prompts"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise PromptError(f"{url} line {n}: expected {{\"video_id\": ..., \"prompts\": "
                              f"[...]}} ({type(e).__name__}: {e})") from None
        except PromptError as e:
            raise PromptError(f"{url} line {n}: {e}") from None
        wanted.setdefault(str(video_id), []).extend(prompts)
    if not wanted:
        raise PromptError(f"{url} holds no corrections")
    return wanted


def _request(out: Location, ds: Dataset, config: JobConfig, job: dict, video_id: str,
             prompts: list[Prompt]) -> CorrectionRequest:
    try:
        row = ds.video(video_id) if out.exists(probe_path(video_id)) else None
    except SamBatchError:
        row = None
    if row is None or row["status"] != "ok":
        raise ConfigError(f"video {video_id!r} is not a finished video of the dataset "
                          f"{out.url}")
    info = VideoInfo.from_dict(json.loads(out.read(probe_path(video_id))))
    try:
        prompts = validate_prompts(prompts, info.num_frames, info.width, info.height)
    except PromptError as e:
        raise PromptError(f"video {video_id!r}: {e}") from None
    frames = sorted({p.frame for p in prompts})
    if len(frames) > 1:
        raise PromptError(f"video {video_id!r}: prompts on frames {frames}; a correction lies "
                          "on one frame (run correct once per frame, earliest first)")
    t = frames[0]
    if config.discover not in (None, "off"):
        raise ConfigError("corrections of a dataset made with discovery are not supported")
    states = out.list(states_folder(video_id), ".state")
    if any(MaskFile.parse(p).segment for p in ds.mask_parts(video_id)) or any(
            _OTHER_CHAIN.search(p.rsplit("/", 1)[-1]) for p in states):
        raise ConfigError(f"video {video_id!r} was tracked in several segments or object "
                          "groups; corrections support videos tracked as one chain")
    before = [c["frame"] for c in job.get("corrections", []) if c["video_id"] == video_id]
    if before and t < max(before):
        raise PromptError(f"video {video_id!r}: frame {t} lies before the earlier correction "
                          f"on frame {max(before)}; corrections go forward in time")
    plan = plan_video(video_id, info.num_frames, config.chunk_frames)
    chunks = plan.segments[0].chunks
    ends = {f"{states_folder(video_id)}/s000-c{c.chunk_idx:05d}.state": c.end for c in chunks}
    candidates = []  # (frame the state continues at, path)
    for p in states:
        fix = correction_state_frame(p)
        if fix is not None:
            candidates.append((fix, p))
        elif p in ends and (not before or ends[p] > max(before)):
            candidates.append((ends[p], p))
        elif p.endswith("/init.state") and not before:
            candidates.append((0, p))
    usable = [c for c in candidates if c[0] <= t]
    if not usable:
        raise ConfigError(f"video {video_id!r}: no kept state at or before frame {t}")
    start, path = max(usable)
    first = next(i for i, c in enumerate(chunks) if c.start <= t < c.end)
    todo = tuple(replace(c, start=t) if i == first else c
                 for i, c in enumerate(chunks) if i >= first)
    return CorrectionRequest(video_id, info, t, tuple(prompts), path, start, todo)
