"""The job driver: probe → plan → schedule → track → write → finish → commit.

``run(config)`` is ``sam-batch run`` as a function. It reads the videos to do,
opens (or resumes) the output dataset, starts one tracker actor per worker,
lets the scheduler run every video's chunks, and commits ``_job.json`` last.
Running the same job again on the same output resumes it: finished videos are
skipped, a video in progress continues after its last committed chunk.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from sam_batch.config import JobConfig, Redactor
from sam_batch.dataset.compact import committed_chunks
from sam_batch.dataset.layout import (
    JOB_FILE,
    JOB_PATHS,
    RUN_FILE,
    STAGING_DIR,
    MaskFile,
    init_state_path,
    masks_folder,
    probe_path,
    state_path,
    states_folder,
    video_paths,
)
from sam_batch.dataset.retention import KeepStates
from sam_batch.dataset.schema import DATASET_FORMAT_VERSION, STATUS_FAILED, STATUS_OK
from sam_batch.dataset.writer import ObjectStats, write_job_file, write_video_row
from sam_batch.driver.progress import Progress
from sam_batch.errors import ConfigError, SamBatchError, StateMismatchError
from sam_batch.finish.complete import complete_video
from sam_batch.finish.finalize import StagedSegment, finalize_stitched, finalize_video, merge_stats
from sam_batch.finish.groups import finalize_groups
from sam_batch.media.manifest import VideoEntry, expand_videos, read_manifest
from sam_batch.media.probe_cache import probe_cached
from sam_batch.media.storage import Location, with_retries
from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import (
    SPARSE,
    ChunkSpec,
    SegmentPlan,
    VideoPlan,
    auto_segments,
    plan_video,
    sparse_indices,
    sparse_plan,
)
from sam_batch.plan.object_groups import group_prompts, group_segment
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.plan.tasks import ChunkResult, VideoTask
from sam_batch.plan.track_meta import read_meta
from sam_batch.runtime import remote
from sam_batch.runtime.pool import ActorPool
from sam_batch.runtime.resources import worker_resources
from sam_batch.runtime.scheduler import START, Chain, Scheduler, VideoRun
from sam_batch.runtime.session import ray_session

log = logging.getLogger("sam_batch")


@dataclass
class VideoJob:
    """What the driver knows of one video beyond the scheduler's bookkeeping."""

    entry: VideoEntry
    info: VideoInfo | None = None
    plan: VideoPlan | None = None
    fingerprint: str = ""
    objects: int | None = None
    resumed: bool = False
    staged: bool = False
    #: Object groups tracked as chains of their own (0: the objects are not split).
    groups: int = 0
    #: Per segment: the task waiting for its seeds (from the sparse pass).
    waiting: dict[int, VideoTask] = field(default_factory=dict)
    #: Object stats of the chunks this run tracked, by chunk (unstaged videos).
    chunk_stats: dict[int, dict[int, ObjectStats]] = field(default_factory=dict)


@dataclass
class JobSummary:
    output: str
    videos_ok: int
    videos_failed: int
    frames: int
    chunks: int
    seconds: float
    failed: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.videos_failed == 0

    def text(self) -> str:
        lines = [
            f"{self.videos_ok} video(s) ok, {self.videos_failed} failed, {self.frames} frames "
            f"tracked in {self.chunks} chunks, {self.seconds:.1f} s -> {self.output}"
        ]
        lines += [f"  failed {f['video_id']}: {f['error']}" for f in self.failed]
        return "\n".join(lines)


