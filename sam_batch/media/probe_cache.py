"""A video's probe (frames, index, size), once per video and job.

A remote task beside the actors runs it. This module imports no torch: the
task's worker process starts while the actors are loading their models, and
a worker that has to import torch only to read a container's index would
add seconds to every short job.
"""

from __future__ import annotations

import json

from sam_batch.media.storage import Location
from sam_batch.media.video import probe


def probe_cached(url: str, input_options: dict, output_url: str, output_options: dict,
                 path: str) -> dict:
    """``probe(url).to_dict()``, read back from ``path`` in the dataset when this job
    probed it before (``dataset.layout.probe_path``)."""
    out = Location(output_url, output_options)
    if out.exists(path):
        cached = json.loads(out.read(path))
        if cached.get("url") == url:
            return cached
    info = probe(url, input_options).to_dict()
    out.write(path, json.dumps(info).encode())
    return info
