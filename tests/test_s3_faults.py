"""Object storage that fails: 500s, 503s, dropped connections, slow answers.

Jobs read their manifest and videos from S3 and write their dataset there,
through ``s3faults.FaultyS3``, a proxy in front of the test S3 server that
injects faults at a set rate for a set number of requests. Retries are
botocore's (the job turns on its ``standard`` mode for S3 unless the storage
options set retries), so a job through the faults writes a dataset
byte-identical to a clean run's; a reader polling the dataset meanwhile never
sees a file it cannot read. Faults that outlast the retries fail only the
video they hit, with a message that names the attempts.
"""

from __future__ import annotations

import io
import json
import threading

import fsspec
import pyarrow.parquet as pq
import pytest
from s3faults import KINDS, Faults, FaultyS3

from sam_batch.config import JobConfig
from sam_batch.driver.job import run
from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

pytestmark = pytest.mark.slow

FRAMES, CHUNK = 12, 4
#: Columns of a videos/ row that change from run to run.
TIMING = ("started_at", "finished_at", "wall_s")


@pytest.fixture(scope="module")
def manifest(s3, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("s3faults")
    lines = []
    for seed, name in ((21, "good"), (22, "bad")):
        clip = generate(seed, width=64, height=48, num_frames=FRAMES, num_objects=2,
                        enter_leave=False)
        write_mp4(clip, folder / f"{name}.mp4", gop_size=4)
        url = s3.upload(folder / f"{name}.mp4", f"faults/in/{name}.mp4")
        prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
        lines.append({"video": url, "video_id": name, "prompts": prompts})
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return s3.upload(folder / "m.jsonl", "faults/in/m.jsonl")


def config(manifest: str, output: str, storage_options: dict, **extra) -> JobConfig:
    return JobConfig(manifest=manifest, output=output, storage_options=storage_options,
                     random_weights=True, image_size=128, chunk_frames=CHUNK, workers=1,
                     cpus_per_worker=1, progress="off", **extra)


def files(fs, root: str) -> dict[str, bytes]:
    """Every file under ``root`` by its path below it (``_job.json`` left out)."""
    fs.invalidate_cache()
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)
            if not p.endswith("_job.json")}


def videos_rows(fs, root: str) -> list[dict]:
    rows = []
    for p in sorted(fs.find(f"{root}/videos")):
        for r in pq.read_table(io.BytesIO(fs.cat_file(p))).to_pylist():
            rows.append({k: v for k, v in r.items() if k not in TIMING})
    return rows


class Reader(threading.Thread):
    """Reads every Parquet file it sees under ``root`` until stopped: a reader of a
    dataset being written must never find one half written."""

    def __init__(self, fs, root: str):
        super().__init__(daemon=True)
        self.fs, self.root = fs, root
        self.read: set[str] = set()
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.fs.invalidate_cache()
                found = self.fs.find(self.root)
            except OSError:
                continue
            for p in found:
                if not p.endswith(".parquet"):
                    continue
                try:
                    data = self.fs.cat_file(p)
                except FileNotFoundError:
                    continue  # replaced or deleted since listed
                try:
                    pq.read_table(io.BytesIO(data))
                    self.read.add(p)
                except Exception as e:  # a torn file
                    self.errors.append(f"{p}: {type(e).__name__}: {e}")
            self.stop.wait(0.1)


def test_a_job_through_failing_storage_writes_the_clean_runs_dataset_byte_for_byte(
        s3, manifest, ray_local):
    fs = fsspec.filesystem("s3", **s3.storage_options)
    clean = s3.url("faults/clean")
    assert run(config(manifest, clean, s3.storage_options)).ok

    faults = Faults(rate=0.3, count=40, kinds=KINDS, delay_s=0.3, seed=1)
    with FaultyS3(s3.endpoint_url, faults) as proxy:
        reader = Reader(fs, f"{s3.bucket}/faults/faulty")
        reader.start()
        try:
            summary = run(config(manifest, s3.url("faults/faulty"),
                                 proxy.storage_options(s3.storage_options)))
        finally:
            reader.stop.set()
            reader.join()
    assert summary.ok, summary.text()
    print(f"\n{len(faults.injected)} faults injected in {len(faults.injected) + faults.forwarded} "
          f"requests: {sorted(faults.kinds_injected())}; reader read {len(reader.read)} files")
    assert faults.kinds_injected() == set(KINDS), faults.injected
    assert not reader.errors, reader.errors[:3]
    got = files(fs, f"{s3.bucket}/faults/faulty")
    want = files(fs, f"{s3.bucket}/faults/clean")
    masks = {k for k in want if k.startswith(("masks/", "tracks/"))}
    assert masks and {k: got.get(k) for k in masks} == {k: want[k] for k in masks}
    assert set(got) - {k for k in got if k.startswith(("videos/", "_run.json"))} == (
        set(want) - {k for k in want if k.startswith(("videos/", "_run.json"))})
    assert videos_rows(fs, f"{s3.bucket}/faults/faulty") == videos_rows(
        fs, f"{s3.bucket}/faults/clean")
    assert fs.exists(f"{s3.bucket}/faults/faulty/_job.json")


def test_faults_that_outlast_the_retries_fail_only_the_video_they_hit(s3, manifest, ray_local):
    """Every write of the ``bad`` video's mask parts answers 503: botocore sends each
    three times (``max_attempts`` 2 is its count of retries after the first), the
    scheduler runs the chunk twice (``max_retries`` 1), and the video fails naming
    both; ``good`` is written as usual."""
    faults = Faults(rate=1.0, count=None, kinds=("503",), match=r"^PUT .*/masks/bad/")
    with FaultyS3(s3.endpoint_url, faults) as proxy:
        options = proxy.storage_options(
            s3.storage_options, config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}})
        summary = run(config(manifest, s3.url("faults/spent"), options, max_retries=1))
    assert (summary.videos_ok, summary.videos_failed) == (1, 1), summary.text()
    (failed,) = summary.failed
    assert failed["video_id"] == "bad"
    assert "chunk 0 failed 2 times" in failed["error"], failed
    assert "writing s3://test-bucket/faults/spent/masks/bad/" in failed["error"], failed
    part0 = [r for _, r in faults.injected if r.endswith("/part-s000-c00000.parquet")]
    assert len(part0) == 2 * 3, "three sends by botocore, twice by the scheduler"
    fs = fsspec.filesystem("s3", **s3.storage_options)
    root = f"{s3.bucket}/faults/spent"
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/masks/bad") and fs.find(f"{root}/masks/good")
    rows = {r["video_id"]: r for r in videos_rows(fs, root)}
    assert rows["bad"]["status"] == "failed" and rows["good"]["status"] == "ok"
    assert "failed 2 times" in rows["bad"]["error"]
