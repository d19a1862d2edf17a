"""Faults a long job meets, and the promise that its dataset comes out the same.

A GPU actor dies mid-chunk, a node dies, the driver dies: in each case the
finished dataset equals a clean run's, row for row, with no duplicates. The
processes killed here are ones these tests started (found among this process's
descendants, or the job's own), and are ended by PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from ray.cluster_utils import Cluster

from sam_batch.config import JobConfig
from sam_batch.driver.job import run
from sam_batch.runtime.session import init_local
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow

FRAMES, CHUNK = 40, 4


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    clip = generate(11, width=64, height=48, num_frames=FRAMES, num_objects=2, enter_leave=False)
    write_mp4(clip, folder / "v.mp4")
    prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
    path = folder / "manifest.jsonl"
    path.write_text(
        json.dumps({"video": str(folder / "v.mp4"), "video_id": "v", "prompts": prompts}) + "\n"
    )
    return path


def config(manifest: Path, out: Path) -> JobConfig:
    return JobConfig(
        manifest=str(manifest),
        output=str(out),
        random_weights=True,
        image_size=128,
        chunk_frames=CHUNK,
        workers=1,
        cpus_per_worker=1,
        progress="off",
    )


def rows(out: Path) -> list[dict]:
    table = pq.read_table(out / "masks")
    return sorted(table.to_pylist(), key=lambda r: (r["video_id"], r["frame_idx"], r["obj_id"]))


def tracks(out: Path) -> list[dict]:
    return sorted(pq.read_table(out / "tracks").to_pylist(), key=lambda r: r["obj_id"])


@pytest.fixture(scope="module")
def clean(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    out = tmp_path_factory.mktemp("clean") / "ds"
    assert run(config(manifest, out)).ok
    result = rows(out)
    assert len(result) == FRAMES * 2
    return result, tracks(out)


def assert_same_dataset(out: Path, clean: tuple[list, list]) -> None:
    """Masks and tracks as a clean run's. A clean run writes its tracks from the
    chunks' stats; a resumed one reads them back from the committed parts."""
    got = rows(out)
    keys = [(r["frame_idx"], r["obj_id"]) for r in got]
    assert len(keys) == len(set(keys)), "duplicate rows"
    assert got == clean[0]
    assert tracks(out) == clean[1]
    assert (out / "_job.json").exists()


def wait_for_part(out: Path, chunk_idx: int, timeout: float = 180) -> None:
    part = out / "masks" / "v" / f"part-s000-c{chunk_idx:05d}.parquet"
    deadline = time.monotonic() + timeout
    while not part.exists():
        assert time.monotonic() < deadline, f"chunk {chunk_idx} never committed"
        time.sleep(0.05)


def children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    ppid = next(int(x.split()[1]) for x in f if x.startswith("PPid:"))
                table[int(entry)] = ppid
            except (OSError, StopIteration):
                pass
    return table


def descendants(root: int) -> list[int]:
    table = children()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in table.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tracker_actor_pids() -> list[int]:
    return [p for p in descendants(os.getpid()) if cmdline(p).startswith("ray::TrackerActor")]


def run_in_thread(cfg: JobConfig) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        try:
            result["summary"] = run(cfg)
        except BaseException as e:  # surfaced by the test
            result["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_actor_killed_mid_chunk_is_retried_and_the_dataset_equals_a_clean_run(
    manifest, clean, tmp_path
):
    out = tmp_path / "ds"
    init_local(num_cpus=2)
    try:
        thread, result = run_in_thread(config(manifest, out))
        wait_for_part(out, 1)
        actors = tracker_actor_pids()
        assert len(actors) == 1
        os.kill(actors[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while not [p for p in tracker_actor_pids() if p != actors[0]]:
            assert time.monotonic() < deadline, "no replacement actor was started"
            time.sleep(0.1)
        assert not (out / "_job.json").exists(), "the kill came after the job had finished"
        thread.join(timeout=300)
    finally:
        ray.shutdown()
    assert "error" not in result, result.get("error")
    assert result["summary"].ok
    assert_same_dataset(out, clean)


def test_node_killed_mid_job_the_job_completes_with_identical_output(manifest, clean, tmp_path,
                                                                    caplog):
    """The node goes while the job is mid-way (parts committed, not all, no
    ``_job.json``); the chunk it was running is retried on the other node."""
    out = tmp_path / "ds"
    store = 150 * 2**20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": store, "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=1, object_store_memory=store) for _ in range(2)]
    try:
        ray.init(address=cluster.address)
        thread, result = run_in_thread(config(manifest, out))
        wait_for_part(out, 1)
        actor = tracker_actor_pids()[0]
        with open(f"/proc/{actor}/status") as f:
            raylet = next(int(x.split()[1]) for x in f if x.startswith("PPid:"))
        doomed = [n for n in nodes if n.all_processes["raylet"][0].process.pid == raylet]
        assert len(doomed) == 1, "the actor's node was not found"
        with caplog.at_level(logging.WARNING, logger="sam_batch"):
            cluster.remove_node(doomed[0], allow_graceful=False)
            committed = len(list((out / "masks" / "v").glob("part-*.parquet")))
            assert not (out / "_job.json").exists() and committed < FRAMES // CHUNK, (
                "the node went after the job had finished")
            thread.join(timeout=300)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert "error" not in result, result.get("error")
    assert result["summary"].ok
    assert re.search(r"v chunk \d+ failed \(\w+\), retrying from its input state", caplog.text), (
        caplog.text)
    assert_same_dataset(out, clean)


