"""SAM 2's training losses for one frame, as its ``training/loss_fns.py`` defines them.

Per object: sigmoid focal loss (weight 20) and dice loss (weight 1) on each of
the multimask outputs, back-propagated through the best one only (the lowest
focal + dice, SAM 2's ``loss_on_multimask``); an L1 loss between every mask's
predicted IoU and its real IoU (``supervise_all_iou``, ``iou_use_l1_loss``);
and a binary cross-entropy on the object-presence (occlusion) logit. Mask and
IoU terms count only where the object is present. Every term is averaged
over objects (SAM 2 divides by ``num_objects``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: SAM 2.1's loss weights (``configs/sam2.1_training/*.yaml``: loss_mask 20, dice 1, iou 1,
#: class 1).
WEIGHTS = {"focal": 20.0, "dice": 1.0, "iou": 1.0, "presence": 1.0}


def frame_loss(multimask_logits: torch.Tensor, pred_ious: torch.Tensor,
               presence_logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weighted loss terms of one frame, averaged over objects.

    ``multimask_logits`` [N, M, S, S], ``pred_ious`` [N, M], ``presence_logits``
    [N, 1], ``target`` [N, S, S] bool.

    >>> t = torch.zeros(2, 8, 8, dtype=torch.bool); t[:, 2:5, 2:5] = True
    >>> good = torch.where(t, 10.0, -10.0)[:, None].repeat(1, 3, 1, 1)
    >>> loss = frame_loss(good, torch.ones(2, 3), torch.full((2, 1), 10.0), t)
    >>> sorted(loss), float(sum(loss.values())) < 0.1
    (['dice', 'focal', 'iou', 'presence'], True)
    """
    n = len(target)
    tgt = target[:, None].float().expand_as(multimask_logits)
    present = target.flatten(1).any(1).float()  # [N]
    focal = _focal(multimask_logits, tgt)  # [N, M]
    dice = _dice(multimask_logits, tgt)
    best = (WEIGHTS["focal"] * focal + WEIGHTS["dice"] * dice).argmin(dim=1)
    rows = torch.arange(n)
    with torch.no_grad():
        pred = multimask_logits > 0
        inter = (pred & (tgt > 0)).flatten(2).sum(-1).float()
        union = (pred | (tgt > 0)).flatten(2).sum(-1).float()
        true_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    iou = (pred_ious - true_iou).abs().mean(1)
    presence = F.binary_cross_entropy_with_logits(presence_logits[:, 0], present,
                                                  reduction="none")
    return {
        "focal": WEIGHTS["focal"] * (focal[rows, best] * present).sum() / n,
        "dice": WEIGHTS["dice"] * (dice[rows, best] * present).sum() / n,
        "iou": WEIGHTS["iou"] * (iou * present).sum() / n,
        "presence": WEIGHTS["presence"] * presence.sum() / n,
    }


def _focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
           gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss, mean over pixels: ``[N, M, S, S]`` -> ``[N, M]``."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def _dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice loss with SAM 2's +1 smoothing: ``[N, M, S, S]`` -> ``[N, M]``."""
    prob = logits.sigmoid().flatten(2)
    t = target.flatten(2)
    return 1 - (2 * (prob * t).sum(-1) + 1) / (prob.sum(-1) + t.sum(-1) + 1)
