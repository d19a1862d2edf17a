"""Discovery at work: sam2's automatic mask generator proposes, live tracks filter.

The settings and each object's life cycle are plain data in
:mod:`sam_batch.plan.discovery` (the driver reads them without torch); this
module runs the generator on the tracker's own model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sam_batch.plan.discovery import DiscoverySettings

if TYPE_CHECKING:
    from sam_batch.track.model import LoadedModel


@dataclass(frozen=True)
class Proposal:
    mask: np.ndarray  # bool [H, W] at video resolution
    score: float  # AMG predicted IoU


class Discoverer:
    """sam2's automatic mask generator on the tracker's own model, plus the filters."""

    def __init__(self, model: LoadedModel, settings: DiscoverySettings):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        self.model = model
        self.settings = settings
        self._amg = SAM2AutomaticMaskGenerator(
            model.predictor,
            points_per_side=settings.points_per_side,
            pred_iou_thresh=settings.pred_iou_thresh,
            stability_score_thresh=settings.stability_thresh,
            output_mode="binary_mask",
        )
        # SAM2ImagePredictor assumes the 1024 px backbone's feature sizes.
        size = model.image_size
        self._amg.predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8),
                                              (size // 16, size // 16)]

    def propose(self, rgb: np.ndarray) -> list[Proposal]:
        """Every AMG mask of the frame above the size floor, largest first."""
        import torch

        from sam_batch.track.model import inference

        with inference(self.model), torch.inference_mode():
            records = self._amg.generate(rgb)
        floor = self.settings.min_area * rgb.shape[0] * rgb.shape[1]
        found = [Proposal(np.asarray(r["segmentation"], bool), float(r["predicted_iou"]))
                 for r in records if r["area"] >= floor]
        return sorted(found, key=lambda p: -int(p.mask.sum()))

    def new_objects(self, rgb: np.ndarray, live: Sequence[np.ndarray]) -> list[Proposal]:
        """Proposals that no live track explains, at most ``max_new``."""
        return select_new(self.propose(rgb), live, self.settings)


def select_new(proposals: Sequence[Proposal], live: Sequence[np.ndarray],
               settings: DiscoverySettings) -> list[Proposal]:
    """Drop proposals overlapping live tracks or each other (kept ones count as live).

    >>> a = np.zeros((8, 8), bool); a[:4] = True
    >>> b = np.zeros((8, 8), bool); b[5:] = True
    >>> [p.score for p in select_new([Proposal(a, .9), Proposal(b, .8)], [a], DiscoverySettings())]
    [0.8]
    """
    kept: list[Proposal] = []
    taken = [m for m in live if m.any()]
    for p in proposals:
        if len(kept) >= settings.max_new:
            break
        area = int(p.mask.sum())
        if area == 0:
            continue
        union = np.logical_or.reduce(taken) if taken else None
        if union is not None and (p.mask & union).sum() / area > settings.max_covered:
            continue
        if any(_iou(p.mask, m) > settings.max_overlap_iou for m in taken):
            continue
        kept.append(p)
        taken.append(p.mask)
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0
