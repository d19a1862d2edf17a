"""The shipped model (``--model sam-batch-tiny``) and the training that made it.

The shipped weights are what demos and tests rely on for real tracking with
no download, so: they load by name alone, stay small, carry their identity,
and track held-out synthetic videos (seeds never trained on) through the real
``sam-batch run`` path at least as well as the model card says, minus a small
margin; continued chunks give exactly the single pass. The training step is
checked to run and to learn on one fixed clip.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run
from sam_batch.evaluation.evaluate import evaluate, identity_f1
from sam_batch.models import SHIPPED, model_card, shipped
from sam_batch.synthetic import first_frame_prompts, generate, write_davis_png, write_mp4
from sam_batch.track.model import ModelSpec, load_model
from sam_batch.training.data import HELD_OUT_SEEDS_END, TRAIN_SEED_BASE, make_clip
from sam_batch.training.step import train_step

#: Floors a few points under what was measured: bench/quality.py on 20 held-out videos
#: (the model card: single-pass J&F 0.493), and this test's own two harder videos
#: (single pass and 2 stitched segments J&F 0.331, discovery IDF1 0.258). All far below
#: the issue's 0.85: the shipped model is still weak (see its card's "status").
CARD_FLOOR = 0.47
SINGLE_PASS_FLOOR = 0.30
SEGMENTS_FLOOR = 0.30
DISCOVERY_FLOOR = 0.22
HELD_OUT = (4, 7)  # held-out seeds (< HELD_OUT_SEEDS_END); 7 has look-alikes crossing
FRAMES, SIZE = 24, 256


def test_shipped_files_are_small_and_described():
    model = shipped("sam-batch-tiny")
    assert "sam-batch-tiny" in SHIPPED
    assert model.checkpoint.stat().st_size <= 20 * 2**20
    card = model_card("sam-batch-tiny")
    assert card["image_size"] == model.image_size == 128
    assert min(card["training"]["video_seeds"]) >= TRAIN_SEED_BASE > HELD_OUT_SEEDS_END
    assert "python -m sam_batch.training" in card["training"]["command"]
    assert card["held_out"]["single"]["J&F"] >= CARD_FLOOR


def test_model_name_alone_loads_the_shipped_weights_with_their_identity():
    loaded = load_model(ModelSpec(config="sam-batch-tiny", device="cpu"))
    path = shipped("sam-batch-tiny").checkpoint
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.identity.weights == f"sha256:{digest}"
    assert loaded.identity.config == "sam-batch-tiny"
    assert loaded.image_size == 128
    assert all(p.dtype == torch.float32 for p in loaded.predictor.parameters())
    # Random weights of the same architecture stay possible; other configs keep the rule.
    assert load_model(ModelSpec(config="sam-batch-tiny", random_weights=True, device="cpu")
                      ).identity.weights == "random:seed=0"
    with pytest.raises(Exception, match="exactly one"):
        ModelSpec(config="sam2.1_hiera_t").validate()


@pytest.fixture
def one_thread():
    """Training runs on one thread (as ``--threads 1``); many threads on a busy
    2-core machine spin-wait and run ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_step_runs_and_learns_one_clip(one_thread):
    torch.manual_seed(0)
    model = load_model(ModelSpec(config="sam-batch-tiny", random_weights=True, image_size=64,
                                 device="cpu")).predictor.train()
    rng = np.random.default_rng(0)
    clip = None
    seed = TRAIN_SEED_BASE
    while clip is None:
        clip = make_clip(seed, 64, 3, rng, max_objects=2, prompt_probs=(0, 1, 0),
                         later_prompt_prob=0)
        seed += 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = sum(train_step(model, clip, rng).values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses


def test_held_out_seeds_are_refused_for_training():
    with pytest.raises(ValueError, match="held-out"):
        make_clip(5, 64, 3, np.random.default_rng(0))


@pytest.mark.slow
def test_shipped_model_tracks_held_out_videos_through_sam_batch_run(ray_local, tmp_path):
    rows = []
    for seed in HELD_OUT:
        clip = generate(seed, width=SIZE, height=SIZE, num_frames=FRAMES,
                        lookalike_crossing=bool(seed % 2))
        vid = f"heldout-{seed:02d}"
        path = write_mp4(clip, tmp_path / f"{vid}.mp4").path
        write_davis_png(clip, tmp_path / "gt" / vid)
        rows.append({"video": str(path), "video_id": vid,
                     "prompts": first_frame_prompts(clip, "mask", min_area=16)})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bare = tmp_path / "bare.jsonl"  # the same videos without prompts, for discovery
    bare.write_text("".join(json.dumps({k: r[k] for k in ("video", "video_id")}) + "\n"
                            for r in rows))

    scores, masks = {}, {}
    for name, source, extra in (("single", manifest, {"chunk_frames": FRAMES}),
                                ("chunked", manifest, {"chunk_frames": 8}),
                                ("segments", manifest, {"chunk_frames": 8, "segments": 2}),
                                ("discovery", bare, {"chunk_frames": 8, "discover": "every:8"})):
        out = str(tmp_path / name)
        summary = run(JobConfig(manifest=str(source), output=out, model="sam-batch-tiny",
                                workers=1, cpus_per_worker=1, device="cpu", progress="off",
                                **extra))
        assert summary.ok, summary.text()
        job = json.loads((Path(out) / "_job.json").read_text())
        assert "sam-batch-tiny" in json.dumps(job)
        if name == "discovery":
            scores[name] = identity_f1(out, str(tmp_path / "gt"))
            continue
        scores[name] = evaluate(out, str(tmp_path / "gt")).overall.jf
        masks[name] = sorted((r["video_id"], r["frame_idx"], r["obj_id"], r["rle"])
                             for r in Dataset(out).masks().to_pylist())
    assert scores["single"] >= SINGLE_PASS_FLOOR, scores
    assert masks["chunked"] == masks["single"]  # continued chunks: the single pass, exactly
    assert scores["chunked"] == scores["single"]
    assert scores["segments"] >= SEGMENTS_FLOOR, scores  # stitched from 2 parallel segments
    assert scores["discovery"] >= DISCOVERY_FLOOR, scores  # no prompts: found and kept