def _cli(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sam_batch.cli", "run", "--manifest", str(manifest),
            "--output", str(out), "--random-weights", "--image-size", "128", "--chunk-frames",
            str(CHUNK), "--workers", "1", "--cpus-per-worker", "1", "--progress", "off", *extra]


def _kill_driver_when(cmd: list[str], committed: Path) -> None:
    """Start the driver, SIGKILL it and all it started (by PID) once ``committed`` exists."""
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not committed.exists():
            assert time.monotonic() < deadline, f"{committed.name} never committed"
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.05)
    finally:
        for pid in [driver.pid, *descendants(driver.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        driver.wait()


@pytest.mark.parametrize("keep", ["last", "every:8", "all"])
def test_driver_killed_mid_job_rerun_resumes_without_duplicates(manifest, clean, tmp_path, keep):
    """Resume goes on from the newest state kept at or before the first chunk not
    committed, whichever states the retention setting keeps; here the newest is
    lost as well, so the rerun also replays from an older kept state (as a
    correction would)."""
    out = tmp_path / "ds"
    cmd = _cli(manifest, out, "--keep-states", keep)
    _kill_driver_when(cmd, out / "masks" / "v" / "part-s000-c00002.parquet")
    assert not (out / "_job.json").exists()
    committed = len(list((out / "masks" / "v").glob("part-*.parquet")))
    assert 3 <= committed < FRAMES // CHUNK, "kill it mid-job"
    (out / "_states" / "v" / f"s000-c{committed - 1:05d}.state").unlink()
    states = {p.name for p in (out / "_states" / "v").glob("s000-*.state")}
    start = max(k for k in range(committed) if k == 0 or f"s000-c{k - 1:05d}.state" in states)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_dataset(out, clean)
    # Resumed, not restarted: only the chunks from the kept state on were tracked again.
    counts = json.loads((out / "_job.json").read_text())["counts"]
    assert counts["frames_tracked"] == FRAMES - start * CHUNK, (start, states)
    # Compacted: one mask file; states as the setting keeps (init and the newest at least).
    assert [p.name for p in (out / "masks" / "v").iterdir()] == ["compact-s000-c00000.parquet"]
    kept = sorted(p.name for p in (out / "_states" / "v").iterdir())
    expected = {"last": [9], "every:8": [1, 3, 5, 7, 9], "all": list(range(10))}[keep]
    assert kept == sorted(["init.state", *(f"s000-c{k:05d}.state" for k in expected)])


def test_driver_killed_mid_segmented_job_resumes_to_the_same_stitched_dataset(manifest, tmp_path):
    """Two seeded segments, staged then stitched: a rerun continues each segment."""
    clean_out, out = tmp_path / "clean", tmp_path / "ds"
    segmented = ("--segments", "2", "--overlap", "4", "--sparse-step", "4")
    assert subprocess.run(_cli(manifest, clean_out, *segmented), capture_output=True,
                          timeout=600).returncode == 0
    clean2 = rows(clean_out), tracks(clean_out)
    assert len(clean2[0]) == FRAMES * 2

    cmd = _cli(manifest, out, *segmented)
    staged = out / "_staging" / "masks" / "v"
    _kill_driver_when(cmd, staged / "part-s001-c00006.parquet")  # segment 1's second chunk
    assert not (out / "_job.json").exists() and not (out / "masks").exists()
    states = {p.name: p.stat().st_mtime_ns for p in (out / "_states" / "v").glob("*.state")}
    assert "init-s001.state" in states

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_dataset(out, clean2)
    assert not staged.exists()
    after = {p.name: p.stat().st_mtime_ns for p in (out / "_states" / "v").glob("*.state")}
    assert "init-s001.state" in after  # the states not kept are gone, the others untouched
    assert all(after[name] == t for name, t in states.items() if name in after), (
        "committed work was redone")
