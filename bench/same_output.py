"""Does the code at two git refs write the same output? The check for a restructuring.

Each side's code runs from a tree of its own: a ``git worktree`` of the ref
(``--before``, and ``--after`` when given), or this checkout's working tree
(``--after``'s default, uncommitted edits included). A job runs in a child
process with ``PYTHONPATH`` set to that tree and a neutral working directory,
so both the driver and the Ray workers it starts import that tree's
``sam_batch`` (checked first: a Ray task reports where it imported it from).

Both sides run the same small jobs, each into the same folder (then moved
aside), so paths written into the output agree as well:

- ``demo``: ``sam-batch demo --output ...`` as the README runs it (the shipped
  model, the generated sample, compaction, evaluation's inputs);
- ``segments``: ``sam-batch run`` over two synthetic videos, one prompted and
  one left to discovery, 2 segments each with a sparse pass, discovery every 10
  frames, random weights, 2 workers, every memory state kept.

Then ``output_diff.compare_outputs`` checks each job's two folders file by
file (bytes; JSON and Parquet once timestamps, wall times and the package's
version are blanked) and prints a table, then ``RESULT {json}``; exit 1 when
anything differs or a run failed.

    python bench/same_output.py --before main              # main vs the working tree
    python bench/same_output.py --before HEAD~3 --after HEAD --jobs segments
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from output_diff import Comparison, FileResult, compare_outputs, summary

REPO = Path(__file__).resolve().parents[1]
#: Random weights score low: let every proposal through so discovery has work.
PERMISSIVE = {"pred_iou_thresh": 0.0, "stability_thresh": 0.0, "points_per_side": 4}
SEGMENT_FLAGS = [
    "--random-weights", "--image-size", "128", "--chunk-frames", "5", "--overlap", "4",
    "--segments", "2", "--sparse-step", "4", "--discover", "every:10",
    "--discovery-options", json.dumps(PERMISSIVE), "--workers", "2", "--cpus-per-worker", "1",
    "--keep-states", "all", "--progress", "off",
]
#: The ``sam-batch`` command, from whichever ``sam_batch`` is first on the path.
CLI = "import sys; from sam_batch.cli import main; sys.exit(main())"
#: Where the driver and a Ray worker import ``sam_batch`` from, on a local Ray
#: that listens on loopback only (what ``runtime/session.py`` does, inlined: the
#: module may move in the very restructuring being checked).
WHERE = """
import json, os, sam_batch, ray
from ray._private import ray_constants
os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
ray_constants.ENABLE_RAY_CLUSTER = False
ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=1,
         logging_level="WARNING")
worker = ray.get(ray.remote(lambda: __import__("sam_batch").__file__).remote())
ray.shutdown()
print(json.dumps([sam_batch.__file__, worker]))
"""


def tree_for(ref: str | None, side: str, work: Path, stack: ExitStack) -> Path:
    """The working tree (``ref`` None), or a detached worktree of ``ref`` removed on exit."""
    if ref is None:
        return REPO
    path = work / "trees" / side
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path),
                    ref], check=True)
    stack.callback(subprocess.run, ["git", "-C", str(REPO), "worktree", "remove", "--force",
                                    str(path)], check=False)
    return path


def side_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), TQDM_DISABLE="1")
    env.pop("RAY_ADDRESS", None)  # an embedded Ray per job, as the README's demo runs
    return env


def check_imports(tree: Path, cwd: Path) -> None:
    """Fail unless the driver and a Ray worker both import ``tree``'s ``sam_batch``."""
    out = subprocess.run([sys.executable, "-c", WHERE], env=side_env(tree), cwd=cwd,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"could not start Ray with {tree}:\n{out.stderr[-2000:]}")
    driver, worker = json.loads(out.stdout.strip().splitlines()[-1])
    for who, path in (("driver", driver), ("Ray worker", worker)):
        if Path(path).resolve() != (tree / "sam_batch" / "__init__.py").resolve():
            sys.exit(f"the {who} imported sam_batch from {path}, not from {tree}")


def write_inputs(folder: Path) -> Path:
    """Two 24-frame synthetic videos, one prompted and one for discovery; the manifest."""
    from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for video_id, seed, prompted in (("prompted", 3, True), ("auto", 5, False)):
        clip = generate(seed, width=64, height=48, num_frames=24, num_objects=2,
                        enter_leave=False)
        path = write_mp4(clip, folder / f"{video_id}.mp4", gop_size=5).path
        row = {"video": str(path), "video_id": video_id}
        if prompted:
            row["prompts"] = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
        rows.append(row)
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def job_args(job: str, out: Path, manifest: Path) -> list[str]:
    if job == "demo":
        return ["demo", "--output", str(out)]
    return ["run", "--manifest", str(manifest), "--output", str(out), *SEGMENT_FLAGS]


def run_side(job: str, side: str, tree: Path, work: Path, manifest: Path) -> dict:
    """Run ``job`` with ``tree``'s code into ``work/run/<job>``, then move it to
    ``work/<side>/<job>``; its log goes beside it."""
    out, dest = work / "run" / job, work / side / job
    shutil.rmtree(out, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log = work / side / f"{job}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-c", CLI, *job_args(job, out, manifest)],
                            env=side_env(tree), cwd=work, stdout=f, stderr=subprocess.STDOUT
                            ).returncode
    wall = time.perf_counter() - t0
    if out.exists():
        out.rename(dest)
    print(f"  {job:<9} {side:<7} rc {rc}, {wall:.0f} s  (log: {log})", flush=True)
    if rc:
        print("".join(log.read_text().splitlines(keepends=True)[-15:]), flush=True)
    return {"rc": rc, "wall_s": round(wall, 1)}


def compare_jobs(work: Path, jobs: list[str]) -> Comparison:
    """Both sides of every job, as one comparison whose paths start with the job's name."""
    out = Comparison()
    for job in jobs:
        written = str(work / "run" / job)
        result = compare_outputs(work / "before" / job, work / "after" / job, (written, written))
        out.files += [FileResult(f"{job}/{f.path}", f.status, f.why) for f in result.files]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git ref of the code before")
    ap.add_argument("--after", help="git ref of the code after (default: the working tree)")
    ap.add_argument("--jobs", nargs="+", choices=["demo", "segments"],
                    default=["demo", "segments"])
    ap.add_argument("--work", help="folder for trees, runs and logs (default: a temporary "
                                   "one, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the outputs to look at")
    args = ap.parse_args()

    with ExitStack() as stack:
        work = Path(args.work or tempfile.mkdtemp(prefix="same-output-")).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if not (args.keep or args.work):
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        trees = {"before": tree_for(args.before, "before", work, stack),
                 "after": tree_for(args.after, "after", work, stack)}
        for side, tree in trees.items():
            check_imports(tree, work)
            print(f"{side}: {args.before if side == 'before' else args.after or 'working tree'}"
                  f" ({tree}; driver and Ray workers import its sam_batch)", flush=True)
        sys.path.insert(0, str(trees["after"]))  # the inputs, from the code after
        manifest = write_inputs(work / "inputs")
        runs = {f"{job}/{side}": run_side(job, side, trees[side], work, manifest)
                for job in args.jobs for side in ("before", "after")}
        result = compare_jobs(work, args.jobs)
        print(result.table())
        failed = [name for name, r in runs.items() if r["rc"]]
        report = {**summary(result, args.jobs), "runs": runs, "runs_failed": failed}
        if args.keep or args.work:
            report["work"] = str(work)
        print("RESULT " + json.dumps(report))
        return 0 if result.identical and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
