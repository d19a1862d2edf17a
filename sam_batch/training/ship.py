"""Ship a trained checkpoint as ``sam_batch/models/<name>.pt`` with its JSON card.

    python -m sam_batch.training.ship --run /tmp/sam_batch_train/tiny-a \\
        --command "python -m sam_batch.training --out ... --steps ..." --quality quality.json

Copies ``<run>/best.pt`` (the checkpoint with the best held-out score during
training) as a plain fp32 ``{"model": state_dict}``, the format
``sam_batch.track.model`` and sam2's own ``_load_checkpoint`` read, and writes the
card: what the model is, how it was trained (seeds, steps, the exact command),
how it was picked, and the held-out quality ``bench/quality.py`` measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path

import torch

from sam_batch.models import HERE
from sam_batch.training.data import HELD_OUT_SEEDS_END


def ship(run: Path, command: str, quality: dict | None, name: str = "sam-batch-tiny",
         checkpoint: str = "best.pt", init_run: Path | None = None,
         after_shipped: bool = False, models: Path = HERE, why: str = "",
         status: str = "") -> dict:
    """``init_run``: the run whose checkpoint ``run`` started from (``--init``), recorded
    as the card's first phase, so the card describes the whole curriculum.
    ``after_shipped``: the curriculum started from the shipped weights themselves; the
    shipped card's phases and training become the new card's earlier phases, and its
    command the first part of the new one. Both together: shipped, then ``init_run``
    (which started from the shipped weights), then ``run``. ``status``: what the model
    is good for yet, in words, for whoever reads the card."""
    history = json.loads((run / "history.json").read_text())
    earlier: list[dict] = []
    if after_shipped:
        before = json.loads((models / f"{name}.json").read_text())
        earlier = [*before.get("phases", []), _phase_of_card(before["training"])]
        shell, _, _ = before["training"]["command"].partition("  # ")  # its note stays there
        command = f"{shell} && {command}"
    if init_run:
        earlier.append(_phase(json.loads((init_run / "history.json").read_text())))
    state = torch.load(run / checkpoint, map_location="cpu", weights_only=True)["model"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    target = models / f"{name}.pt"
    torch.save({"model": state}, target)
    data = target.read_bytes()
    cfg = portable_paths(history["config"])
    card = {
        "name": name,
        "config": f"{name}.yaml",
        "image_size": cfg["image_size"],
        "architecture": "SAM 2.1 (sam2 1.1.0 code): Hiera 32-dim [1,1,2,1], FPN 64, "
                        "2 memory-attention layers of 64, 32-channel memory, 7 memories",
        "parameters": sum(v.numel() for v in state.values()),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sam2_version": metadata.version("sam2"),
        "training": {
            "command": command,
            "data": "sam_batch.synthetic videos (2-4 objects, 30% look-alikes crossing, "
                    "50% entering/leaving, an entering object prompted where it first "
                    "shows), clips of clip_frames frames",
            "video_seeds": history["train_seeds"],
            "held_out_seeds": f"0..{HELD_OUT_SEEDS_END - 1} are never trained on",
            "selection_seeds": history["eval_seeds"],
            "steps": history["steps"],
            "minutes": history.get("minutes"),
            "picked": _picked(history, checkpoint, why),
            "config": cfg,
            "history": [{k: h[k] for k in ("step", "minutes", "loss", "mean") if k in h}
                        for h in history["history"]],
        },
        "phases": earlier,
        "held_out": (quality or {}).get("runs", {}),
        "held_out_setup": {k: v for k, v in (quality or {}).items() if k != "runs"},
        **({"status": status} if status else {}),
    }
    (models / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _picked(history: dict, checkpoint: str, why: str) -> str:
    """Which checkpoint ships, its selection-seed scores, and why it (``why``)."""
    found = re.fullmatch(r"step-(\d+)\.pt", checkpoint)
    if found:
        step = int(found.group(1))
        scores = next(h for h in history["history"] if h["step"] == step)
        scores = {k: v for k, v in scores.items() if k not in ("step", "minutes", "loss")}
    else:
        step, scores = history["best"]["step"], history["best"].get("scores")
    text = f"{checkpoint}: step {step}, held-out J&F on the selection seeds {json.dumps(scores)}"
    return f"{text}; {why}" if why else text


def portable_paths(cfg: dict, cwd: Path | None = None) -> dict:
    """A run's settings with its paths as a reader can use them: the shipped YAML by
    its place in the repository, anything under the working folder relative to it,
    and a path elsewhere by its last two parts (``runs/B``), never a machine's own.

    >>> portable_paths({"out": "/data/runs/B", "init": "",
    ...                 "config": "/src/x/sam_batch/models/sam-batch-tiny.yaml"}, Path("/src"))
    {'out': 'runs/B', 'init': '', 'config': 'sam_batch/models/sam-batch-tiny.yaml'}
    """
    cwd = (cwd or Path.cwd()).resolve()
    out = dict(cfg)
    for key in ("out", "config", "init"):
        value = out.get(key)
        if not value or not Path(value).is_absolute():
            continue
        path = Path(value)
        if path.parent.name == "models" and path.parent.parent.name == "sam_batch":
            out[key] = f"sam_batch/models/{path.name}"
        elif path.is_relative_to(cwd):
            out[key] = str(path.relative_to(cwd))
        else:
            out[key] = str(Path(*path.parts[-2:]))
    return out


def _phase(history: dict) -> dict:
    return {"config": portable_paths(history["config"]), "steps": history["steps"],
            "video_seeds": history["train_seeds"], "minutes": history.get("minutes")}


def _phase_of_card(training: dict) -> dict:
    """A shipped card's ``training`` block as one phase of a longer curriculum."""
    return {k: training.get(k) for k in ("config", "steps", "video_seeds", "minutes", "picked")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sam_batch.training.ship", description=__doc__)
    ap.add_argument("--run", required=True, type=Path, help="the training --out folder")
    ap.add_argument("--command", required=True, help="the command that trained it")
    ap.add_argument("--checkpoint", default="best.pt")
    ap.add_argument("--quality", type=Path, help="bench/quality.py --json output")
    ap.add_argument("--init-run", type=Path, help="the run --run started from (--init)")
    ap.add_argument("--why", default="", help="how the checkpoint was picked, for the card")
    ap.add_argument("--status", default="", help="what the model is good for yet, for the card")
    ap.add_argument("--after-shipped", action="store_true",
                    help="--run started from the shipped weights: extend their card")
    args = ap.parse_args(argv)
    quality = json.loads(args.quality.read_text()) if args.quality else None
    card = ship(args.run, args.command, quality, checkpoint=args.checkpoint,
                init_run=args.init_run, after_shipped=args.after_shipped, why=args.why,
                status=args.status)
    print(json.dumps({k: card[k] for k in ("name", "bytes", "sha256")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
