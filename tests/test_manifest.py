"""Which videos a job takes: globs, literal names and the ids derived from them (no Ray)."""

from __future__ import annotations

import pytest

from sam_batch.errors import ManifestError
from sam_batch.media.manifest import expand_videos


def test_a_file_whose_name_looks_like_a_glob_is_that_file(tmp_path):
    literal = tmp_path / "take[1].mp4"
    literal.write_bytes(b"x")
    (tmp_path / "take1.mp4").write_bytes(b"x")  # what the glob [1] would match instead
    entries = expand_videos([str(literal)])
    assert [(e.video, e.video_id) for e in entries] == [(str(literal), "take_1_")]


def test_globs_expand_sorted_to_video_files_and_same_stems_get_distinct_ids(tmp_path):
    for name in ("b.mp4", "a.MOV", "notes.txt", "sub/a.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    entries = expand_videos([f"{tmp_path}/*", f"{tmp_path}/sub/*.mp4"])
    assert [e.video for e in entries] == [f"{tmp_path}/a.MOV", f"{tmp_path}/b.mp4",
                                         f"{tmp_path}/sub/a.mp4"]
    ids = [e.video_id for e in entries]
    assert ids[1] == "b" and ids[0].startswith("a-") and ids[2].startswith("a-")
    assert len(set(ids)) == 3 and all(e.error is None for e in entries)
    with pytest.raises(ManifestError, match="no video files match"):
        expand_videos([f"{tmp_path}/*.webm"])
