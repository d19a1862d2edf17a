"""The training step: what a batch of clips and late prompts mean for the losses.

Small and fast (a 64-pixel random sam-batch-tiny, 4-frame clips, one thread);
``test_shipped_model.py`` checks that the step learns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_batch.track.model import ModelSpec, load_model
from sam_batch.training.data import MIN_PROMPT_AREA, TRAIN_SEED_BASE, make_clip
from sam_batch.training.step import train_step


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield load_model(ModelSpec(config="sam-batch-tiny", random_weights=True, image_size=64,
                               device="cpu")).predictor.train()
    torch.set_num_threads(before)


def clips(kind: str, n: int, frames: int = 4, start: int = 0) -> list:
    rng, out, seed = np.random.default_rng(start), [], TRAIN_SEED_BASE + start
    while len(out) < n:
        clip = make_clip(seed, 64, frames, rng, max_objects=3, kind=kind,
                         later_prompt_prob=0.5)
        seed += 1
        if clip is not None:
            out.append(clip)
    return out


@pytest.mark.parametrize("kind", ["mask", "box"])
def test_a_batch_of_clips_has_the_losses_of_its_clips_alone(model, kind):
    batch = clips(kind, 3)
    with torch.no_grad():
        together = train_step(model, batch)
        alone = [train_step(model, c) for c in batch]
    # Each clip counts by its object-frames: a mask prompt's own frame has no loss.
    weights = [sum(len(rows) * (c.masks.shape[1] - (kind == "mask")) for _, rows in c.groups())
               for c in batch]
    for k, v in together.items():
        expect = sum(w * a[k] for w, a in zip(weights, alone, strict=True)) / sum(weights)
        assert float(v) == pytest.approx(float(expect), rel=1e-4, abs=1e-6), k


def test_objects_entering_later_are_prompted_where_they_first_show():
    rng, found = np.random.default_rng(1), 0
    for seed in range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 60):
        clip = make_clip(seed, 64, 8, rng, max_objects=4, later_prompt_prob=0)
        if clip is None:
            continue
        shows = clip.masks.flatten(2).sum(2) >= MIN_PROMPT_AREA  # [N, T]
        for i, frame in enumerate(clip.cond_frames):
            first = int(torch.nonzero(shows[i])[0])
            assert frame == first  # prompted on frame 0 (the clip's) or where it enters
            found += frame > 0
    assert found, "no clip had an object entering after its first frame"


def test_late_prompted_objects_are_scored_before_their_prompt(model):
    """An entering object's frames before its prompt are tracked from that future
    prompt (SAM 2's way) and scored: it must learn to say 'not here' there."""
    clip = next(c for c in clips("mask", 40, frames=6) if max(c.cond_frames) > 1)
    late = [i for i, f in enumerate(clip.cond_frames) if f > 1]

    def losses_with(masks: torch.Tensor) -> dict:
        only_late = type(clip)(clip.images, masks, clip.prompt_kind, clip.point_coords[late],
                               clip.point_labels[late], tuple(clip.cond_frames[i] for i in late))
        with torch.no_grad():
            return train_step(model, only_late)

    truth = clip.masks[late]
    before = losses_with(truth)
    wrong = truth.clone()
    for row, i in enumerate(late):  # claim the object was already there before its prompt
        wrong[row, :clip.cond_frames[i]] = truth[row, clip.cond_frames[i]]
    after = losses_with(wrong)
    assert all(torch.isfinite(v) for v in before.values())
    # The truth of those frames alone changed, and so did the losses: they are scored.
    assert float(after["presence"]) != pytest.approx(float(before["presence"]), abs=1e-4)
    assert float(after["dice"]) > float(before["dice"])  # a mask is now due there


def test_shipping_a_continued_run_records_the_whole_curriculum(tmp_path):
    """Shipped weights -> a run from them -> a run from that: the card keeps every
    phase and the command that reproduces all of them, not only the last run's."""
    import json
    import shutil

    from sam_batch.models import HERE
    from sam_batch.training.ship import ship

    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(HERE / "sam-batch-tiny.json", models / "sam-batch-tiny.json")
    shipped = json.loads((models / "sam-batch-tiny.json").read_text())
    weights = {"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor([3])}
    runs = []
    for name, init, steps in (("c", "sam-batch-tiny.pt", 10), ("e", "c/step-000010.pt", 20)):
        run = tmp_path / name
        run.mkdir()
        torch.save({"model": weights}, run / f"step-{steps:06d}.pt")
        history = {"config": {"init": init, "image_size": 128, "lr": 1e-4}, "steps": steps,
                   "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + steps],
                   "eval_seeds": [900], "minutes": 1.0,
                   "best": {"step": steps, "scores": {"mean": 0.5}},
                   "history": [{"step": steps, "minutes": 1.0, "loss": 0.7, "mean": 0.5}]}
        (run / "history.json").write_text(json.dumps(history))
        runs.append(run)

    card = ship(runs[1], "python -m sam_batch.training --out e", {"runs": {}},
                checkpoint="step-000020.pt", init_run=runs[0], after_shipped=True,
                models=models, why="best on seeds 950-969", status="a stand-in")
    assert card["status"] == "a stand-in"
    assert card["training"]["picked"] == ('step-000020.pt: step 20, held-out J&F on the '
                                          'selection seeds {"mean": 0.5}; best on seeds 950-969')
    phases = card["phases"]
    assert len(phases) == len(shipped["phases"]) + 2
    assert phases[-2]["config"] == shipped["training"]["config"]
    assert phases[-1]["config"]["init"] == "sam-batch-tiny.pt" and phases[-1]["steps"] == 10
    assert card["training"]["steps"] == 20
    command = card["training"]["command"]
    assert command.startswith(shipped["training"]["command"][:60]) and "  # " not in command
    assert command.endswith(" && python -m sam_batch.training --out e")
    saved = torch.load(models / "sam-batch-tiny.pt", weights_only=True)["model"]
    assert saved["w"].dtype == torch.float32 and saved["n"].dtype == torch.int64
    assert json.loads((models / "sam-batch-tiny.json").read_text()) == card
