"""``sam-batch plan`` prints the plan ``sam-batch run`` would execute, segments included."""

from __future__ import annotations

from sam_batch.cli import main
from sam_batch.plan import plan_video
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
