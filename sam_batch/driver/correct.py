"""``sam-batch correct``: re-track a finished dataset's videos from a correction on.

Each line of the prompts file names a ``video_id`` and prompts (the manifest's
format: points/labels, a box or a mask; existing or new object ids) on one frame
``t`` of that video. Frames before ``t`` stay as they are; frames from ``t`` on
are re-tracked with the correction as a conditioning frame, exactly as the
official predictor does after a propagation (``track.correct``). The work starts
from the kept state nearest before ``t`` (``--keep-states``), replaying at most
the frames between without writing them.

A video tracked in parallel segments: the segment ``s`` that owns ``t`` (the
stitcher's rule 8, ``finish.stitch.owned_ranges``) is re-tracked from ``t`` to
its end, from its own kept state (its init state is the sparse pass's seed). The
rows replaced are those of the objects ``s`` tracks on the frames ``s`` owns from
``t`` on. Later segments keep theirs: each was seeded by the sparse pass with the
user's prompts, never by ``s``, so nothing they computed depended on ``s``; a
drift they share needs a correction in them. An object new to the video (no
track yet) has no memory in the later segments: it is tracked on alone from the
end of ``s`` to the video's end, which for that object is the official flow
exactly (SAM 2 tracks objects independently). Without discovery every id is
the user's, pinned by the stitch (its rule 4), so the stitch keeps the ids and
its ownership of frames: re-stitching is rewriting the owned rows and the tracks
table (a new object's sources name the segments it spans). Corrections go
forward in time within a segment; one in an earlier segment may follow.

Order of changes: every check first (unknown video, frame outside it, bad prompts,
a dataset of another model, object groups, discovery); then a pending marker; the
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
from sam_batch.dataset.compact import mask_files
from sam_batch.dataset.corrections import (
    PENDING_FILE,
    correction_state_key,
    move_states,
    staged_complete,
    staging_folder,
    switch_masks,
)
from sam_batch.dataset.layout import (
    JOB_FILE,
    init_state_path,
    probe_path,
    state_path,
    states_folder,
)
from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.retention import KeepStates
from sam_batch.dataset.schema import ORIGIN_PROMPT
from sam_batch.dataset.writer import write_job_file, write_tracks, write_video_row
from sam_batch.errors import ConfigError, PromptError, SamBatchError
from sam_batch.finish.finalize import object_stats
from sam_batch.finish.segments import Segment, frame_owner, owned_ranges
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import SegmentPlan, VideoPlan, plan_video
from sam_batch.plan.corrections import CorrectionRequest
from sam_batch.plan.prompts import Prompt, validate_prompts

#: A state of a chain other than the first (``s001-c...``, ``init-s001``): in a video of one
#: segment, an object group's.
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
    todo = [r for r in requests if not staged_complete(out, r.video_id)]
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
        switch_masks(out, r.video_id, r.frame, r.owned_end, r.owners)
        move_states(out, r.video_id, r.frame, r.segment, chunks, kept)
        objects = _write_tracks(out, r)
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


def _write_tracks(out: Location, r: CorrectionRequest) -> int:
    """The tracks table from the switched masks; a track keeps its origin and sources (a
    segmented video's stitch), a new one is the correction's prompt in its segment on."""
    old = {row["obj_id"]: row for row in
           Dataset(out.url, out.storage_options).tracks(r.video_id).to_pylist()}
    segments = sorted({o[2] for o in r.owners})
    stats = object_stats(out, r.video_id)
    write_tracks(out, r.video_id, [
        {**old.get(obj_id, {"origin": ORIGIN_PROMPT,
                            "sources": [f"{s}:{obj_id}" for s in segments]}),
         "video_id": r.video_id, "obj_id": obj_id, "first_frame": st.first_frame,
         "last_frame": st.last_frame, "frames_present": st.frames_present}
        for obj_id, st in sorted(stats.items())])
    return len(stats)


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
        raise ConfigError(f"video {video_id!r}: corrections of a dataset made with discovery "
                          "are not supported (discovered ids are stitched, not the user's); "
                          "re-run the job with the correction as a manifest prompt")
    states = out.list(states_folder(video_id), ".state")
    plan = _segment_plan(out, config, video_id, info.num_frames)
    if len(plan.segments) == 1 and any(_OTHER_CHAIN.search(p.rsplit("/", 1)[-1])
                                       for p in states):
        raise ConfigError(f"video {video_id!r} was tracked in object groups "
                          "(--objects-per-worker); corrections are not supported there yet: "
                          "re-run the job without --objects-per-worker to correct it")
    bounds = [Segment(s.index, s.start, s.end) for s in plan.segments]
    owned = owned_ranges(bounds)
    seg = plan.segments[frame_owner(bounds, t)]
    before = [c["frame"] for c in job.get("corrections", [])
              if c["video_id"] == video_id and c.get("segment", 0) == seg.index]
    if before and t < max(before):
        raise PromptError(f"video {video_id!r}: frame {t} lies before the earlier correction "
                          f"on frame {max(before)}; corrections go forward in time")
    start, path = _start_state(states, video_id, seg, t, before)
    first = next(i for i, c in enumerate(seg.chunks) if c.start <= t < c.end)
    todo = tuple(replace(c, start=t) if i == first else c
                 for i, c in enumerate(seg.chunks) if i >= first)
    owners = tuple((max(lo, c.start, t), min(hi, c.end), s.index, c.chunk_idx)
                   for s, (lo, hi) in zip(plan.segments, owned, strict=True) for c in s.chunks
                   if max(lo, c.start, t) < min(hi, c.end))
    known = set(ds.tracks(video_id)["obj_id"].to_pylist())
    tail_ids = tuple(sorted({p.obj_id for p in prompts} - known))
    step = config.chunk_frames
    tail = tuple((f, min(f + step, info.num_frames)) for f in range(seg.end, info.num_frames, step))
    return CorrectionRequest(video_id, info, t, tuple(prompts), path, start, todo, seg.index,
                             owned[seg.index][1], owners, tail, tail_ids)


def _segment_plan(out: Location, config: JobConfig, video_id: str, num_frames: int) -> VideoPlan:
    """The video's plan as its job ran it: the segment count is read off its mask files
    (``segments: auto`` depended on the cluster and the videos of that run)."""
    files = mask_files(out, video_id)
    keys = set(files.parts) | files.covered
    count = max((s for s, _ in keys), default=0) + 1
    plan = plan_video(video_id, num_frames, config.chunk_frames, count, config.overlap)
    planned = {(c.segment, c.chunk_idx) for c in plan.chunks}
    if len(plan.segments) != count or not keys <= planned:
        raise ConfigError(f"video {video_id!r}: its mask files do not match the job's plan "
                          f"({count} segments of chunk_frames {config.chunk_frames}); was the "
                          "dataset changed by hand?")
    return plan


def _start_state(states: list[str], video_id: str, seg: SegmentPlan, t: int,
                 before: list[int]) -> tuple[int, str]:
    """The kept state of ``seg`` nearest before ``t`` that already holds the segment's
    earlier corrections: ``(frame it continues at, path)``."""
    ends = {state_path(video_id, seg.index, c.chunk_idx): c.end for c in seg.chunks}
    init = init_state_path(video_id, seg.index)
    candidates = []
    for p in states:
        fix = correction_state_key(p)
        if fix is not None and fix[0] == seg.index:
            candidates.append((fix[1], p))
        elif p in ends and (not before or ends[p] > max(before)):
            candidates.append((ends[p], p))
        elif p == init and not before:
            candidates.append((seg.start, p))
    usable = [c for c in candidates if c[0] <= t]
    if not usable:
        raise ConfigError(f"video {video_id!r}: no kept state at or before frame {t}")
    return max(usable)
