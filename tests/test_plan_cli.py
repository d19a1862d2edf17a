"""``sam-batch plan`` prints the plan ``sam-batch run`` would execute, segments included."""

from __future__ import annotations

import json

from sam_batch.cli import main
from sam_batch.plan.chunks import plan_video
from sam_batch.synthetic import write_sample


def test_plan_shows_the_segments_and_chunks_the_run_would_use(tmp_path, capsys):
    _, manifest = write_sample(tmp_path, num_frames=40, width=64, height=48)
    code = main(["plan", "--manifest", str(manifest), "--random-weights", "--chunk-frames", "8",
                 "--segments", "2", "--overlap", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    row = next(line.split() for line in out.splitlines() if line.startswith("sample "))
    expected = plan_video("sample", 40, 8, segments=2, overlap=4)
    assert row[1] == "40" and row[5:7] == ["2", str(len(expected.chunks))]
    assert len(expected.chunks) == 6  # [0, 20) in 3 chunks, [16, 40) in 3


def test_the_driver_and_plan_never_import_torch(tmp_path):
    """torch and sam2 load in the actors only: the driver, ``plan`` and ``inspect``
    start in about a second instead of four, and a driver node needs no CUDA."""
    import subprocess
    import sys

    _, manifest = write_sample(tmp_path, num_frames=12, width=64, height=48)
    script = (
        "import sys\n"
        "import sam_batch, sam_batch.driver.job, sam_batch.dataset.reader\n"
        "import sam_batch.evaluation.evaluate\n"
        "from sam_batch.cli import main\n"
        f"assert main(['plan', '--manifest', {str(manifest)!r}, '--random-weights']) == 0\n"
        "print('torch' in sys.modules, 'sam2' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout + done.stderr


def test_plan_shows_the_object_groups_objects_per_worker_splits_a_video_into(tmp_path, capsys):
    video, _ = write_sample(tmp_path, num_frames=16, width=64, height=48)
    manifest = tmp_path / "three.jsonl"
    boxes = [{"obj_id": o, "frame": 0, "box": [4 * o, 4, 4 * o + 10, 20]} for o in (1, 2, 3)]
    manifest.write_text(json.dumps({"video": str(video), "video_id": "sample",
                                    "prompts": boxes}) + "\n")
    code = main(["plan", "--manifest", str(manifest), "--random-weights", "--chunk-frames", "8",
                 "--objects-per-worker", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("sample "))
    row = lines[at].split()
    assert row[5:8] == ["1", "4", "2"]  # 2 chunks, run once per group
    assert lines[at + 1].split(":", 1)[1].split() == ["1,2", "|", "3"]
    assert "8 chunks" not in out and "in 4 chunks" in out

    main(["plan", "--manifest", str(manifest), "--random-weights", "--chunk-frames", "8"])
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("sample "))
    assert row[5:8] == ["1", "2", "1"]
