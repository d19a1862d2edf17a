"""The job driver: ``run`` reads the videos, plans, hands chunks to the runtime and commits.

No Ray and no torch here: Ray calls go through ``runtime``, tracking happens in ``track``."""
