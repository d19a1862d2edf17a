"""What a job reads before it runs: its videos, their storage options, their plans.

Ray-free and torch-free, so ``sam-batch plan`` shows a job's chunks without
starting a cluster.
"""

from __future__ import annotations

from dataclasses import replace

from sam_batch.config import JobConfig
from sam_batch.media.manifest import VideoEntry, expand_videos, read_manifest
from sam_batch.media.storage import with_retries
from sam_batch.plan.chunks import VideoPlan, auto_segments, plan_video


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


def plan_for(config: JobConfig, video_id: str, num_frames: int, workers: int,
             num_videos: int) -> VideoPlan:
    """The video's segments and chunks under this config (``segments: auto`` resolved)."""
    segments = config.segments
    if segments == "auto":
        segments = auto_segments(num_frames, config.chunk_frames, workers, num_videos)
    return plan_video(video_id, num_frames, config.chunk_frames, int(segments), config.overlap)
