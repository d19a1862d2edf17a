"""``sam-batch run``'s driver never imports torch or sam2, fresh or resumed.

The actors load the model; the driver plans, schedules and commits with plain
values. Resuming reads a checkpoint's fingerprint from the state's JSON header
(``plan.track_meta``), not by loading its tensors, and finishing reads the life
cycles the same way. The driver here is the subprocess itself; the actors are
other processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sam_batch.synthetic import write_sample

pytestmark = pytest.mark.slow


def _run_driver(manifest: Path, out: Path, *flags: str) -> tuple[bool, bool]:
    args = ["run", "--manifest", str(manifest), "--output", str(out), "--random-weights",
            "--image-size", "128", "--chunk-frames", "4", "--workers", "1",
            "--cpus-per-worker", "1", "--progress", "off", "--keep-states", "all", *flags]
    script = (
        "import sys\n"
        "from sam_batch.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print('torch' in sys.modules, 'sam2' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    torch, sam2 = done.stdout.strip().splitlines()[-1].split()
    return torch == "True", sam2 == "True"


@pytest.mark.parametrize("segments", ["1", "2"])
def test_run_fresh_and_resumed_never_imports_torch_in_the_driver(tmp_path, segments):
    _, manifest = write_sample(tmp_path, num_frames=16, width=64, height=48)
    out = tmp_path / "ds"
    assert _run_driver(manifest, out, "--segments", segments) == (False, False)

    # Undo the commit and the masks: the rerun resumes from the kept states.
    (out / "_job.json").unlink()
    for f in (out / "masks").rglob("*.parquet"):
        f.unlink()
    init = next((out / "_states").rglob("init.state"))
    before = init.stat().st_mtime_ns
    assert _run_driver(manifest, out, "--segments", segments) == (False, False)

    job = json.loads((out / "_job.json").read_text())
    assert job["counts"]["videos_ok"] == 1
    assert init.stat().st_mtime_ns == before, "resumed from its init state, not started over"