def run(config: JobConfig, progress: Progress | None = None) -> JobSummary:
    config.validate()
    config = with_storage_defaults(config)
    redactor = Redactor(config.secrets())
    started = _now()
    t0 = time.monotonic()

    # 1. What to do: manifest rows or globbed URLs, each checked up front.
    entries = video_entries(config)
    # 2. Where to: a fresh dataset, or this same job resumed.
    out = Location(config.output, config.storage_options)
    _open_output(out, config, redactor)

    videos = [VideoRun(e.video_id or f"row-{e.row}", VideoJob(e)) for e in entries]
    progress = progress or Progress(config.progress)
    with ray_session(config.address, num_gpus=0 if config.device == "cpu" else None):
        workers, gpus, cpus = worker_resources(config)
        pool = ActorPool(workers, gpus, cpus, _worker_kwargs(config, cpus))
        try:
            scheduler = Scheduler(pool, config.max_active_videos or 2 * workers + 2,
                                  config.max_retries, redactor.scrub, progress)
            hooks = _VideoHooks(config, out, redactor, workers, len(videos))
            # 3-6. Probe, plan, track every chunk, write parts, finish each video.
            scheduler.run(videos, hooks.prepare, hooks.prepared, hooks.finish, hooks.finished,
                          hooks.failed, hooks.chunk_done, hooks.reload)
            identity = pool.wait_ready()  # the model _job.json records, tracked with or not
        finally:
            pool.shutdown()
            progress.close()

    if not out.list(STAGING_DIR, ".parquet"):
        out.delete(STAGING_DIR)  # every video stitched (or failed): nothing staged is left
    # 7. Commit: _job.json last; its presence means the job completed.
    summary = JobSummary(
        output=config.output,
        videos_ok=sum(v.status == "done" for v in videos),
        videos_failed=sum(v.status == "failed" for v in videos),
        frames=sum(v.frames_tracked for v in videos),
        chunks=sum(v.chunks_done for v in videos),
        seconds=time.monotonic() - t0,
        failed=[{"video_id": v.video_id, "error": v.error} for v in videos
                if v.status == "failed"],
    )
    write_job_file(out, {
        "format_version": DATASET_FORMAT_VERSION,
        "sam_batch_version": metadata.version("sam-batch"),
        "versions": _versions(),
        "model": identity.to_dict(),
        "config": config.redacted(),
        "fingerprint": config.fingerprint(),
        "started_at": started,
        "finished_at": _now(),
        "counts": {
            "videos": len(videos), "videos_ok": summary.videos_ok,
            "videos_failed": summary.videos_failed, "frames_tracked": summary.frames,
            "chunks": summary.chunks,
        },
        "failed": summary.failed,
    })
    return summary


