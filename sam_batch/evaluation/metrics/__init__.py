"""Evaluation: DAVIS J&F of masks (:mod:`.davis`) and identity of tracks (:mod:`.identity`).

Two questions, two modules: are the masks right (J&F against ground truth,
scored exactly as the DAVIS 2017 benchmark scores them), and are the ids
right (IDF1 and ID switches of a stitched run against a reference run).
"""

from sam_batch.evaluation.metrics.davis import (
    JF,
    Scores,
    VideoScores,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    disk,
    evaluate_video,
    seg2bmap,
    summarize,
)
from sam_batch.evaluation.metrics.identity import (
    BoundaryIdentity,
    IdentityMetrics,
    Tracks,
    boundary_id_metrics,
    identity_metrics,
)

__all__ = [
    "JF",
    "BoundaryIdentity",
    "IdentityMetrics",
    "Scores",
    "Tracks",
    "VideoScores",
    "boundary_id_metrics",
    "db_eval_boundary",
    "db_eval_iou",
    "db_statistics",
    "disk",
    "evaluate_video",
    "identity_metrics",
    "seg2bmap",
    "summarize",
]
