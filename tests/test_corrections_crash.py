"""A ``sam-batch correct`` killed mid-way leaves the previous dataset readable, and the
same command run again finishes it: the same files, byte for byte, as one run.

The correcting process is killed with SIGKILL (no clean-up runs) at two points:

- while re-tracking (the test kills it once the first staged part appears): nothing
  visible has changed, the dataset reads as before;
- right after the first mask file is switched (the process kills itself after
  that write returns): the dataset is still readable, rows from t on may be the
  new ones while ``_job.json`` and the tracks table are the old ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_corrections import clip_manifest

from sam_batch.cli import main
from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.driver.job import run

pytestmark = pytest.mark.slow
FRAMES, T = 14, 5
FIX = [{"obj_id": 2, "frame": T, "points": [[20, 30]], "labels": [1]},
       {"obj_id": 5, "frame": T, "box": [30, 10, 60, 40]}]

#: Run ``sam-batch correct`` and SIGKILL this very process after its first write
#: under ``masks/`` has returned (``Location.write`` is atomic per file).
KILL_AFTER_SWITCH = """
import os, signal, sys
from sam_batch.media import storage
from sam_batch.cli import main
write = storage.Location.write
def write_then_die(self, path, data):
    write(self, path, data)
    if path.startswith("masks/"):
        os.kill(os.getpid(), signal.SIGKILL)
storage.Location.write = write_then_die
sys.exit(main(["correct", sys.argv[1], "--prompts", sys.argv[2]]))
"""


@pytest.fixture(scope="module")
def dataset(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("corr-crash")
    *_, manifest = clip_manifest(folder, FRAMES)
    out = folder / "ds"
    assert run(JobConfig(manifest=str(manifest), output=str(out), random_weights=True,
                         image_size=128, chunk_frames=4, workers=1, cpus_per_worker=1,
                         keep_states="all", progress="off")).ok
    fixes = folder / "fixes.jsonl"
    fixes.write_text(json.dumps({"video_id": "clip", "prompts": FIX}) + "\n")
    return out, fixes


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory) -> dict[str, bytes]:
    src, fixes = dataset
    out = tmp_path_factory.mktemp("corr-once") / "ds"
    shutil.copytree(src, out)
    assert main(["correct", str(out), "--prompts", str(fixes)]) == 0
    return _files(out)


def _files(root: Path) -> dict[str, bytes]:
    """Every file's bytes; ``_job.json`` without the moment each correction was applied."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    job = json.loads(files["_job.json"])
    for c in job.get("corrections", []):
        c.pop("applied_at")
    files["_job.json"] = json.dumps(job, sort_keys=True).encode()
    return files


def _readable(out: Path, capsys) -> list[int]:
    """``sam-batch inspect`` and pyarrow read the dataset; returns the frames it holds."""
    assert main(["inspect", str(out)]) == 0
    assert "complete" in capsys.readouterr().out
    tables = [pq.read_table(p) for p in sorted((out / "masks" / "clip").iterdir())]
    frames = sorted({f for t in tables for f in t["frame_idx"].to_pylist()})
    assert frames == list(range(FRAMES))
    assert sorted(f for f, _ in Dataset(str(out)).iter_frames("clip")) == frames
    return frames


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_killed_while_re_tracking_the_dataset_is_unchanged_and_re_running_finishes(
        dataset, uninterrupted, tmp_path, capsys):
    src, fixes = dataset
    out = tmp_path / "ds"
    shutil.copytree(src, out)
    before = _files(out)
    proc = subprocess.Popen([sys.executable, "-m", "sam_batch.cli", "correct", str(out),
                             "--prompts", str(fixes)], env=_env())
    staged = out / "_staging" / "corrections" / "clip"
    deadline = time.monotonic() + 300
    while not (staged.exists() and any(p.suffix == ".parquet" for p in staged.iterdir())):
        assert proc.poll() is None, "the correction ended before it was killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (staged / "done.json").exists(), "killed after re-tracking: too late"
    now = _files(out)
    assert {k: v for k, v in now.items() if not k.startswith("_staging/")
            and k != "_correction.json"} == before
    _readable(out, capsys)
    assert main(["correct", str(out), "--prompts", str(fixes)]) == 0
    assert _files(out) == uninterrupted


def test_killed_after_the_first_switched_file_re_running_finishes(
        dataset, uninterrupted, tmp_path, capsys):
    src, fixes = dataset
    out = tmp_path / "ds"
    shutil.copytree(src, out)
    before = _files(out)
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_SWITCH, str(out), str(fixes)],
                          env=_env())
    assert done.returncode == -signal.SIGKILL
    now = _files(out)
    assert now["_job.json"] == before["_job.json"] and (out / "_correction.json").exists()
    switched = [k for k in now if k.startswith("masks/") and now[k] != before[k]]
    assert len(switched) == 1 and now[switched[0]] == uninterrupted[switched[0]]
    _readable(out, capsys)
    assert main(["correct", str(out), "--prompts", str(fixes)]) == 0
    assert _files(out) == uninterrupted
