"""A video run as consecutive chunks equals one uninterrupted official SAM 2 pass.

Both sides see the same decoded pixels: our tracker decodes the mp4 itself, the
official ``SAM2VideoPredictor`` reads those decoded frames from a folder through
its own JPEG-folder loader (PIL opens by content, so lossless PNG bytes under
``.jpg`` names reach it unchanged) and prepares them with its own code. Each chunk
runs in a fresh tracker built only from the previous chunk's state, after a round
trip through bytes. Random weights at image size 256 give logits near zero, so a
difference anywhere (resize, dtype, a missing memory) flips pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import Logits, official_pass
from sam2.build_sam import build_sam2_video_predictor

from sam_batch.errors import StateMismatchError
from sam_batch.plan.prompts import Prompt
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4
from sam_batch.track.frames import ArrayFrames, VideoFrames, prepare_frame
from sam_batch.track.model import LoadedModel, ModelSpec, load_model
from sam_batch.track.state import MemoryState
from sam_batch.track.tracker import ChunkTracker

IMAGE_SIZE = 256
SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """The official predictor with seeded random weights, and those weights as a file."""
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        SAM2_CONFIG, device="cpu", hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"]
    )
    checkpoint = tmp_path_factory.mktemp("ckpt") / "random.pt"
    torch.save({"model": predictor.state_dict()}, checkpoint)
    return predictor, checkpoint


def ours(checkpoint: Path, precision: str = "float32") -> LoadedModel:
    return load_model(
        ModelSpec(
            checkpoint=str(checkpoint), image_size=IMAGE_SIZE, device="cpu", precision=precision
        )
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> VideoFrames:
    """36 frames, 3 objects, H.264 written by PyAV, opened with our decoder."""
    clip = generate(3, width=64, height=48, num_frames=36, num_objects=3, enter_leave=False)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(clip, path, gop_size=8)
    return VideoFrames.open(str(path))


def decoded(source: VideoFrames) -> np.ndarray:
    return np.stack([rgb for _, rgb in source.read(0, source.num_frames)])


def three_object_prompts(source: VideoFrames) -> list[Prompt]:
    """A click, a box and a mask on frame 0, and a second click on a later frame."""
    clip = generate(3, width=64, height=48, num_frames=36, num_objects=3, enter_leave=False)
    points, box, mask = (first_frame_prompts(clip, kind) for kind in ("points", "box", "mask"))
    first = [
        Prompt.from_dict({**points[0], "frame": 0}),
        Prompt.from_dict({**box[1], "frame": 0}),
        Prompt.from_dict({**mask[2], "frame": 0}),
    ]
    later = Prompt.from_dict(
        {"obj_id": 1, "frame": 22, "points": [[30, 20], [5, 5]], "labels": [1, 0]}
    )
    return [*first, later]


def chunked_pass(
    model: LoadedModel, source, prompts: list[Prompt], chunk: int, tamper=None,
    preprocess: str = "auto",
) -> Logits:
    """Consecutive chunks, each in a fresh tracker fed only the deserialized state."""
    state = ChunkTracker(model, preprocess=preprocess).start(source, prompts)
    logits: Logits = {}
    for start in range(0, source.num_frames, chunk):
        state = MemoryState.from_bytes(state.to_bytes(), expect_model=model.identity)
        if tamper is not None and start > 0:
            state = tamper(state)
        run = ChunkTracker(model, keep_logits=True, preprocess=preprocess).track(
            state, source, min(start + chunk, source.num_frames)
        )
        for out in run:
            logits[out.frame_idx] = dict(zip(out.obj_ids, out.logits, strict=True))
        state = run.state
    assert state.next_frame == source.num_frames
    return logits


def assert_identical(reference: Logits, got: Logits) -> None:
    assert sorted(got) == sorted(reference), "different frames tracked"
    for f, objs in reference.items():
        assert sorted(got[f]) == sorted(objs), f"different objects on frame {f}"
        for obj_id, ref in objs.items():
            flipped = int(((got[f][obj_id] > 0) != (ref > 0)).sum())
            assert flipped == 0, f"frame {f} object {obj_id}: {flipped} mask pixels differ"
            diff = float((got[f][obj_id] - ref).abs().max())
            assert diff <= 1e-4, f"frame {f} object {obj_id}: logits differ by {diff}"


def mask_balance(reference: Logits) -> float:
    return float(
        np.mean([float((v > 0).float().mean()) for o in reference.values() for v in o.values()])
    )


@pytest.fixture(scope="module")
def three_objects(official, video, tmp_path_factory) -> tuple[list[Prompt], Logits]:
    prompts = three_object_prompts(video)
    reference = official_pass(
        official[0], decoded(video), prompts, tmp_path_factory.mktemp("frames")
    )
    # The test is only as sharp as its masks are undecided: neither empty nor full.
    assert 0.05 < mask_balance(reference) < 0.95
    return prompts, reference


@pytest.mark.slow
@pytest.mark.parametrize(
    "chunk",
    [4, 5, 12, 17],
    ids=["shorter-than-num_maskmem", "not-dividing", "dividing", "longer-than-obj-ptr-window"],
)
def test_chunked_equals_single_pass_three_objects_second_prompt_in_later_chunk(
    official, video, three_objects, chunk
):
    prompts, reference = three_objects
    assert_identical(reference, chunked_pass(ours(official[1]), video, prompts, chunk))


@pytest.mark.slow
def test_frames_prepared_on_the_device_track_exactly_as_the_official_loader(
    official, video, three_objects
):
    """The device path (``resample``: PIL's resize as integer tensor ops) on the CPU
    device: the same logits as the predictor fed by its own PIL loader."""
    prompts, reference = three_objects
    got = chunked_pass(ours(official[1]), video, prompts, 12, preprocess="device")
    assert_identical(reference, got)


@pytest.mark.slow
def test_chunked_equals_single_pass_one_object(official, video, tmp_path):
    prompts = [p for p in three_object_prompts(video) if p.obj_id == 1]
    reference = official_pass(official[0], decoded(video), prompts, tmp_path / "frames")
    assert_identical(reference, chunked_pass(ours(official[1]), video, prompts, 17))


@pytest.mark.slow
def test_chunked_equals_single_pass_with_object_first_prompted_in_later_chunk(
    official, video, tmp_path
):
    """Object 2 is first prompted on frame 5, in the second chunk; like the
    predictor, we give it masks from frame 0 on, computed with its future prompt's
    memory. The official predictor needs bfloat16 autocast for this on the CPU."""
    frames = decoded(video)[:8]
    prompts = [
        Prompt(obj_id=1, frame=0, points=((20.0, 20.0),), labels=(1,)),
        Prompt(obj_id=2, frame=5, box=(30.0, 10.0, 60.0, 40.0)),
    ]
    reference = official_pass(official[0], frames, prompts, tmp_path / "frames", bf16=True)
    assert sorted(reference[0]) == [1, 2]
    got = chunked_pass(ours(official[1], "bfloat16"), ArrayFrames(frames), prompts, chunk=3)
    assert_identical(reference, got)


@pytest.mark.slow
def test_exactness_check_fails_on_a_wrong_state(official, video, three_objects):
    """The comparison can fail: forget each object's latest memory at every hand-off."""
    prompts, reference = three_objects

    def forget_latest(state: MemoryState) -> MemoryState:
        from dataclasses import replace

        objects = tuple(
            replace(o, non_cond={f: m for f, m in o.non_cond.items() if f != max(o.non_cond)})
            for o in state.objects
        )
        return replace(state, objects=objects)

    got = chunked_pass(ours(official[1]), video, prompts, 12, tamper=forget_latest)
    with pytest.raises(AssertionError, match="differ"):
        assert_identical(reference, got)


def test_float32_tracks_an_object_before_its_first_prompt_where_official_fails(official, tmp_path):
    """The official predictor stores bfloat16 memories and fails in float32 when an
    object has memories but no past pointer; our exact upcast runs it."""
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    prompts = [
        Prompt(obj_id=1, frame=0, points=((20.0, 20.0),), labels=(1,)),
        Prompt(obj_id=2, frame=2, points=((40.0, 30.0),), labels=(1,)),
    ]
    with pytest.raises(RuntimeError, match="same dtype"):
        official_pass(official[0], frames, prompts, tmp_path / "frames")
    tracker = ChunkTracker(ours(official[1]))
    source = ArrayFrames(frames)
    outs = list(tracker.track(tracker.start(source, prompts), source, 4))
    assert [o.obj_ids for o in outs] == [(1, 2)] * 4


def test_preprocessing_matches_the_official_loader(video, tmp_path):
    from sam2.utils.misc import load_video_frames

    frames = decoded(video)[:3]
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(tmp_path / f"{i:05d}.jpg", format="PNG")
    images, height, width = load_video_frames(
        str(tmp_path), IMAGE_SIZE, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (height, width) == (48, 64)
    for i, rgb in enumerate(frames):
        assert torch.equal(prepare_frame(rgb, IMAGE_SIZE), images[i])


def test_random_weights_equal_the_official_build_with_the_same_seed(official):
    model = load_model(ModelSpec(random_weights=True, seed=0, image_size=IMAGE_SIZE, device="cpu"))
    theirs = official[0].state_dict()
    mine = model.predictor.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_state_from_another_model_is_refused(official):
    frames = ArrayFrames(np.zeros((3, 48, 64, 3), np.uint8))
    prompt = Prompt(obj_id=1, frame=0, points=((20.0, 20.0),), labels=(1,))
    state = ChunkTracker(ours(official[1])).start(frames, [prompt])
    other = load_model(ModelSpec(random_weights=True, seed=1, image_size=IMAGE_SIZE, device="cpu"))
    with pytest.raises(StateMismatchError, match="another model"):
        MemoryState.from_bytes(state.to_bytes(), expect_model=other.identity)
    with pytest.raises(StateMismatchError, match="weights"):
        ChunkTracker(other).track(state, frames, 3)
    with pytest.raises(StateMismatchError, match="not a sam_batch memory state"):
        MemoryState.from_bytes(b"garbage")


@pytest.mark.slow
def test_state_size_does_not_grow_with_the_video(official):
    frames = ArrayFrames(np.random.default_rng(1).integers(0, 255, (40, 48, 64, 3), np.uint8))
    model = ours(official[1])
    tracker = ChunkTracker(model)
    state = tracker.start(frames, [Prompt(obj_id=1, frame=0, points=((20.0, 20.0),), labels=(1,))])
    sizes = []
    for start in range(0, 40, 8):
        run = tracker.track(state, frames, start + 8)
        for _ in run:
            pass
        state = run.state
        sizes.append(len(state.to_bytes()))
    # Full windows from the third chunk on (6 memories, 15 pointers): constant size.
    assert len(set(sizes[2:])) == 1, sizes
    o = state.objects[0]
    assert sorted(o.non_cond) == list(range(25, 40))
    assert [f for f, m in o.non_cond.items() if m.maskmem_features is not None] == list(
        range(34, 40)
    )