class _VideoHooks:
    """The per-video decisions the scheduler asks the job for."""

    def __init__(self, config: JobConfig, out: Location, redactor: Redactor, workers: int = 1,
                 num_videos: int = 1):
        self.config = config
        self.out = out
        self.redactor = redactor
        self.workers = workers
        self.num_videos = num_videos
        self.discovery = config.discovery()
        self._probe = remote.light_task(probe_cached)
        self._complete = remote.light_task(complete_video)
        self.keep = KeepStates.parse(config.keep_states)

    def prepare(self, video: VideoRun) -> remote.ObjectRef | None:
        job: VideoJob = video.payload
        if job.entry.error:
            video.status, video.error = "failed", self.redactor.scrub(job.entry.error)
            return None
        return self._probe.remote(job.entry.video, self.config.inputs_storage(),
                                  self.config.output, self.config.storage_options,
                                  probe_path(video.video_id))

    def prepared(self, video: VideoRun, info_dict: dict) -> None:
        job: VideoJob = video.payload
        job.info = info = VideoInfo.from_dict(info_dict)
        config = self.config
        try:
            prompts = validate_prompts(job.entry.prompts, info.num_frames, info.width,
                                       info.height)
            if not prompts and self.discovery is None:
                raise SamBatchError(
                    "no prompts: give prompts for this video in the manifest (points, a box "
                    "or a mask for at least one object), or turn on automatic discovery "
                    "(--discover every:K)"
                )
            job.plan = plan_for(config, video.video_id, info.num_frames, self.workers,
                                self.num_videos)
        except SamBatchError as e:
            video.status, video.error = "failed", self.redactor.scrub(f"{job.entry.video}: {e}")
            return
        plan = job.plan
        job.staged = len(plan.segments) > 1 or self.discovery is not None
        groups = group_prompts(prompts, config.objects_per_worker or len(prompts) or 1)
        if len(plan.segments) == 1 and len(groups) > 1:
            job.staged, job.groups = True, len(groups)
        job.fingerprint = _video_fingerprint(config, prompts, info, len(plan.segments),
                                             job.groups)
        base = VideoTask(video.video_id, job.entry.video, info, (), job.fingerprint,
                         staged=job.staged,
                         first_free_id=max((p.obj_id for p in prompts), default=0) + 1)
        single = len(plan.segments) == 1
        for g, own in enumerate(groups if job.groups else ()):  # one chain per object group
            track_from = min(p.frame for p in prompts)
            own_segment = group_segment(plan.segments[0], g)
            task = replace(base, prompts=own, segment=g, track_from=track_from,
                           drop_states=self._drops(own_segment))
            video.chains.append(Chain(own_segment, task_ref=remote.put(task)))
        for seg in () if job.groups else plan.segments:
            own = tuple(p for p in prompts if single or seg.start <= p.frame < seg.end)
            task = replace(base, prompts=own, segment=seg.index, start_frame=seg.start,
                           drop_states=self._drops(seg))
            chain = Chain(seg)
            if seg.seeded and prompts and config.sparse_step:
                job.waiting[seg.index] = task  # its seeds come from the sparse pass
            else:
                chain.task_ref = remote.put(task)
            video.chains.append(chain)
        self._resume(video, job)
        if job.waiting:
            video.chains.insert(0, self._sparse_chain(video, job, base, prompts))
        video.status = "running"

    def _sparse_chain(self, video: VideoRun, job: VideoJob, base: VideoTask,
                      prompts: list[Prompt]) -> Chain:
        """Track every ``sparse_step``-th frame to seed the segments that wait.

        The pass stops at the last sample before the last segment start: a segment is
        seeded with the memory *before* its first frame, so nothing later is needed.
        """
        assert job.plan is not None and job.info is not None
        starts = [s.start for s in job.plan.segments if s.index in job.waiting]
        indices = sparse_indices(job.info.num_frames, self.config.sparse_step,
                                 [p.frame for p in prompts], starts)
        local = {f: i for i, f in enumerate(indices)}
        task = replace(base, segment=SPARSE, frame_indices=tuple(indices),
                       seed_frames=tuple(starts),
                       prompts=tuple(replace(p, frame=local[p.frame]) for p in prompts
                                     if p.frame in local))
        needed = max(1, bisect.bisect_left(indices, max(starts)))
        seg = sparse_plan(video.video_id, needed, self.config.chunk_frames)
        return Chain(seg, task_ref=remote.put(task))

    def chunk_done(self, video: VideoRun, chain: Chain, result: ChunkResult) -> None:
        """A sparse-pass chunk: hand its memory states to the segments they seed."""
        job: VideoJob = video.payload
        if not job.staged:
            job.chunk_stats[result.spec.chunk_idx] = result.stats
        if job.groups and chain.segment.index > 0:
            video.frames_tracked -= result.frames_tracked  # the same frames, another group
        if chain.segment.index != SPARSE or job.plan is None or job.info is None:
            return
        last = result.spec == chain.chunks[-1]
        found = result.seeds or {}
        for seg in job.plan.segments:
            task = job.waiting.get(seg.index)
            if task is None or (seg.start not in found and not last):
                continue
            del job.waiting[seg.index]  # (unseeded, were a start ever missed: its own prompts)
            next(c for c in video.chains if c.segment is seg).task_ref = remote.put(
                replace(task, seed_state=found.get(seg.start)))

    def _resume(self, video: VideoRun, job: VideoJob) -> None:
        """Continue each segment after its last committed chunk, if begun before.

        Two listings tell what is committed and which states are kept; the one
        state read per segment is the checkpoint the segment continues from.
        """
        first = init_state_path(video.video_id)
        if not self.out.exists(first):
            return
        first_data = self.out.read(first)
        try:
            fingerprint = read_meta(first_data).fingerprint
        except StateMismatchError:  # a state of an older sam_batch
            fingerprint = None
        if fingerprint != job.fingerprint:
            _delete_video(self.out, video.video_id)  # other prompts or settings: start over
            return
        job.resumed = True
        # (segment, chunk) of the committed chunks: the staged parts, or (unstaged) the
        # parts and the compacted files' chunks. A state is written before its part.
        staged = self.out.list(masks_folder(video.video_id, staged=True), ".parquet")
        committed = ({MaskFile.parse(p).key for p in staged}
                     if job.staged else committed_chunks(self.out, video.video_id))
        states = set(self.out.list(states_folder(video.video_id), ".state"))
        for chain in video.chains:
            init = init_state_path(video.video_id, chain.segment.index)
            if init != first and not self.out.exists(init):
                continue
            pos = 0
            while (pos < len(chain.chunks)
                   and (chain.chunks[pos].segment, chain.chunks[pos].chunk_idx) in committed):
                pos += 1
            # Go on from the newest state kept at or before there: chunks between are
            # tracked again (to the same bytes) where their states were not kept.
            while 0 < pos < len(chain.chunks) and _state_of(chain.chunks[pos - 1]) not in states:
                pos -= 1
            video.chunks_done += pos
            chain.next = pos
            if chain.task_ref is None:  # its seeds are in its init state already
                chain.task_ref = remote.put(job.waiting.pop(chain.segment.index))
            if pos == len(chain.chunks):
                chain.done = True
                continue
            if pos:
                done = chain.chunks[pos - 1]
                data = self.out.read(state_path(done.video_id, done.segment, done.chunk_idx))
            else:
                data = first_data if init == first else self.out.read(init)
            chain.states[pos] = remote.put(data)

    def _keeps(self, chain: Chain, pos: int) -> bool:
        """Whether the state after the chain's chunk ``pos`` is kept once the video is done."""
        spec = chain.chunks[pos]
        return self.keep.keeps(spec.start, spec.end, last=pos == len(chain.chunks) - 1)

    def _drops(self, segment: SegmentPlan) -> frozenset[int]:
        """The chunks of a segment whose states are not kept: its workers delete them
        as they go (``VideoTask.drop_states``), finishing deletes what is left."""
        last = len(segment.chunks) - 1
        return frozenset(c.chunk_idx for i, c in enumerate(segment.chunks)
                         if not self.keep.keeps(c.start, c.end, last=i == last))

    def reload(self, video: VideoRun, chain: Chain, pos: int) -> None:
        """The input state of the chain's chunk ``pos``, read back from its checkpoint for a
        retry (its reference may have been lost with its node), as resume reads it. Workers
        delete a state only two chunks on, so it is there. A sparse pass keeps no
        checkpoints: it runs again from its start."""
        if chain.segment.index == SPARSE:
            chain.next, chain.states = START, {}
            return
        path = (_state_of(chain.chunks[pos - 1]) if pos
                else init_state_path(video.video_id, chain.segment.index))
        chain.states[pos] = remote.put(self.out.read(path))

    def _dropped_states(self, video: VideoRun) -> list[str]:
        return [_state_of(c) for chain in video.chains if chain.segment.index != SPARSE
                for pos, c in enumerate(chain.chunks) if not self._keeps(chain, pos)]

    def finish(self, video: VideoRun) -> remote.ObjectRef | int:
        """One light task: the tracks table (from every chunk's stats when this run saw
        them, else read back from the committed parts, or by stitching the segments),
        then compaction of the masks and pruning of the states not kept."""
        job: VideoJob = video.payload
        assert job.plan is not None and job.info is not None
        where = (self.config.output, self.config.storage_options, video.video_id)
        drop = self._dropped_states(video)
        if job.groups:
            return self._complete.remote(finalize_groups, *where, job.groups, drop_states=drop)
        if not job.staged:
            chunks = job.plan.segments[0].chunks
            stats = None
            if all(c.chunk_idx in job.chunk_stats for c in chunks):
                stats = merge_stats(job.chunk_stats[c.chunk_idx] for c in chunks)
            return self._complete.remote(finalize_video, *where, stats, drop_states=drop)
        segments = [StagedSegment(s.index, s.start, s.end,
                                  state_path(video.video_id, s.index, s.chunks[-1].chunk_idx))
                    for s in job.plan.segments]
        return self._complete.remote(finalize_stitched, *where, segments, job.info.height,
                                     job.info.width, self.config.stitch_iou, drop_states=drop)

    def finished(self, video: VideoRun, objects: int) -> None:
        job: VideoJob = video.payload
        job.objects = objects
        self._video_row(video, STATUS_OK)

    def failed(self, video: VideoRun) -> None:
        _delete_video(self.out, video.video_id)
        self._video_row(video, STATUS_FAILED)

    def _video_row(self, video: VideoRun, status: str) -> None:
        job: VideoJob = video.payload
        info = job.info
        duplicate = job.entry.error is not None and "duplicate video_id" in job.entry.error
        write_video_row(self.out, {
            "video_id": video.video_id,
            "video": self.redactor.scrub(job.entry.video),
            "status": status,
            "error": video.error,
            "frames": info.num_frames if info else None,
            "fps": info.fps if info else None,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "objects": job.objects,
            "chunks": video.num_chunks or None,
            "started_at": _iso(video.started),
            "finished_at": _iso(time.time()),
            "wall_s": time.time() - video.started if video.started else None,
        }, job.entry.row if duplicate else None)


