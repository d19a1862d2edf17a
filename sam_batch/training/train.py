"""The training loop: synthetic clips in, periodic checkpoints and a log out.

One step is one clip (``step.train_step``); AdamW with a linear warm-up and a
cosine decay, gradient clipping as SAM 2's trainer does. Every
``eval_every`` steps the model is scored on held-out videos
(``heldout.heldout_jf``) and saved as ``step-XXXXXX.pt``; ``best.pt`` is the
best score so far, so whatever is best when the run ends (or is stopped) is
what ships. ``history.json`` holds the config, the scores and the losses.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sam_batch.track.model import ModelSpec, load_model, quiet_sam2_progress
from sam_batch.training.data import (
    HELD_OUT_SEEDS_END,
    PROMPT_KINDS,
    TRAIN_SEED_BASE,
    make_clip,
)
from sam_batch.training.heldout import heldout_jf
from sam_batch.training.step import train_step

log = logging.getLogger("sam_batch.training")
CONFIG = str(Path(__file__).resolve().parent.parent / "models" / "sam-batch-tiny.yaml")


@dataclass
class TrainConfig:
    """Every knob of a run; ``history.json`` and the model card record all of them."""

    out: str
    steps: int = 6000
    minutes: float = 0.0  # > 0: stop after this much wall time, wherever ``steps`` is
    seed: int = 0
    config: str = CONFIG
    init: str = ""  # start from this checkpoint (a phase of a curriculum), not from random
    image_size: int = 128
    clip_frames: int = 8
    batch: int = 1  # clips per step, sharing one prompt kind (on a GPU, many)
    max_objects: int = 4
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 200
    grad_clip: float = 1.0
    correct_prob: float = 0.5
    ema: float = 0.0  # > 0: evaluate and save an exponential moving average of the weights
    later_prompt_prob: float = 0.2
    prompt_mix: str = "0.4,0.3,0.3"  # probabilities of mask, box and click prompts
    threads: int = 1
    eval_every: int = 500
    eval_videos: int = 4
    eval_seed_start: int = 900  # held-out seeds [900, 900 + eval_videos) pick checkpoints


def video_seed(cfg: TrainConfig, index: int) -> int:
    """The seed of the ``index``-th training video: disjoint from every held-out seed."""
    return TRAIN_SEED_BASE + cfg.seed * 10_000_000 + index


def train(cfg: TrainConfig) -> dict:
    """Run training; returns the summary also written to ``<out>/history.json``."""
    torch.set_num_threads(cfg.threads)
    quiet_sam2_progress()
    if cfg.eval_seed_start + cfg.eval_videos > HELD_OUT_SEEDS_END:
        raise ValueError("evaluation seeds must stay below HELD_OUT_SEEDS_END")
    model = _starting_model(cfg)
    # One clip per step makes noisy steps: held-out scores of consecutive checkpoints
    # swing by 0.05-0.1 J&F. The moving average of the weights is what gets scored
    # and saved, when asked for; the raw weights keep training.
    averaged = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema > 0 else model
    mix = [float(x) for x in cfg.prompt_mix.split(",")]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    log_book = _LogBook(cfg, averaged)
    step = 0
    while step < cfg.steps:
        if cfg.minutes > 0 and log_book.seconds() > cfg.minutes * 60:
            log.info("time budget of %.0f minutes reached at step %d", cfg.minutes, step)
            break
        kind = str(rng.choice(PROMPT_KINDS, p=mix))
        clips = [make_clip(video_seed(cfg, step * cfg.batch + b), cfg.image_size,
                           cfg.clip_frames, rng, cfg.max_objects,
                           later_prompt_prob=cfg.later_prompt_prob, kind=kind)
                 for b in range(cfg.batch)]
        clips = [c for c in clips if c is not None]
        step += 1
        if not clips:
            continue
        lr = _learning_rate(cfg, step)
        losses = train_step(model, clips, rng, cfg.correct_prob)
        loss = _optimise(model, opt, lr, losses, cfg.grad_clip)
        if averaged is not model:
            _update_average(averaged, model, cfg.ema)
        log_book.step_done(step, loss, losses, lr)
        if step % cfg.eval_every == 0:
            log_book.checkpoint(step)
    return log_book.close(step)


def _starting_model(cfg: TrainConfig) -> torch.nn.Module:
    """Random weights from ``cfg.seed``, or ``cfg.init``'s; in training mode."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    model = load_model(ModelSpec(config=cfg.config, random_weights=True, seed=cfg.seed,
                                 image_size=cfg.image_size, device="cpu")).predictor
    if cfg.init:
        state = torch.load(cfg.init, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    model.train()
    return model


def _learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to 5% of ``cfg.lr``."""
    return cfg.lr * min(1.0, step / cfg.warmup) * (
        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0))))


def _optimise(model: torch.nn.Module, opt: torch.optim.Optimizer, lr: float,
              losses: dict[str, torch.Tensor], grad_clip: float) -> float:
    """One optimiser step on the summed ``losses`` (returned), gradients clipped as SAM 2 does."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return float(loss.detach())


class _LogBook:
    """The run's log, checkpoints and ``history.json``, from the weights that ship."""

    def __init__(self, cfg: TrainConfig, averaged: torch.nn.Module):
        self.cfg = cfg
        self.averaged = averaged
        self.out = Path(cfg.out)
        self.eval_seeds = list(range(cfg.eval_seed_start, cfg.eval_seed_start + cfg.eval_videos))
        self.t0 = time.monotonic()
        self.best: dict = {"jf": -1.0, "step": 0}
        self.history: list[dict] = []
        self.recent: list[float] = []

    def seconds(self) -> float:
        return time.monotonic() - self.t0

    def step_done(self, step: int, loss: float, losses: dict[str, torch.Tensor],
                  lr: float) -> None:
        self.recent.append(loss)
        if step % 50 == 0:
            log.info("step %d loss %.3f (last 50) %s lr %.2e %.2f steps/s", step,
                     np.mean(self.recent[-50:]),
                     " ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items()), lr,
                     step / self.seconds())

    def checkpoint(self, step: int) -> None:
        """Score the weights on the held-out videos, save them, keep the best."""
        cfg, out = self.cfg, self.out
        scores = heldout_jf(self.averaged, self.eval_seeds)
        minutes = self.seconds() / 60
        self.history.append({"step": step, "minutes": round(minutes, 2),
                             "loss": float(np.mean(self.recent)) if self.recent else None,
                             **scores})
        self.recent.clear()
        log.info("step %d held-out J&F %s (%.1f min)", step,
                 " ".join(f"{k} {v:.3f}" for k, v in scores.items()), minutes)
        path = out / f"step-{step:06d}.pt"
        torch.save({"model": self.averaged.state_dict()}, path)
        if scores["mean"] > self.best["jf"]:
            self.best.update(jf=scores["mean"], step=step, scores=scores)
            shutil.copyfile(path, out / "best.pt")
        (out / "history.json").write_text(json.dumps(
            {"config": asdict(cfg), "best": self.best, "history": self.history, "steps": step,
             "train_seeds": [video_seed(cfg, 0), video_seed(cfg, step * cfg.batch)],
             "eval_seeds": self.eval_seeds}, indent=2))

    def close(self, step: int) -> dict:
        """The last checkpoint, if the run stopped between two; the summary."""
        if not self.history or self.history[-1]["step"] != step:
            self.checkpoint(step)
        summary = json.loads((self.out / "history.json").read_text())
        summary["minutes"] = round(self.seconds() / 60, 2)
        (self.out / "history.json").write_text(json.dumps(summary, indent=2))
        return summary


@torch.no_grad()
def _update_average(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``averaged = decay * averaged + (1 - decay) * model``; buffers are copied."""
    for a, p in zip(averaged.parameters(), model.parameters(), strict=True):
        a.lerp_(p, 1.0 - decay)
    for a, b in zip(averaged.buffers(), model.buffers(), strict=True):
        a.copy_(b)
