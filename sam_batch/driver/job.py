"""The job driver: probe → plan → schedule → track → write → finish → commit.

``run(config)`` is ``sam-batch run`` as a function. It reads the videos to do,
opens (or resumes) the output dataset, starts one tracker actor per worker,
lets the scheduler run every video's chunks, and commits ``_job.json`` last.
Running the same job again on the same output resumes it: finished videos are
skipped, a video in progress continues after its last committed chunk.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from sam_batch.config import JobConfig, Redactor
from sam_batch.dataset.layout import JOB_FILE, JOB_PATHS, RUN_FILE, STAGING_DIR
from sam_batch.dataset.schema import DATASET_FORMAT_VERSION
from sam_batch.dataset.writer import write_job_file
from sam_batch.driver.inputs import video_entries, with_storage_defaults
from sam_batch.driver.progress import Progress
from sam_batch.driver.tracking import TrackingJob
from sam_batch.errors import ConfigError
from sam_batch.media.storage import Location
from sam_batch.runtime.chains import VideoRun
from sam_batch.runtime.pool import ActorPool
from sam_batch.runtime.resources import worker_resources
from sam_batch.runtime.scheduler import Scheduler
from sam_batch.runtime.session import ray_session

log = logging.getLogger("sam_batch")


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

    videos = [VideoRun(e.video_id or f"row-{e.row}") for e in entries]
    progress = progress or Progress(config.progress)
    with ray_session(config.address, num_gpus=0 if config.device == "cpu" else None):
        workers, gpus, cpus = worker_resources(config)
        pool = ActorPool(workers, gpus, cpus, _worker_kwargs(config, cpus))
        try:
            scheduler = Scheduler(pool, config.max_active_videos or 2 * workers + 2,
                                  config.max_retries, redactor.scrub, progress,
                                  chunks_per_call=config.chunks_per_call)
            job = TrackingJob(config, out, redactor, dict(zip(videos, entries, strict=True)),
                              workers)
            # 3-6. Probe, plan, track every chunk, write parts, finish each video.
            scheduler.run(videos, job)
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
