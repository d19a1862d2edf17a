"""Models that ship inside the package, loadable by name with no download.

``--model sam-batch-tiny`` is the real SAM 2.1 architecture at a small size
(128-pixel input), trained by ``python -m sam_batch.training`` on the project's
synthetic videos. It exists so demos and tests show real tracking where no
official checkpoint can be fetched (CI, air-gapped machines); it is not a
substitute for the official weights on natural video. Each model is three
files next to this module: a complete sam2 video-predictor YAML, a
``{"model": state_dict}`` checkpoint, and a JSON card (image size, training
seeds and steps, the command that reproduces it, measured held-out scores).

>>> sorted(SHIPPED)
['sam-batch-tiny']
>>> shipped("sam-batch-tiny").image_size
128
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Names of the shipped models (what ``--model`` accepts besides sam2's configs).
SHIPPED = ("sam-batch-tiny",)


@dataclass(frozen=True)
class ShippedModel:
    """Where a shipped model's files are, and what its card says."""

    name: str
    config: Path  # sam2 Hydra YAML (a complete video-predictor config)
    checkpoint: Path  # {"model": state_dict}
    card: dict

    @property
    def image_size(self) -> int:
        return int(self.card["image_size"])


@cache
def shipped(name: str) -> ShippedModel:
    """The shipped model ``name`` (KeyError if there is none)."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    card_path = HERE / f"{name}.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {"image_size": 128}
    return ShippedModel(name, HERE / f"{name}.yaml", HERE / f"{name}.pt", card)


def shipped_config(name: str) -> str:
    """Absolute path of the model's sam2 YAML."""
    return str(shipped(name).config)


def shipped_checkpoint(name: str) -> str:
    """Absolute path of the model's weights."""
    return str(shipped(name).checkpoint)


def model_card(name: str) -> dict:
    """What the JSON card next to the weights says."""
    return dict(shipped(name).card)
