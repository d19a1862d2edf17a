"""Media: where inputs and outputs live (``storage``), which videos to do (``manifest``),
what is in a video (``container`` opens it, ``video`` probes it, ``probe_cache``) and its
frames, decoded frame-exactly (``decode``).

Plain Python: no Ray, no torch."""
