"""What the job decides per video: its chains, where they resume, how it finishes.

``TrackingJob`` answers the scheduler (``runtime.scheduler.Job``) with plain
values: the chains of a probed video as ``ChainStart`` (segment, task, resume
position, the state bytes to go on from), the tasks a sparse pass's seeds
release, the checkpoint a retried chunk reads back, and the light task that
finalises a video. Where each chain stands once it runs is the scheduler's.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sam_batch.config import JobConfig, Redactor
from sam_batch.dataset.compact import committed_chunks
from sam_batch.dataset.layout import (
    MaskFile,
    init_state_path,
    masks_folder,
    probe_path,
    state_path,
    states_folder,
    video_paths,
)
from sam_batch.dataset.retention import KeepStates
from sam_batch.dataset.schema import STATUS_FAILED, STATUS_OK
from sam_batch.dataset.writer import ObjectStats, write_video_row
from sam_batch.driver.inputs import plan_for
from sam_batch.errors import SamBatchError, StateMismatchError
from sam_batch.finish.complete import complete_video
from sam_batch.finish.finalize import StagedSegment, finalize_stitched, finalize_video, merge_stats
from sam_batch.finish.groups import finalize_groups
from sam_batch.media.manifest import VideoEntry
from sam_batch.media.probe_cache import probe_cached
from sam_batch.media.storage import Location
from sam_batch.media.video import VideoInfo
from sam_batch.plan.chunks import (
    SPARSE,
    ChunkSpec,
    SegmentPlan,
    VideoPlan,
    sparse_indices,
    sparse_plan,
)
from sam_batch.plan.object_groups import group_prompts, group_segment
from sam_batch.plan.prompts import Prompt, validate_prompts
from sam_batch.plan.tasks import ChunkResult, VideoTask
from sam_batch.plan.track_meta import read_meta
from sam_batch.runtime import remote
from sam_batch.runtime.chains import ChainStart, VideoRun


@dataclass
class VideoJob:
    """What the job knows of one video beyond the scheduler's bookkeeping."""

    entry: VideoEntry
    info: VideoInfo | None = None
    plan: VideoPlan | None = None
    #: The chains' segments: the plan's, one per object group, or a sparse pass first.
    segments: list[SegmentPlan] = field(default_factory=list)
    fingerprint: str = ""
    objects: int | None = None
    staged: bool = False
    #: Object groups tracked as chains of their own (0: the objects are not split).
    groups: int = 0
    #: Per segment: the task waiting for its seeds (from the sparse pass).
    waiting: dict[int, VideoTask] = field(default_factory=dict)
    #: Object stats of the chunks this run tracked, by chunk (unstaged videos).
    chunk_stats: dict[int, dict[int, ObjectStats]] = field(default_factory=dict)


