"""Tracking frames with SAM 2: the model, frame sources, memory state, sam2's session
rebuilt from a state, the chunk tracker and a chunk in flight, discovery and the worker
that runs one chunk.

The only part of the pipeline that imports torch and sam2 (with ``training``)."""
