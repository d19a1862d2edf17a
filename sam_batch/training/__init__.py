"""Train the project's own small SAM 2 (``sam-batch-tiny``) on synthetic videos.

``python -m sam_batch.training --out runs/tiny --steps 6000`` trains the real
sam2 architecture (``sam_batch/models/sam-batch-tiny.yaml``) the way SAM 2 is
trained; ``sam_batch/models/sam-batch-tiny.json`` records the exact command,
seeds and held-out scores of the shipped weights. Modules: ``data`` (clips and
prompts), ``losses`` (SAM 2's losses), ``step`` (one clip through the model's
own tracking), ``heldout`` (quick J&F), ``train`` (the loop).
"""

from sam_batch.training.step import train_step
from sam_batch.training.train import TrainConfig, train

__all__ = ["TrainConfig", "train", "train_step"]
