"""jobs/ and cluster/: every manifest loads, names files that exist, and its commands parse;
the nightly job lists a date's videos and keeps one partition per date (no Ray); the
long-video job runs under ``ray job submit`` on a real local Ray head, and resumes there.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from raycluster import ray_head, token_env

from sam_batch.cli import build_parser
from sam_batch.config import JobConfig
from sam_batch.dataset.reader import Dataset
from sam_batch.errors import ConfigError
from sam_batch.media.manifest import read_manifest
from sam_batch.synthetic import write_sample

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"long_video": ROOT / "jobs" / "long_video.py",
        "nightly_dataset": ROOT / "jobs" / "nightly_dataset.py"}
NIGHT = "2026-11-24"


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


def strings(value) -> list[str]:
    """Every string in a loaded YAML document."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def commands(text: str) -> list[str]:
    """The ``python jobs/...`` and ``sam-batch ...`` commands in a text, lines joined at ``\\``."""
    found = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        for start in ("python jobs/", "sam-batch "):
            at = line.find(start)
            if at >= 0 and (start == "python jobs/" or line[:at].strip() in ("", "-", "RUN")):
                found.append(line[at:])
    return found


def check_command(command: str) -> None:
    """A ``python jobs/X.py ...`` or ``sam-batch ...`` command: its files exist, its flags parse."""
    argv = shlex.split(command, comments=True)
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
        for command in (c for s in strings(doc) for c in commands(s)):
            check_command(command)
        if doc.get("kind") == "RayJob":
            spec = doc["spec"]
            assert spec["entrypoint"].startswith("python jobs/")
            check_command(spec["entrypoint"])
            assert spec["backoffLimit"] >= 1 and spec["ttlSecondsAfterFinished"] > 0
            assert spec["shutdownAfterJobFinishes"] is True
            assert spec["rayClusterSpec"]["enableInTreeAutoscaling"] is True
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


def readme_install() -> tuple[str, str]:
    """The README's two pip steps: torch, then the project built against it."""
    line = next(x for x in (ROOT / "README.md").read_text().splitlines()
                if x.startswith("pip install -c constraints.txt torch=="))
    torch_step, project_step = (s.strip() for s in line.split("&&")[:2])
    assert "--no-build-isolation" in project_step and "SAM2_BUILD_CUDA=" in project_step
    return torch_step, "pip install -c constraints.txt --no-build-isolation"


def test_image_and_cluster_launcher_install_as_the_readme_says():
    torch_step, project_step = readme_install()
    docker = (ROOT / "cluster" / "Dockerfile").read_text()
    launcher = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    setup = "\n".join(launcher["setup_commands"])
    for text in (docker, setup):  # torch first, then sam2 built against it, with CUDA
        assert 0 <= text.find(torch_step) < text.find(project_step), text
        assert "SAM2_BUILD_CUDA=1" in text and "TORCH_CUDA_ARCH_LIST" in text
    assert re.search(r"^FROM nvidia/cuda:\S+-devel", docker, re.M)
    assert "python3.11" in docker and "python3.11" in setup
    for line in docker.splitlines():  # every file the image copies exists
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), line
    # Ray's own schema for cluster-launcher files (unknown keys are errors there)
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    assert launcher["provider"]["type"] == "aws"
    assert set(launcher["available_node_types"]) >= {launcher["head_node_type"], "gpu_worker"}


