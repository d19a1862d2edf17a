"""Exit codes a scheduler or a shell script acts on: 0 every video ok, 1 some videos
failed (recorded in ``videos/``), 2 the job could not run at all."""

from __future__ import annotations

import pytest

from sam_batch.cli import main
from sam_batch.synthetic import write_sample


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--manifest", "{tmp}/missing.jsonl", "--random-weights"], "missing.jsonl"),
        (["--manifest", "{manifest}", "--random-weights", "--chunk-frames", "0"], "chunk"),
        (["--manifest", "{manifest}", "--checkpoint", "{tmp}/nowhere.pt"], "nowhere.pt"),
    ],
    ids=["no manifest", "chunk of 0 frames", "no checkpoint"],
)
def test_a_job_that_cannot_run_exits_2_and_says_why(tmp_path, capsys, flags, named):
    _, manifest = write_sample(tmp_path, num_frames=8, width=64, height=48)
    flags = [f.format(tmp=tmp_path, manifest=manifest) for f in flags]
    code = main(["run", *flags, "--output", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "sam-batch: error:" in err and named in err, err
    assert not (tmp_path / "out" / "_job.json").exists()