def plan_for(config: JobConfig, video_id: str, num_frames: int, workers: int,
             num_videos: int) -> VideoPlan:
    """The video's segments and chunks under this config (``segments: auto`` resolved)."""
    segments = config.segments
    if segments == "auto":
        segments = auto_segments(num_frames, config.chunk_frames, workers, num_videos)
    return plan_video(video_id, num_frames, config.chunk_frames, int(segments), config.overlap)


def with_storage_defaults(config: JobConfig) -> JobConfig:
    """The config with botocore's retries on for the storage options of S3 URLs, unless
    set: a 503 or a dropped connection is retried where the library retries, not here.
    Inputs that share the output's options get them too."""
    inputs = [config.manifest, *config.videos, config.checkpoint]
    if config.input_storage_options is None:
        return replace(config, storage_options=with_retries([config.output, *inputs],
                                                            config.storage_options))
    return replace(config, storage_options=with_retries([config.output], config.storage_options),
                   input_storage_options=with_retries(inputs, config.input_storage_options))


def video_entries(config: JobConfig) -> list[VideoEntry]:
    """The job's videos, from its manifest or its globbed URLs, each checked up front."""
    if config.manifest:
        return read_manifest(config.manifest, config.inputs_storage())
    return expand_videos(config.videos, config.inputs_storage())


