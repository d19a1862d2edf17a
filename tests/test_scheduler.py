"""The scheduler's promises, against an in-process pool: no Ray, no model, milliseconds.

Lookahead (an idle actor takes a chain's next chunk while the chunk before runs,
fed the state that chunk will return), retry from a chunk's input state, a dead
actor replaced and its chunk retried, and resume from the chunks already
committed. ``FakeCalls`` completes a call once its input state is ready, as a
cluster would; the slow fault tests check the same against Ray.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sam_batch.plan.chunks import plan_video
from sam_batch.runtime.chains import START, ChainStart, VideoRun
from sam_batch.runtime.pool import Slot
from sam_batch.runtime.scheduler import Scheduler

FRAMES, CHUNK = 12, 4  # one segment of three chunks


class ActorDied(Exception):
    """What a call raises when its actor died under it."""


@dataclass(frozen=True)
class Ref:
    n: int


@dataclass
class Call:
    ref: Ref
    kind: str  # "start" (a chain's start and its first chunks) or "chunk"
    slot: int
    generation: int
    pos: int = START
    state: Ref | None = None  # a chunk's input state
    lookahead: bool = False
    count: int = 1  # chunks in the call
    state_out: Ref | None = None  # the state after its last chunk


@dataclass
class FakeCalls:
    """Calls complete in ``wait`` once their input state is ready; ``fail`` maps a
    ``(kind, pos)`` to the errors its next attempts raise, one per attempt."""

    fail: dict[tuple[str, int], list[Exception]] = field(default_factory=dict)
    log: list[Call] = field(default_factory=list)
    values: dict[Ref, Any] = field(default_factory=dict)
    errors: dict[Ref, Exception] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    _pending: dict[Ref, tuple[Call, Ref | None]] = field(default_factory=dict)

    def _ref(self) -> Ref:
        return Ref(next(self._ids))

    def run_chunks(self, slot: Slot, specs: tuple, task_ref: Ref, state: Ref | None
                   ) -> tuple[Ref, Ref]:
        start = state is None
        call = Call(self._ref(), "start" if start else "chunk", slot.index, slot.generation,
                    START if start else specs[0].chunk_idx, state,
                    lookahead=not start and state not in self.values, count=len(specs),
                    state_out=self._ref())
        self.log.append(call)
        self._pending[call.ref] = (call, call.state_out)
        return call.ref, call.state_out

    def wait(self, refs: list, timeout: float) -> list:
        done = []
        for ref, (call, state_out) in list(self._pending.items()):
            if call.state is not None and call.state not in self.values:
                if call.state in self.errors:  # its input never comes
                    self.errors[ref] = RuntimeError("input state lost")
                    del self._pending[ref]
                    done.append(ref)
                continue
            del self._pending[ref]
            errors = self.fail.get((call.kind, call.pos))
            if errors:
                self.errors[ref] = errors.pop(0)
                if state_out is not None:
                    self.errors[state_out] = self.errors[ref]
            else:
                self.values[ref] = [SimpleNamespace(frames_tracked=CHUNK)] * call.count
                self.values[state_out] = f"after {max(call.pos, 0) + call.count - 1}"
            done.append(ref)
        # A value put in the store (a probe's answer, a finish's) is ready at once.
        return [r for r in refs if r in done or (r in self.values and r not in self._pending)]

    def get(self, ref: Ref) -> Any:
        if ref in self.errors:
            raise self.errors[ref]
        return self.values[ref]

    def put(self, value: Any) -> Ref:
        ref = self._ref()
        self.values[ref] = value
        return ref

    def share(self, task: Any) -> Ref:
        return self.put(task)

    def state_lost(self, error: BaseException) -> bool:
        return False

    def actor_died(self, error: BaseException) -> bool:
        return isinstance(error, ActorDied)

    def chunks(self) -> list[int]:
        return [c.pos for c in self.log if c.kind == "chunk"]


class FakePool:
    """Slots that are ready at once; ``replace`` starts a new generation."""

    def __init__(self, size: int):
        self.slots = [Slot(i, actor=f"actor-{i}", ready=True) for i in range(size)]
        self.starting: dict = {}
        self.replaced: list[int] = []

    def check_started(self) -> None:
        pass

    def on_ready(self, ref: Any) -> None:
        pass

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.ready and not s.busy]

    def replace(self, slot: Slot) -> None:
        slot.generation += 1
        slot.busy = False
        self.replaced.append(slot.index)


@dataclass
class FakeJob:
    """The job's side: one chain per video (``starts``), a probe that answers at once,
    a finish that answers 1."""

    calls: FakeCalls
    starts: list[ChainStart]
    results: list[int] = field(default_factory=list)  # what each finish answered
    failures: list[str] = field(default_factory=list)
    reloads: list[int] = field(default_factory=list)
    no_checkpoints: bool = False  # reload answers None, as for a sparse pass

    def prepare(self, video: VideoRun) -> Ref:
        return self.calls.put("probed")

    def prepared(self, video: VideoRun, result: Any) -> list[ChainStart]:
        assert result == "probed"
        return self.starts

    def chunk_done(self, video: VideoRun, segment_index: int, result: Any) -> dict:
        return {}

    def reload(self, video: VideoRun, segment_index: int, pos: int) -> bytes | None:
        self.reloads.append(pos)
        if self.no_checkpoints:
            return None
        return f"after {pos - 1}" if pos > 0 else "init"  # as its checkpoint holds it

    def finish(self, video: VideoRun) -> Ref:
        return self.calls.put(1)

    def finished(self, video: VideoRun, result: Any) -> None:
        self.results.append(result)

    def failed(self, video: VideoRun) -> None:
        self.failures.append(video.video_id)


def run_one(calls: FakeCalls, workers: int = 1, resume_at: int | None = None,
            max_retries: int = 2, job: FakeJob | None = None, per_call: int = 1) -> VideoRun:
    """Schedule one video of one segment to its end; ``resume_at``: chunks before it
    are committed, and the job read back the state after the one before."""
    segment = plan_video("v", FRAMES, CHUNK).segments[0]
    start = ChainStart(segment, "task")
    if resume_at is not None:  # as the job's resume answers
        start = ChainStart(segment, "task", resume_at, state=f"after {resume_at - 1}")
    job = job or FakeJob(calls, [])
    job.starts = [start]
    video = VideoRun("v")
    scheduler = Scheduler(FakePool(workers), max_active=2, max_retries=max_retries,
                          scrub=str, calls=calls, chunks_per_call=per_call)
    scheduler.run([video], job)
    assert job.results == ([1] if video.status == "done" else [])
    assert job.failures == (["v"] if video.status == "failed" else [])
    assert scheduler.tally.done + scheduler.tally.failed == 1 and not scheduler.active
    return video


def test_one_actor_runs_the_chain_in_order_each_chunk_from_the_state_before():
    calls = FakeCalls()
    video = run_one(calls)
    assert video.status == "done" and video.chunks_done == 3
    # The chain's start (its prompts encoded) runs in the call of its first chunk.
    assert [(c.kind, c.count) for c in calls.log] == [("start", 1), ("chunk", 1), ("chunk", 1)]
    assert calls.chunks() == [1, 2]
    inputs = [calls.values[c.state] for c in calls.log if c.kind == "chunk"]
    assert inputs == ["after 0", "after 1"]


def test_an_idle_actor_looks_ahead_to_the_next_chunk_fed_the_running_ones_state():
    calls = FakeCalls()
    video = run_one(calls, workers=2)
    assert video.status == "done" and video.frames_tracked == FRAMES
    start, second = calls.log[:2]
    assert (start.kind, start.slot) == ("start", 0)
    # Chunk 1 goes to the other actor before its state exists: the first call's output.
    assert (second.pos, second.slot, second.lookahead, second.state) == (
        1, 1, True, start.state_out)
    assert calls.chunks() == [1, 2]  # no chunk ran twice


def test_a_failed_chunk_is_retried_from_its_input_state():
    calls = FakeCalls(fail={("chunk", 1): [RuntimeError("CUDA error")]})
    video = run_one(calls)
    assert video.status == "done" and video.attempts[(0, 1)] == 1
    runs = [c for c in calls.log if c.kind == "chunk" and c.pos == 1]
    assert len(runs) == 2 and runs[0].state == runs[1].state  # the driver's own copy
    assert calls.values[runs[1].state] == "after 0"


def test_a_chunk_failing_more_than_max_retries_fails_the_video_not_the_job():
    calls = FakeCalls(fail={("chunk", 2): [RuntimeError("bad frame")] * 3})
    video = run_one(calls, max_retries=2)
    assert video.status == "failed"
    assert video.error == "chunk 2 failed 3 times; last error: RuntimeError: bad frame"


def test_a_dead_actor_is_replaced_and_its_chunk_runs_again_on_the_new_one():
    calls = FakeCalls(fail={("chunk", 1): [ActorDied("node lost")]})
    video = run_one(calls)
    assert video.status == "done"
    runs = [c for c in calls.log if c.kind == "chunk" and c.pos == 1]
    assert [(c.slot, c.generation) for c in runs] == [(0, 0), (0, 1)]
    assert calls.chunks() == [1, 1, 2]
    # Its input state's one copy may have gone with the actor: read back from the job.
    assert calls.values[runs[1].state] == "after 0" and runs[1].state != runs[0].state


def test_a_dead_actor_without_a_checkpoint_to_go_on_from_runs_the_chain_from_its_start():
    calls = FakeCalls(fail={("chunk", 1): [ActorDied("node lost")]})
    job = FakeJob(calls, [], no_checkpoints=True)
    video = run_one(calls, job=job)
    assert video.status == "done" and job.reloads == [1]
    assert [c.kind for c in calls.log] == ["start", "chunk", "start", "chunk", "chunk"]


def test_a_start_whose_actor_died_runs_again_from_the_task_reading_back_nothing():
    calls = FakeCalls(fail={("start", START): [ActorDied("node lost")]})
    job = FakeJob(calls, [])
    video = run_one(calls, job=job)
    assert video.status == "done" and job.reloads == [] and video.attempts[(0, START)] == 1
    assert [(c.kind, c.generation) for c in calls.log] == [("start", 0), ("start", 1),
                                                           ("chunk", 1), ("chunk", 1)]


def test_a_lookahead_chunk_whose_state_never_came_runs_again_without_a_retry_counted():
    calls = FakeCalls(fail={("start", START): [RuntimeError("prompt encoding failed")]})
    video = run_one(calls, workers=2)
    assert video.status == "done"
    assert video.attempts[(0, START)] == 1 and video.attempts[(0, 1)] == 0
    assert [c.kind for c in calls.log[:2]] == ["start", "chunk"]  # chunk 1 looked ahead
    inputs = [calls.values.get(c.state) for c in calls.log if c.kind == "chunk"]
    assert inputs[0] is None and inputs[-2:] == ["after 0", "after 1"]


def test_resume_goes_on_from_the_first_chunk_not_committed():
    calls = FakeCalls()
    video = run_one(calls, resume_at=2)
    assert video.status == "done"
    assert [c.kind for c in calls.log] == ["chunk"] and calls.chunks() == [2]
    assert calls.values[calls.log[0].state] == "after 1"


def test_resumed_with_every_chunk_committed_the_video_only_finishes():
    segment = plan_video("v", FRAMES, CHUNK).segments[0]
    calls = FakeCalls()
    job = FakeJob(calls, [ChainStart(segment, "task", resume_at=3)])
    video = VideoRun("v")
    Scheduler(FakePool(1), 2, 2, str, calls=calls).run([video], job)
    assert video.status == "done" and job.results == [1] and calls.log == []
    assert video.chunks_done == 3 and video.frames_tracked == 0


def test_progress_reads_running_counts_not_the_videos():
    """A night's job holds 100,000 videos: a progress line per step must not scan them."""
    from sam_batch.driver.progress import Progress

    calls = FakeCalls(fail={("chunk", 2): [RuntimeError("bad frame")] * 3})
    segment = plan_video("v", FRAMES, CHUNK).segments[0]
    job = FakeJob(calls, [ChainStart(segment, "task")])
    videos = [VideoRun(f"v{i}") for i in range(3)]
    lines = []
    scheduler = Scheduler(FakePool(2), 1, 2, str, calls=calls)
    scheduler.progress = lambda s: lines.append(Progress("off").line(s))
    scheduler.run(videos, job)
    assert [v.status for v in videos] == ["failed", "done", "done"]
    assert lines[-1].startswith("videos 3/3 (1 failed) | chunks 8/9 | ")
    assert scheduler.tally.frames == 8 * CHUNK