def test_job_yamls_are_valid_configs_and_every_documented_command_parses(tmp_path):
    long_video, nightly = load_job("long_video"), load_job("nightly_dataset")
    config = long_video.configure(["--config", str(ROOT / "jobs" / "long_video.yaml")])
    config.validate()  # every key known, every value valid
    assert config.segments == "auto" and config.workers and config.gpus_per_worker == 1
    config = long_video.configure(["--config", str(ROOT / "jobs" / "long_video.yaml"),
                                   "--segments", "4", "--chunk-frames", "32",
                                   "--random-weights"])
    assert (config.segments, config.chunk_frames, config.checkpoint) == (4, 32, None)
    (tmp_path / NIGHT / "a.mp4").parent.mkdir()
    (tmp_path / NIGHT / "a.mp4").write_bytes(b"x")
    config = nightly.configure(["--config", str(ROOT / "jobs" / "nightly_dataset.yaml"),
                                "--input-root", str(tmp_path), "--date", NIGHT])
    config.validate()
    assert config.discover and config.output.endswith(f"/date={NIGHT}")
    texts = [(ROOT / "cluster" / "README.md").read_text(), (ROOT / "README.md").read_text(),
             *(p.read_text() for p in JOBS.values())]
    documented = [c for t in texts for c in commands(t)]
    assert sum(c.startswith("python jobs/") for c in documented) >= 4
    for command in documented:
        check_command(command)


def test_nightly_lists_the_nights_videos_and_partitions_by_date(tmp_path):
    nightly = load_job("nightly_dataset")
    day = tmp_path / "raw" / NIGHT
    (day / "cam1").mkdir(parents=True)
    for name in ("a.mp4", "cam1/b.MOV", "notes.txt", "._a.mp4"):
        (day / name).write_bytes(b"x")
    (tmp_path / "raw" / "2026-11-23").mkdir()
    (tmp_path / "raw" / "2026-11-23" / "c.mp4").write_bytes(b"x")
    assert nightly.night_videos(str(tmp_path / "raw"), NIGHT) == [
        str(day / "a.mp4"), str(day / "cam1" / "b.MOV")]
    assert nightly.night_videos(f"file://{tmp_path}/raw/", NIGHT) == [
        f"file://{day}/a.mp4", f"file://{day}/cam1/b.MOV"]
    assert nightly.partition("s3://b/ds/", NIGHT) == f"s3://b/ds/date={NIGHT}"
    assert nightly.night(None) == dt.datetime.now(dt.timezone.utc).date().isoformat()
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        nightly.night("24/11/2026")
    with pytest.raises(ConfigError, match="does not exist"):
        nightly.night_videos(str(tmp_path / "raw"), "2026-11-22")


def test_nightly_submitted_twice_is_the_same_job_on_the_same_partition(tmp_path):
    """What makes a re-submitted night resume: same output, same fingerprint, no overwrite."""
    nightly = load_job("nightly_dataset")
    (tmp_path / "raw" / NIGHT).mkdir(parents=True)
    (tmp_path / "raw" / NIGHT / "a.mp4").write_bytes(b"x")
    (tmp_path / "nightly.yaml").write_text(yaml.safe_dump({
        "nightly": {"input_root": str(tmp_path / "raw"), "output_root": str(tmp_path / "ds")},
        "random_weights": True, "discover": "every:30", "chunk_frames": 16}))
    argv = ["--config", str(tmp_path / "nightly.yaml"), "--date", NIGHT]
    first = nightly.configure(argv)
    (tmp_path / "raw" / NIGHT / "b.mp4").write_bytes(b"x")  # arrived since
    again = nightly.configure(argv)
    assert first.output == again.output == str(tmp_path / "ds" / f"date={NIGHT}")
    assert first.fingerprint() == again.fingerprint() and not again.overwrite
    rows = [json.loads(line) for line in Path(again.manifest).read_text().splitlines()]
    assert rows == [{"video": str(tmp_path / "raw" / NIGHT / n), "video_id": n}
                    for n in ("a.mp4", "b.mp4")]
    assert again.videos is None and again.discover == "every:30"
    with pytest.raises(ConfigError, match="does not exist"):
        nightly.configure([*argv[:2], "--date", "2026-11-25"])
    with pytest.raises(ConfigError, match="input_root and output_root"):
        nightly.configure(["--date", NIGHT, "--random-weights"])
    with pytest.raises(ConfigError, match="--output: this job takes"):
        nightly.configure([*argv, "--output", str(tmp_path / "elsewhere")])


