"""What to track: chunk and segment plans, prompts, discovery settings, the model's
identity, the task values that go from the driver to a worker, and the header of a
memory state (``track_meta``) that the driver and finishing read.

Plain values the driver computes without torch or Ray."""
