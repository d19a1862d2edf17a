"""How many chunk completions one driver schedules: the real job, stand-in actors.

A thousand A100s tracking 91 frames/s in 64-frame chunks complete ~1,400 chunks a
second; every one passes through the driver (a completion, a state reference, the
next chunk's submission, progress, the video's bookkeeping). This bench runs the
real driver (``driver.job.run``: probe, plan, scheduler, Ray object references,
finish and compaction of each video) with the tracker actors replaced by stand-ins,
named as such: ``StandInWorker`` waits a fixed time per chunk, writes the chunk's
real Parquet part and a state of the real model's size (hiera-T at 1024 px: 3.5 MiB
per object), and hands the state bytes back through Ray as the real worker does.
Many stand-in slots share a few threaded actor processes, so 256 "GPUs" fit on one
machine.

It prints, per case, the chunks/s the driver kept up, the ideal (slots / latency),
their ratio, and the driver process's CPU seconds per chunk; 1 / that CPU is the
most one driver core could ever schedule.

    python bench/driver.py --quick              # 16 slots, < 2 minutes
    python bench/driver.py           # 16, 64, 256 slots at 0.7 s a chunk, then saturation

The last two cases run long videos (``--long-chunks``) with short chunks, one chunk
per actor call and then ``--chunks-per-call`` (``sam-batch run --chunks-per-call``):
the ratio of driver CPU per chunk is how far past one driver's limit that goes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import ray

import sam_batch.runtime.pool as pool_module
from sam_batch.config import JobConfig
from sam_batch.dataset import rle
from sam_batch.dataset.layout import state_path
from sam_batch.dataset.writer import ChunkMasks, write_mask_part
from sam_batch.driver.job import run
from sam_batch.media.storage import Location
from sam_batch.plan.chunks import ChunkSpec
from sam_batch.plan.model_spec import ModelIdentity
from sam_batch.plan.tasks import ChunkResult
from sam_batch.runtime.session import init_local
from sam_batch.synthetic import write_sample

STATE_MIB_PER_OBJECT = 3.5  # a hiera-T state at 1024 px, measured (bench/dataset.py)


class StandInWorker:
    """Not SAM 2: a chunk takes ``latency_s`` and yields a real part and a real-size state."""

    def __init__(self, output_url: str, latency_s: float, state_bytes: int, **_: object):
        self.output = Location(output_url)
        self.latency_s = latency_s
        self.state = np.random.default_rng(0).bytes(state_bytes)
        self._empty: dict[tuple[int, int], rle.EncodedMask] = {}

    def ready(self) -> dict:
        identity = ModelIdentity(config="sam2.1_hiera_t", image_size=1024,
                                 weights="random:seed=0", sam2_version=metadata.version("sam2"),
                                 precision="bfloat16", hole_filling=False)
        return {"identity": identity.to_dict(), "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def run_chunks(self, specs: tuple[ChunkSpec, ...], task_box: list, state_box: list
                   ) -> tuple[list[ChunkResult], bytes]:
        task, ref = task_box[0], state_box[0]  # a small task inline; no state: the start
        if isinstance(task, ray.ObjectRef):
            task = ray.get(task)
        if isinstance(ref, ray.ObjectRef):
            ray.get(ref)
        return [self._chunk(spec, task) for spec in specs], self.state

    def _chunk(self, spec: ChunkSpec, task: object) -> ChunkResult:
        t0 = time.perf_counter()
        time.sleep(self.latency_s)  # the GPU's time
        h, w = task.info.height, task.info.width
        empty = self._empty.setdefault((h, w), rle.encode(np.zeros((h, w), bool)))
        rows = ChunkMasks(spec.video_id, spec.chunk_idx)
        obj_ids = tuple(p.obj_id for p in task.prompts)
        for f in range(spec.start, spec.end):
            rows.add_encoded(f, task.info.time_s(f), obj_ids, [empty] * len(obj_ids),
                             np.ones(len(obj_ids), np.float32))
        self.output.write(state_path(spec.video_id, spec.segment, spec.chunk_idx), self.state)
        part = write_mask_part(self.output, rows, spec.segment, staged=task.staged)
        return ChunkResult(spec=spec, part=part, rows=rows.num_rows,
                           frames_tracked=spec.num_frames, stats=rows.stats, encoded_ahead=0,
                           seconds=time.perf_counter() - t0)


class StandInSlots:
    """What ``ActorPool`` calls ``actor_class(...)``: each ``.remote()`` is one more slot,
    served by one of a few threaded actor processes (``slots_per_process`` each)."""

    def __init__(self, processes: int, slots_per_process: int, latency_s: float,
                 state_bytes: int):
        self._options = {"latency_s": latency_s, "state_bytes": state_bytes}
        self._cls = ray.remote(num_cpus=0, max_concurrency=slots_per_process)(StandInWorker)
        self._processes = processes
        self._handles: list = []
        self._next = itertools.count()

    def remote(self, **worker_kwargs: object) -> object:
        if not self._handles:
            self._handles = [self._cls.remote(worker_kwargs["output_url"], **self._options)
                             for _ in range(self._processes)]
        return self._handles[next(self._next) % self._processes]


def one_case(tmp: Path, slots: int, latency_s: float, videos: int, chunks: int,
             objects: int, processes: int, per_call: int = 1) -> dict:
    clip_dir = tmp / "clip"
    if not clip_dir.exists():
        clip_dir.mkdir()
    _, manifest = write_sample(clip_dir, num_frames=64 * chunks, width=64, height=48)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    base = rows[0]
    base["prompts"] = [{**base["prompts"][0], "obj_id": i + 1} for i in range(objects)]
    many = tmp / f"many-{slots}.jsonl"
    many.write_text("".join(json.dumps({**base, "video_id": f"v{i:05d}"}) + "\n"
                            for i in range(videos)))
    out = tmp / f"out-{slots}-{latency_s}-{per_call}"
    stand_in = StandInSlots(processes, -(-slots // processes), latency_s,
                            int(STATE_MIB_PER_OBJECT * objects * 2**20))
    original = pool_module.actor_class
    pool_module.actor_class = lambda num_gpus, num_cpus: stand_in
    try:
        config = JobConfig(manifest=str(many), output=str(out), random_weights=True,
                           image_size=1024, device="cpu", workers=slots, cpus_per_worker=0.01,
                           chunk_frames=64, progress="off", keep_states="last",
                           chunks_per_call=per_call)
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = run(config)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        pool_module.actor_class = original
        for handle in stand_in._handles:
            ray.kill(handle)
        shutil.rmtree(out, ignore_errors=True)
    assert summary.ok and summary.chunks == videos * chunks, summary.text()
    ideal = slots / latency_s
    achieved = summary.chunks / seconds
    return {"slots": slots, "latency_s": latency_s, "chunks_per_call": per_call,
            "chunks": summary.chunks,
            "seconds": seconds, "chunks_per_s": achieved, "ideal_chunks_per_s": ideal,
            "fraction_of_ideal": achieved / ideal, "driver_cpu_ms_per_chunk": cpu / summary.chunks
            * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--slots", nargs="+", type=int, default=[16, 64, 256])
    ap.add_argument("--latency-s", type=float, default=64 / 91,
                    help="a chunk's time on the stand-in (64 frames at hiera-T's 91 frames/s)")
    ap.add_argument("--saturate-latency-s", type=float, default=0.05,
                    help="a last case with short chunks, to find where the driver saturates")
    ap.add_argument("--chunks", type=int, default=4, help="chunks per video")
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--processes", type=int, default=4, help="stand-in actor processes")
    ap.add_argument("--chunks-per-slot", type=int, default=8)
    ap.add_argument("--chunks-per-call", type=int, default=8,
                    help="the last two cases: long videos, 1 chunk per actor call vs this many")
    ap.add_argument("--long-chunks", type=int, default=32,
                    help="chunks per video in the chunks-per-call cases")
    args = ap.parse_args()
    if args.quick:
        args.slots, args.saturate_latency_s = [16], 0.0
    cases = [(s, args.latency_s, 1, args.chunks) for s in args.slots]
    if args.saturate_latency_s > 0:
        cases.append((max(args.slots), args.saturate_latency_s, 1, args.chunks))
    # The way past one driver's limit: fewer completions per chunk. Short chunks, so the
    # driver (not the stand-in) is what limits both.
    short = args.saturate_latency_s or 0.05
    cases += [(max(args.slots), short, k, args.long_chunks) for k in (1, args.chunks_per_call)]
    init_local(num_cpus=max(2, os.cpu_count() or 1))
    print(f"stand-in chunks of 64 frames; {args.objects} object(s), state "
          f"{STATE_MIB_PER_OBJECT * args.objects:.1f} MiB; {os.cpu_count()} CPU cores")
    print(f"{'slots':>6} {'latency':>8} {'per call':>8} {'chunks':>7} | {'chunks/s':>8} "
          f"{'ideal':>8} {'fraction':>8} | driver CPU ms/chunk")
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for slots, latency, per_call, chunks in cases:
                # Enough videos (one chain each) to keep every slot busy in every case.
                videos = max(2 * slots, slots * args.chunks_per_slot // chunks)
                r = one_case(Path(tmp), slots, latency, videos, chunks, args.objects,
                             args.processes, per_call)
                results.append(r)
                print(f"{slots:>6} {latency:>7.2f}s {per_call:>8} {r['chunks']:>7} | "
                      f"{r['chunks_per_s']:8.1f} {r['ideal_chunks_per_s']:8.1f} "
                      f"{r['fraction_of_ideal']:8.2f} | {r['driver_cpu_ms_per_chunk']:.2f}",
                      flush=True)
    finally:
        ray.shutdown()
    one, many = results[-2], results[-1]
    cpu_ratio = one["driver_cpu_ms_per_chunk"] / many["driver_cpu_ms_per_chunk"]
    rate_ratio = many["chunks_per_s"] / one["chunks_per_s"]
    for r in (one, many):
        print(f"{r['chunks_per_call']} chunk(s) per call: one driver core schedules at most "
              f"~{1000 / r['driver_cpu_ms_per_chunk']:.0f} chunks/s (1,000 A100s need ~1,400)")
    print(f"{many['chunks_per_call']} chunks per call vs 1: driver CPU per chunk "
          f"{cpu_ratio:.1f}x less, chunks/s {rate_ratio:.2f}x")
    print("RESULT " + json.dumps({"cases": results, "per_call_cpu_ratio": cpu_ratio,
                                  "per_call_rate_ratio": rate_ratio}))


if __name__ == "__main__":
    main()
