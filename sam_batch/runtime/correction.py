"""Run ``sam-batch correct``'s re-tracking on the cluster: one task per video.

Each task loads the model in its own process (torch and sam2 are imported there,
never by the driver) with the resources a tracker actor of the job would get,
and re-tracks one video into the dataset's staging area.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import ray

from sam_batch.config import JobConfig
from sam_batch.errors import SamBatchError
from sam_batch.plan.corrections import CorrectionRequest
from sam_batch.runtime.resources import worker_resources
from sam_batch.runtime.session import ray_session


def _correct(kwargs: dict, request: CorrectionRequest) -> dict:
    from sam_batch.track.correct import correct_video  # in the task's process only

    return correct_video(request=request, **kwargs)


def run_corrections(config: JobConfig, requests: list[CorrectionRequest]) -> list[dict]:
    """Re-track every request's video; a failure raises the first one's cause."""
    with ray_session(config.address, num_gpus=0 if config.device == "cpu" else None):
        _, gpus, cpus = worker_resources(replace(config, workers=len(requests) or 1))
        task = ray.remote(num_gpus=gpus, num_cpus=cpus, max_retries=0)(_correct)
        kwargs = {"model": config.model_spec(), "threads": max(1, int(cpus)),
                  "output_url": config.output, "storage_options": config.storage_options,
                  "input_storage_options": config.inputs_storage()}
        refs = [task.remote(kwargs, r) for r in requests]
        results: list[Any] = []
        for ref in refs:
            try:
                results.append(ray.get(ref))
            except Exception as e:
                cause: BaseException = e
                while isinstance(getattr(cause, "cause", None), BaseException):
                    cause = cause.cause  # type: ignore[attr-defined]
                if isinstance(cause, SamBatchError):
                    raise cause from None
                raise SamBatchError(f"re-tracking failed: {type(cause).__name__}: {cause}"
                                    ) from None
        return results
