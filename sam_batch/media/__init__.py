"""Media: where inputs and outputs live (``storage``), which videos to do (``manifest``),
and what is in a video and its frames, decoded frame-exactly (``video``, ``probe_cache``).

Plain Python: no Ray, no torch."""