def _open_output(out: Location, config: JobConfig, redactor: Redactor) -> None:
    """Start a dataset, or check that the one there is this job's, to resume it."""
    if config.overwrite:
        for path in JOB_PATHS:
            out.delete(path)
    if out.exists(RUN_FILE):
        before = json.loads(out.read(RUN_FILE))
        if before.get("fingerprint") != config.fingerprint():
            raise ConfigError(
                f"{out.url} holds a job with other model or chunking settings; use another "
                "output, or --overwrite to replace it"
            )
        if out.exists(JOB_FILE):
            out.delete(JOB_FILE)  # the job is running again: not complete until it commits
        log.info("resuming the job in %s", redactor.scrub(out.url))
        return
    out.write(RUN_FILE, json.dumps({
        "fingerprint": config.fingerprint(), "config": config.redacted(), "started_at": _now(),
    }, indent=2).encode())


def _state_of(spec: ChunkSpec) -> str:
    return state_path(spec.video_id, spec.segment, spec.chunk_idx)


def _delete_video(out: Location, video_id: str) -> None:
    for path in video_paths(video_id):
        out.delete(path)


def _video_fingerprint(config: JobConfig, prompts: list, info: VideoInfo, segments: int,
                       groups: int = 0) -> str:
    parts = [config.fingerprint(), [p.to_dict() for p in prompts], info.num_frames, segments]
    blob = json.dumps([*parts, groups] if groups else parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _worker_kwargs(config: JobConfig, cpus: float) -> dict[str, Any]:
    return {
        "model": config.model_spec(),
        "output_url": config.output,
        "storage_options": config.storage_options,
        "input_storage_options": config.inputs_storage(),
        "threads": max(1, int(cpus)),
        "discovery": config.discovery(),
    }


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("sam2", "torch", "ray", "pyarrow", "av", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
        timespec="seconds")