class TrackingJob:
    """The scheduler's ``Job`` for ``sam-batch run``: one ``VideoJob`` per video run,
    dropped once the video is done or failed."""

    def __init__(self, config: JobConfig, out: Location, redactor: Redactor,
                 videos: dict[VideoRun, VideoEntry], workers: int = 1):
        self.config = config
        self.out = out
        self.redactor = redactor
        self.workers = workers
        self.num_videos = len(videos)
        self.jobs = {video: VideoJob(entry) for video, entry in videos.items()}
        self.discovery = config.discovery()
        self._probe = remote.light_task(probe_cached)
        self._complete = remote.light_task(complete_video)
        self.keep = KeepStates.parse(config.keep_states)

    def prepare(self, video: VideoRun) -> remote.ObjectRef:
        entry = self.jobs[video].entry
        if entry.error:
            raise SamBatchError(entry.error)
        return self._probe.remote(entry.video, self.config.inputs_storage(),
                                  self.config.output, self.config.storage_options,
                                  probe_path(video.video_id))

    def prepared(self, video: VideoRun, info_dict: dict) -> list[ChainStart]:
        job = self.jobs[video]
        job.info = info = VideoInfo.from_dict(info_dict)
        try:
            prompts = validate_prompts(job.entry.prompts, info.num_frames, info.width,
                                       info.height)
            if not prompts and self.discovery is None:
                raise SamBatchError(
                    "no prompts: give prompts for this video in the manifest (points, a box "
                    "or a mask for at least one object), or turn on automatic discovery "
                    "(--discover every:K)"
                )
            job.plan = plan_for(self.config, video.video_id, info.num_frames, self.workers,
                                self.num_videos)
        except SamBatchError as e:
            raise SamBatchError(f"{job.entry.video}: {e}") from None
        starts = self._chains(video, job, prompts)
        job.segments = [s.segment for s in starts]
        return starts

    def _chains(self, video: VideoRun, job: VideoJob, prompts: list[Prompt]) -> list[ChainStart]:
        """One chain per segment (or per object group), resumed where storage says;
        a sparse pass first when segments wait for its seeds."""
        assert job.plan is not None and job.info is not None
        plan, config = job.plan, self.config
        job.staged = len(plan.segments) > 1 or self.discovery is not None
        groups = group_prompts(prompts, config.objects_per_worker or len(prompts) or 1)
        if len(plan.segments) == 1 and len(groups) > 1:
            job.staged, job.groups = True, len(groups)
        job.fingerprint = _video_fingerprint(config, prompts, job.info, len(plan.segments),
                                             job.groups)
        base = VideoTask(video.video_id, job.entry.video, job.info, (), job.fingerprint,
                         staged=job.staged,
                         first_free_id=max((p.obj_id for p in prompts), default=0) + 1)
        chains: list[tuple[SegmentPlan, VideoTask | None]] = []
        for g, own in enumerate(groups if job.groups else ()):  # one chain per object group
            segment = group_segment(plan.segments[0], g)
            chains.append((segment, replace(base, prompts=own, segment=g,
                                            track_from=min(p.frame for p in prompts),
                                            drop_states=self._drops(segment))))
        single = len(plan.segments) == 1
        for seg in () if job.groups else plan.segments:
            own = tuple(p for p in prompts if single or seg.start <= p.frame < seg.end)
            task = replace(base, prompts=own, segment=seg.index, start_frame=seg.start,
                           drop_states=self._drops(seg))
            if seg.seeded and prompts and config.sparse_step:
                job.waiting[seg.index] = task  # its seeds come from the sparse pass
                task = None
            chains.append((seg, task))
        starts = self._resume(video, job, chains)
        if job.waiting:
            starts.insert(0, self._sparse_chain(video, job, base, prompts))
        return starts

    def _sparse_chain(self, video: VideoRun, job: VideoJob, base: VideoTask,
                      prompts: list[Prompt]) -> ChainStart:
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
        return ChainStart(seg, task, counts_frames=False)

    def chunk_done(self, video: VideoRun, segment_index: int, result: ChunkResult
                   ) -> dict[int, VideoTask]:
        """Keeps an unstaged video's chunk stats; a sparse-pass chunk's memory states
        release the segments they seed."""
        job = self.jobs[video]
        if not job.staged:
            job.chunk_stats[result.spec.chunk_idx] = result.stats
        if segment_index != SPARSE or job.plan is None:
            return {}
        sparse = next(s for s in job.segments if s.index == SPARSE)
        last = result.spec == sparse.chunks[-1]
        found = result.seeds or {}
        released = {}
        for seg in job.plan.segments:
            task = job.waiting.get(seg.index)
            if task is None or (seg.start not in found and not last):
                continue
            del job.waiting[seg.index]  # (unseeded, were a start ever missed: its own prompts)
            released[seg.index] = replace(task, seed_state=found.get(seg.start))
        return released

    def _resume(self, video: VideoRun, job: VideoJob,
                chains: list[tuple[SegmentPlan, VideoTask | None]]) -> list[ChainStart]:
        """Each chain from its start, or, begun before, after its last committed chunk.

        Two listings tell what is committed and which states are kept; the one
        state read per chain is the checkpoint it continues from.
        """
        # A second object group tracks the same frames again: progress counts them once.
        fresh = [ChainStart(seg, task, counts_frames=not (job.groups and seg.index > 0))
                 for seg, task in chains]
        first = init_state_path(video.video_id)
        if not self.out.exists(first):
            return fresh
        first_data = self.out.read(first)
        try:
            fingerprint = read_meta(first_data).fingerprint
        except StateMismatchError:  # a state of an older sam_batch
            fingerprint = None
        if fingerprint != job.fingerprint:
            _delete_video(self.out, video.video_id)  # other prompts or settings: start over
            return fresh
        # (segment, chunk) of the committed chunks: the staged parts, or (unstaged) the
        # parts and the compacted files' chunks. A state is written before its part.
        staged = self.out.list(masks_folder(video.video_id, staged=True), ".parquet")
        committed = ({MaskFile.parse(p).key for p in staged}
                     if job.staged else committed_chunks(self.out, video.video_id))
        states = set(self.out.list(states_folder(video.video_id), ".state"))
        starts = []
        for start in fresh:
            seg = start.segment
            init = init_state_path(video.video_id, seg.index)
            if init != first and not self.out.exists(init):
                starts.append(start)
                continue
            pos = 0
            while pos < len(seg.chunks) and (seg.index, seg.chunks[pos].chunk_idx) in committed:
                pos += 1
            # Go on from the newest state kept at or before there: chunks between are
            # tracked again (to the same bytes) where their states were not kept.
            while 0 < pos < len(seg.chunks) and _state_of(seg.chunks[pos - 1]) not in states:
                pos -= 1
            task = start.task
            if task is None:  # its seeds are in its init state already
                task = job.waiting.pop(seg.index)
            data = None
            if pos == len(seg.chunks):
                pass  # every chunk committed
            elif pos:
                data = self.out.read(_state_of(seg.chunks[pos - 1]))
            else:
                data = first_data if init == first else self.out.read(init)
            starts.append(replace(start, task=task, resume_at=pos, state=data))
        return starts

    def _keeps(self, segment: SegmentPlan, pos: int) -> bool:
        """Whether the state after the segment's chunk ``pos`` is kept once the video is
        done."""
        spec = segment.chunks[pos]
        return self.keep.keeps(spec.start, spec.end, last=pos == len(segment.chunks) - 1)

    def _drops(self, segment: SegmentPlan) -> frozenset[int]:
        """The chunks of a segment whose states are not kept: its workers delete them
        as they go (``VideoTask.drop_states``), finishing deletes what is left."""
        return frozenset(c.chunk_idx for i, c in enumerate(segment.chunks)
                         if not self._keeps(segment, i))

    def reload(self, video: VideoRun, segment_index: int, pos: int) -> bytes | None:
        """The input state of a chain's chunk ``pos``, read back from its checkpoint for a
        retry, as resume reads it. Workers delete a state only two chunks on, so it is
        there. A sparse pass keeps no checkpoints: it runs again from its start."""
        if segment_index == SPARSE:
            return None
        segment = next(s for s in self.jobs[video].segments if s.index == segment_index)
        path = (_state_of(segment.chunks[pos - 1]) if pos > 0
                else init_state_path(video.video_id, segment_index))
        return self.out.read(path)

    def _dropped_states(self, job: VideoJob) -> list[str]:
        return [_state_of(c) for seg in job.segments if seg.index != SPARSE
                for pos, c in enumerate(seg.chunks) if not self._keeps(seg, pos)]

    def finish(self, video: VideoRun) -> remote.ObjectRef:
        """One light task: the tracks table (from every chunk's stats when this run saw
        them, else read back from the committed parts, or by stitching the segments),
        then compaction of the masks and pruning of the states not kept."""
        job = self.jobs[video]
        assert job.plan is not None and job.info is not None
        where = (self.config.output, self.config.storage_options, video.video_id)
        drop = self._dropped_states(job)
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
        job = self.jobs.pop(video)
        job.objects = objects
        self._video_row(video, job, STATUS_OK)

    def failed(self, video: VideoRun) -> None:
        _delete_video(self.out, video.video_id)
        self._video_row(video, self.jobs.pop(video), STATUS_FAILED)

    def _video_row(self, video: VideoRun, job: VideoJob, status: str) -> None:
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


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
        timespec="seconds")
