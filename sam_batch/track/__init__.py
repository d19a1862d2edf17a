"""Tracking frames with SAM 2: the model, frame sources, memory state, the chunk
tracker, discovery and the worker that runs one chunk.

The only part of the pipeline that imports torch and sam2 (with ``training``)."""
