"""The Ray head goes away under a running job.

A driver joined to a ``ray start --head`` cluster (``--address``) is tracking a
video when the head's GCS is killed. Ray itself would end the driver only after
``gcs_rpc_server_reconnect_timeout_s`` (60 s), with exit code 1 and no word of
what happened; the driver notices, says it lost the cluster and that running
the command again resumes, and exits 2. Run again against a new head, it
resumes from the committed chunks, and its dataset equals a clean run's.

Every process of a head is marked by the head's own ``--temp-dir`` and ended by
PID; the token is this test's own (``raycluster.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from raycluster import pids_with, ray_head, token_env
from test_faults import assert_same_dataset, cmdline, rows, tracks

from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow

FRAMES, CHUNK = 16, 2


def test_the_head_killed_under_a_job_the_driver_exits_2_and_a_rerun_on_a_new_head_resumes(
        tmp_path):
    clip = generate(13, width=64, height=48, num_frames=FRAMES, num_objects=2, enter_leave=False)
    write_mp4(clip, tmp_path / "v.mp4")
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(tmp_path / "v.mp4"), "video_id": "v",
                                    "prompts": prompts}) + "\n")
    env = token_env(TQDM_DISABLE="1")

    def command(out: Path, address: str) -> list[str]:
        return [sys.executable, "-m", "sam_batch.cli", "run", "--manifest", str(manifest),
                "--output", str(out), "--random-weights", "--image-size", "128",
                "--chunk-frames", str(CHUNK), "--workers", "1", "--cpus-per-worker", "1",
                "--progress", "off", "--address", address]

    out = tmp_path / "ds"
    with ray_head(env) as head:
        driver = subprocess.Popen(command(out, head.address), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            part = out / "masks" / "v" / "part-s000-c00001.parquet"
            deadline = time.monotonic() + 300
            while not part.exists():
                assert driver.poll() is None, driver.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "chunk 1 never committed"
                time.sleep(0.05)
            (gcs,) = [p for p in pids_with(head.temp) if "gcs_server" in cmdline(p)]
            os.kill(gcs, signal.SIGKILL)
            killed = time.monotonic()
            log, _ = driver.communicate(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        waited = time.monotonic() - killed
    print(f"\nthe driver exited {driver.returncode} {waited:.1f} s after the GCS was killed")
    assert driver.returncode == 2, log[-3000:]
    assert waited < 45, "not before Ray's own 60 s"
    assert re.search(r"sam-batch: error: lost the Ray cluster: its head \(GCS at 127\.0\.0\.1:\d+\)"
                     r" has not answered for 10 s .*run the same command again", log), log[-3000:]
    assert not (out / "_job.json").exists()
    committed = {p.name for p in (out / "masks" / "v").glob("part-*.parquet")}
    assert "part-s000-c00001.parquet" in committed

    clean = tmp_path / "clean"
    with ray_head(env) as head:
        again = subprocess.run(command(out, head.address), env=env, capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert "resuming the job" in again.stderr, again.stderr[-3000:]
        done = subprocess.run(command(clean, head.address), env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert_same_dataset(out, (rows(clean), tracks(clean)))
    # Resumed, not restarted: the chunks committed before the loss were not tracked again.
    counts = json.loads((out / "_job.json").read_text())["counts"]
    assert counts["frames_tracked"] <= FRAMES - 2 * CHUNK, counts
