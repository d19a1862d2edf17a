"""sam_batch: SAM 2 video segmentation over many and very long videos on Ray."""

__version__ = "0.1.0"
