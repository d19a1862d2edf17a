"""What to track: chunk and segment plans, prompts, discovery settings, the model's
identity and the task values that go from the driver to a worker.

Plain values the driver computes without torch or Ray."""