def test_nightly_video_ids_never_change_when_more_files_arrive(tmp_path):
    """A re-submitted night resumes by video id: a same-named file arriving in another
    folder must not rename the videos already done (stem ids would need a tie-break)."""
    nightly = load_job("nightly_dataset")
    day = tmp_path / "raw" / NIGHT
    (day / "cam1").mkdir(parents=True)
    (day / "cam1" / "clip.mp4").write_bytes(b"x")
    first = nightly.night_manifest(str(tmp_path / "raw"), NIGHT,
                                   nightly.night_videos(str(tmp_path / "raw"), NIGHT))
    (day / "cam2").mkdir()
    (day / "cam2" / "clip.mp4").write_bytes(b"x")
    (day / "clip.mov").write_bytes(b"x")
    again = nightly.night_manifest(f"file://{tmp_path}/raw/", NIGHT,
                                   nightly.night_videos(f"file://{tmp_path}/raw/", NIGHT))
    assert [r["video_id"] for r in first] == ["cam1_clip.mp4"]
    assert [r["video_id"] for r in again] == ["cam1_clip.mp4", "cam2_clip.mp4", "clip.mov"]
    entries = read_manifest(nightly.write_night_manifest(str(tmp_path / "raw"), NIGHT, again))
    assert [e.video_id for e in entries] == ["cam1_clip.mp4", "cam2_clip.mp4", "clip.mov"]
    assert all(e.error is None for e in entries)


def test_nightly_leaves_discover_out_where_jobconfig_has_no_such_key(tmp_path, monkeypatch,
                                                                     caplog):
    nightly = load_job("nightly_dataset")
    (tmp_path / "raw" / NIGHT).mkdir(parents=True)
    (tmp_path / "raw" / NIGHT / "a.mp4").write_bytes(b"x")
    names = [n for n in JobConfig.field_names() if n != "discover"]
    monkeypatch.setattr(JobConfig, "field_names", classmethod(lambda cls: names))
    config = nightly.configure(["--config", str(ROOT / "jobs" / "nightly_dataset.yaml"),
                                "--input-root", str(tmp_path / "raw"), "--output-root",
                                str(tmp_path / "ds"), "--date", NIGHT])
    assert config.discover is None and "discover: every:30 ignored" in caplog.text


@pytest.mark.slow
def test_ray_job_submit_runs_the_long_video_job_on_a_local_head_and_resumes_it(tmp_path):
    _, manifest = write_sample(tmp_path / "input", num_frames=8, width=96, height=64)
    env = token_env()
    with ray_head(env, dashboard=True) as head:
        out = tmp_path / "dataset"
        command = [
            "ray", "job", "submit", "--address", head.dashboard,
            "--working-dir", str(ROOT), "--runtime-env-json",
            json.dumps({"excludes": [".git", "bench", "tests", "*.pt"],
                        "env_vars": {"TQDM_DISABLE": "1"}}),
            "--", "python", "jobs/long_video.py", "--config", "jobs/long_video.yaml",
            "--manifest", str(manifest), "--output", str(out), "--random-weights",
            "--image-size", "128", "--chunk-frames", "4", "--segments", "1",
            "--workers", "1", "--cpus-per-worker", "1", "--gpus-per-worker", "0"]
        submit = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                                cwd=tmp_path)
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-4000:]
        assert "succeeded" in submit.stdout + submit.stderr
        ds = Dataset(str(out))
        assert ds.job() is not None and ds.video("sample")["status"] == "ok"
        rows = ds.masks("sample").to_pylist()
        objects = {r["obj_id"] for r in rows}
        assert {r["frame_idx"] for r in rows} == set(range(8)) and objects
        assert len(rows) == 8 * len(objects)
        # Submitted again, the same job resumes its dataset: nothing re-tracked or lost.
        again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                               cwd=tmp_path)
        log = again.stdout + again.stderr
        assert again.returncode == 0 and "resuming the job" in log, log[-4000:]
        assert "1 video(s) ok, 0 failed, 0 frames tracked" in log, log[-4000:]
        assert Dataset(str(out)).job() is not None
        assert Dataset(str(out)).masks("sample").to_pylist() == rows


def test_job_scripts_print_their_help():
    for script in JOBS.values():
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "--config" in done.stdout
