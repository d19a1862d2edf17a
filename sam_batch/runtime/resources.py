"""How many tracker actors a job starts, and what each asks Ray for.

Explicit values from the config win; otherwise the pool is sized from what the
cluster has when the job starts.
"""

from __future__ import annotations

import logging

import ray

from sam_batch.config import JobConfig

log = logging.getLogger("sam_batch")


def worker_resources(config: JobConfig) -> tuple[int, float, float]:
    """Workers, GPUs and CPUs per worker: explicit values, else what the cluster has.

    ``device: cuda`` asks for GPUs even when the cluster has none yet (a GPU group
    autoscaled to zero grows for the actors' requests); sizing the pool from the
    GPUs present at start would give it one CPU actor that cannot load a CUDA
    model. Such a cluster needs ``workers`` to know how many to ask for.
    """
    total = ray.cluster_resources()
    gpus_total = total.get("GPU", 0.0) if config.device != "cpu" else 0.0
    gpus = config.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if gpus_total >= 1 or config.device == "cuda" else 0.0
    if gpus and gpus_total < gpus and not config.workers:
        log.warning("the cluster has no free GPU yet; starting 1 worker and waiting for the "
                    "autoscaler (set workers to ask for more)")
    workers = config.workers or (max(1, int(gpus_total // gpus)) if gpus else 1)
    cpus = config.cpus_per_worker
    if cpus is None:  # a fair share of the cores, for decoding and (on CPU) the model
        cpus = max(1.0, float(int(total.get("CPU", 1.0) // workers)))
        cpus = min(cpus, 8.0) if gpus else cpus
    return workers, gpus, cpus