def test_chunks_per_call_runs_consecutive_chunks_in_one_call_each_from_the_last_state():
    calls = FakeCalls()
    video = run_one(calls, workers=2, per_call=2)  # 3 chunks: calls of 2, then 1
    assert video.status == "done" and video.chunks_done == 3 and video.frames_tracked == FRAMES
    assert [(c.kind, c.pos, c.count) for c in calls.log] == [("start", START, 2), ("chunk", 2, 1)]
    # The second call looked ahead, fed the state the first call returns: the one after
    # its last chunk.
    first, second = calls.log
    assert second.lookahead and second.state == first.state_out
    assert calls.values[second.state] == "after 1"


def test_a_failed_call_of_several_chunks_is_retried_from_its_first_chunks_input():
    calls = FakeCalls(fail={("chunk", 2): [RuntimeError("CUDA error")] * 3})
    video = run_one(calls, per_call=2, max_retries=2)
    assert video.status == "failed"
    assert video.error == "chunk 2 failed 3 times; last error: RuntimeError: CUDA error"
    calls = FakeCalls(fail={("chunk", 0): [ActorDied("node lost")]})
    job = FakeJob(calls, [])
    video = run_one(calls, per_call=2, job=job, resume_at=0)  # from its init state
    assert video.status == "done" and job.reloads == [0]
    runs = [c for c in calls.log if c.kind == "chunk"]
    assert [(c.pos, c.count, calls.values[c.state]) for c in runs[1:]] == [(0, 2, "init"),
                                                                            (2, 1, "after 1")]


def test_a_small_task_travels_inside_its_calls_a_large_one_goes_to_the_store(monkeypatch):
    """A ``ray.put`` per video, and its borrowing by each actor, cost the driver's core
    worker more than a few KB copied into the calls (``bench/soak.py``)."""
    from sam_batch.runtime import calls as calls_module

    stored = []
    monkeypatch.setattr(calls_module.ray, "put", lambda v: stored.append(v) or f"ref{len(stored)}")
    ray_calls = calls_module.RayCalls()
    small = ("v", tuple(range(100)))
    large = ("v", bytes(calls_module.INLINE_TASK_BYTES))
    assert ray_calls.share(small) is small and stored == []
    assert ray_calls.share(large) == "ref1" and stored == [large]
