"""jobs/ and cluster/: every manifest loads, names files that exist, and its commands parse;
the long-video job runs under ``ray job submit`` on a real local Ray head.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from sam_batch.cli import build_parser
from sam_batch.config import JobConfig
from sam_batch.dataset import Dataset
from sam_batch.errors import ConfigError
from sam_batch.synthetic import write_sample

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"long_video": ROOT / "jobs" / "long_video.py",
        "nightly_dataset": ROOT / "jobs" / "nightly_dataset.py"}


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifests() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted([*(ROOT / "cluster").glob("*.yaml"), *(ROOT / "jobs").glob("*.yaml")]):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def check_command(command: str) -> None:
    """A ``python jobs/X.py ...`` or ``sam-batch ...`` command: its files exist, its flags parse."""
    argv = shlex.split(command)
    if argv[0] == "sam-batch":
        build_parser().parse_args(argv[1:])
        return
    assert argv[0] == "python" and argv[1].startswith("jobs/"), command
    script = ROOT / argv[1]
    assert script.exists(), f"{command}: {argv[1]} does not exist"
    args = load_job(script.stem).build_parser().parse_args(argv[2:])
    if args.config:
        assert (ROOT / args.config).exists(), f"{command}: {args.config} does not exist"


def test_every_manifest_loads_and_its_entrypoint_exists_and_parses():
    docs = manifests()
    kinds = {d.get("kind") for _, d in docs}
    assert {"RayCluster", "RayJob"} <= kinds
    for path, doc in docs:
        if doc.get("kind") == "RayJob":
            spec = doc["spec"]
            check_command(spec["entrypoint"])
            assert spec["backoffLimit"] >= 1 and spec["ttlSecondsAfterFinished"] > 0
            assert spec["shutdownAfterJobFinishes"] is True
            workers = spec["rayClusterSpec"]["workerGroupSpecs"]
        elif doc.get("kind") == "RayCluster":
            workers = doc["spec"]["workerGroupSpecs"]
            assert doc["spec"]["enableInTreeAutoscaling"] is True
        else:
            continue
        for group in workers:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], path
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert limits["nvidia.com/gpu"] == "1", path


def test_cluster_launcher_installs_as_the_readme_says():
    launcher = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    assert launcher["provider"]["type"] == "aws"
    setup = " && ".join(launcher["setup_commands"])
    assert "torch==2.14.1 torchvision==0.29.1" in setup and "--no-build-isolation" in setup
    assert set(launcher["available_node_types"]) >= {launcher["head_node_type"], "gpu_worker"}
    docker = (ROOT / "cluster" / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.14.1 torchvision==0.29.1" in docker
    assert "pip install torch==2.14.1 torchvision==0.29.1" in readme
    assert "--no-build-isolation" in docker
    for line in docker.splitlines():  # every file the image copies exists
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), line


def test_job_yamls_are_valid_configs_and_every_readme_command_parses():
    for name in JOBS:
        data = yaml.safe_load((ROOT / "jobs" / f"{name}.yaml").read_text())
        if data.pop("nightly", None) is not None:  # the job fills in inputs and output
            data.update(videos=["night.mp4"], output="s3://b/ds/date=2026-11-24")
        JobConfig.from_dict(data).validate()  # every key known, every value valid
    for doc in (ROOT / "cluster" / "README.md", ROOT / "README.md"):
        for line in doc.read_text().splitlines():
            if "-- python jobs/" in line:
                command = line.split("-- ", 1)[1].rstrip("\\ ")
                check_command(command)


def test_nightly_lists_the_nights_videos_and_partitions_by_date(tmp_path):
    nightly = load_job("nightly_dataset")
    day = tmp_path / "raw" / "2026-11-24"
    (day / "cam1").mkdir(parents=True)
    for name in ("a.mp4", "cam1/b.MOV", "notes.txt"):
        (day / name).write_bytes(b"x")
    assert nightly.night_videos(str(tmp_path / "raw"), "2026-11-24") == [
        str(day / "a.mp4"), str(day / "cam1" / "b.MOV")]
    assert nightly.partition("s3://b/ds/", "2026-11-24") == "s3://b/ds/date=2026-11-24"
    assert len(nightly.night(None)) == 10
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        nightly.night("24/11/2026")
    with pytest.raises(ConfigError, match="does not exist"):
        nightly.night_videos(str(tmp_path / "raw"), "2026-11-23")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with(path: Path) -> list[int]:
    """Processes whose command line or open files name ``path`` (Ray renames its agents)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if str(path) in cmd or any(f.startswith(str(path)) for f in _open_files(entry)):
                found.append(int(entry))
    return found


def _open_files(pid: str) -> list[str]:
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return names


@pytest.mark.slow
def test_ray_job_submit_runs_the_long_video_job_on_a_local_head(tmp_path):
    _, manifest = write_sample(tmp_path / "input", num_frames=8, width=96, height=64)
    # A short path (Unix sockets live under it), marking every process of this head
    # so that they can be ended by PID.
    temp = Path(tempfile.mkdtemp(prefix="sbray", dir="/tmp"))
    port, dashboard = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    start = subprocess.run(
        ["ray", "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
         f"--temp-dir={temp}", "--num-cpus=2", "--num-gpus=0", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=180, env=env)
    try:
        assert start.returncode == 0, start.stderr[-3000:]
        out = tmp_path / "dataset"
        submit = subprocess.run(
            ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dashboard}",
             "--working-dir", str(ROOT), "--runtime-env-json",
             json.dumps({"excludes": [".git", "bench", "tests", "*.pt"],
                         "env_vars": {"TQDM_DISABLE": "1"}}),
             "--", "python", "jobs/long_video.py", "--config", "jobs/long_video.yaml",
             "--manifest", str(manifest), "--output", str(out), "--random-weights",
             "--image-size", "128", "--chunk-frames", "4", "--segments", "1",
             "--workers", "1", "--cpus-per-worker", "1", "--gpus-per-worker", "0"],
            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
        assert "succeeded" in submit.stdout + submit.stderr
        ds = Dataset(str(out))
        assert ds.job() is not None and ds.video("sample")["status"] == "ok"
        rows = ds.masks("sample").to_pylist()
        objects = {r["obj_id"] for r in rows}
        assert {r["frame_idx"] for r in rows} == set(range(8)) and objects
        assert len(rows) == 8 * len(objects)
    finally:
        for pid in _pids_with(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)


def test_job_scripts_print_their_help():
    for script in JOBS.values():
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "--config" in done.stdout
