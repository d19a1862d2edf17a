"""How many actors a job asks for, and with what (no Ray: the cluster is described)."""

from __future__ import annotations

import pytest

import sam_batch.runtime.resources as resources
from sam_batch.config import JobConfig


@pytest.mark.parametrize(("cluster", "given", "expected"), [
    ({"CPU": 8.0}, {}, (1, 0.0, 8.0)),  # a laptop: one CPU actor with every core
    ({"CPU": 32.0, "GPU": 4.0}, {}, (4, 1.0, 8.0)),  # one actor per GPU, cores shared
    ({"CPU": 32.0, "GPU": 4.0}, {"gpus_per_worker": 0.5}, (8, 0.5, 4.0)),
    ({"CPU": 32.0, "GPU": 4.0}, {"device": "cpu", "workers": 2}, (2, 0.0, 16.0)),
    # GPU group autoscaled to zero: still GPU actors (they make it scale up), not CPU ones
    ({"CPU": 4.0}, {"device": "cuda", "workers": 16}, (16, 1.0, 1.0)),
    ({"CPU": 4.0}, {"device": "cuda"}, (1, 1.0, 4.0)),
])
def test_pool_size_and_resources_per_worker(monkeypatch, cluster, given, expected):
    monkeypatch.setattr(resources.ray, "cluster_resources", lambda: cluster)
    assert resources.worker_resources(JobConfig(**given)) == expected
