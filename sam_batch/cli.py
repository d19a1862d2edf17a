"""The ``sam-batch`` command: run, plan, inspect, demo, export, eval.

Flags mirror the YAML config keys (``--chunk-frames`` is ``chunk_frames``) and
override a ``--config`` file. Exit codes: 0 all videos ok, 1 some video failed,
2 the job could not run (bad flags, config, manifest or output).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sam_batch.config import JobConfig, Redactor
from sam_batch.errors import SamBatchError

log = logging.getLogger("sam_batch")


def _job_flags(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--manifest", help="JSONL, CSV or Parquet: video, video_id, prompts")
    src.add_argument("--videos", nargs="+", metavar="URL_OR_GLOB",
                     help="video URLs or globs (s3://bucket/day/*.mp4)")
    p.add_argument("--output", help="dataset location: a path or URL (s3://bucket/dataset)")
    p.add_argument("--config", help="YAML file whose keys mirror these flags")
    p.add_argument("--model", help="sam2 config name (sam2.1_hiera_t, ...) or a YAML path")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--checkpoint", help="weights: path, fsspec URL or hf://facebook/<model>")
    w.add_argument("--random-weights", action="store_true", default=None,
                   help="random weights (tests and smoke runs only)")
    p.add_argument("--seed", type=int)
    p.add_argument("--image-size", type=int, help="model input size, a multiple of 32")
    p.add_argument("--precision", choices=["auto", "bfloat16", "float32"])
    p.add_argument("--compile", action="store_true", default=None,
                   help="sam2's compiled predictor (vos_optimized): for GPUs, minutes of warm-up")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--chunk-frames", type=int, help="frames per chunk (default 64)")
    p.add_argument("--overlap", type=int, help="frames shared by consecutive segments")
    p.add_argument("--segments", help="segments per video run in parallel, or 'auto'")
    p.add_argument("--sparse-step", type=int,
                   help="seed segments from a pass over every k-th frame (default 8; 0: off)")
    p.add_argument("--discover", metavar="every:K|starts|off",
                   help="find unprompted objects on keyframes every K frames and segment starts")
    p.add_argument("--discovery-options", type=json.loads, metavar="JSON",
                   help='discovery thresholds, e.g. {"pred_iou_thresh": 0.8, "max_new": 4}')
    p.add_argument("--workers", type=int, help="tracker actors (default: one per GPU)")
    p.add_argument("--gpus-per-worker", type=float, help="GPUs per actor; fractions allowed")
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or embedded)")
    p.add_argument("--storage-options", type=json.loads, metavar="JSON",
                   help="fsspec options for output and inputs, e.g. endpoint and credentials")
    p.add_argument("--input-storage-options", type=json.loads, metavar="JSON")
    p.add_argument("--max-retries", type=int)
    p.add_argument("--chunks-per-call", type=int, metavar="K",
                   help="run K consecutive chunks of a chain per actor call: one completion "
                        "for the driver per K chunks (for thousands of GPUs); same output")
    p.add_argument("--objects-per-worker", type=int, metavar="K",
                   help="split a video's objects into groups of at most K, each tracked on "
                        "its own chain (any actor); the same masks, each frame encoded per group")
    p.add_argument("--keep-states", metavar="last|every:N|all",
                   help="memory states kept once a video is done (default every:27000 frames)")
    p.add_argument("--progress", choices=["auto", "bar", "log", "off"])
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a dataset of another job at --output")


def config_from_args(args: argparse.Namespace, ignore: tuple[str, ...] = ()) -> JobConfig:
    """The YAML config (if any), overridden by every flag given.

    ``ignore``: YAML keys that are not job settings (a job script's own section).
    """
    names = JobConfig.field_names()
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if isinstance(flags.get("segments"), str) and flags["segments"] != "auto":
        try:
            flags["segments"] = int(flags["segments"])
        except ValueError:
            raise SamBatchError(f"--segments must be a number or 'auto', not {flags['segments']!r}"
                                ) from None
    config = (JobConfig.from_yaml(args.config, flags, ignore) if args.config
              else JobConfig.from_dict(flags, where="flags"))
    args.redactor = Redactor(config.secrets())
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from sam_batch.driver.job import run

    config = config_from_args(args)
    summary = run(config)
    print(args.redactor.scrub(summary.text()))
    return 0 if summary.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    from sam_batch.driver.inputs import plan_for, video_entries
    from sam_batch.media.video import probe
    from sam_batch.plan.object_groups import group_prompts
    from sam_batch.plan.prompts import validate_prompts

    config = config_from_args(args)
    if not config.output:
        config.output = "(plan)"
    config.validate()
    redactor = args.redactor
    entries = video_entries(config)

    def one(entry):  # probe is I/O bound: a few at a time
        if entry.error:
            return entry, None, [], entry.error
        try:
            info = probe(entry.video, config.inputs_storage())
            prompts = validate_prompts(entry.prompts, info.num_frames, info.width, info.height)
            return entry, info, prompts, None
        except SamBatchError as e:
            return entry, None, [], str(e)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, entries))
    total_frames = total_chunks = 0
    print(f"{'video_id':<24} {'frames':>7} {'fps':>6} {'size':>10} {'prompts':>7} "
          f"{'segments':>8} {'chunks':>6} {'groups':>6}")
    for entry, info, prompts, error in results:
        if error:
            print(f"{entry.video_id:<24} FAILED: {redactor.scrub(error)}")
            continue
        plan = plan_for(config, entry.video_id, info.num_frames, config.workers or 1,
                        len(entries))
        # As the run splits them: object groups only in a video of one segment.
        groups = group_prompts(prompts, config.objects_per_worker or len(prompts) or 1)
        if len(plan.segments) > 1 or len(groups) < 2:
            groups = []
        chunks = len(plan.chunks) * max(1, len(groups))  # each group runs every chunk
        total_frames += info.num_frames
        total_chunks += chunks
        print(f"{entry.video_id:<24} {info.num_frames:>7} {info.fps:>6.2f} "
              f"{f'{info.width}x{info.height}':>10} {len(entry.prompts):>7} "
              f"{len(plan.segments):>8} {chunks:>6} {max(1, len(groups)):>6}")
        if groups:
            print("    object groups: " + " | ".join(
                ",".join(str(o) for o in sorted({p.obj_id for p in g})) for g in groups))
    failed = sum(1 for _, _, _, e in results if e)
    print(f"{len(results)} video(s), {failed} unusable; {total_frames} frames in {total_chunks} "
          f"chunks of up to {config.chunk_frames} frames")
    return 0 if not failed else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from sam_batch.dataset.reader import Dataset

    summary = Dataset(args.url, args.storage_options).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    state = "complete" if summary["complete"] else "INCOMPLETE (no _job.json yet)"
    print(f"{summary['url']}: {state}")
    print(f"  videos: {summary['videos_ok']} ok, {summary['videos_failed']} failed; "
          f"{summary['frames']} frames; {summary['tracks']} tracks")
    print(f"  masks: {summary['mask_rows']} rows in {summary['mask_parts']} files")
    fp = summary["footprint"]
    if fp["video_hours"]:
        per_hour = ", ".join(
            f"{kind} {fp[kind]['files_per_hour']:.0f} files {_mib(fp[kind]['bytes_per_hour'])}"
            for kind in ("masks", "states", "tracks"))
        print(f"  per video-hour ({fp['video_hours']:.3f} h): {per_hour}")
    for f in summary["failed"]:
        print(f"  failed {f['video_id']}: {f['error']}")
    return 0


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a sample video with prompts, track it, and show where the output is."""
    from pathlib import Path

    from sam_batch.driver.job import run
    from sam_batch.synthetic import write_sample

    root = Path(args.output).resolve()
    video, manifest = write_sample(root / "input")
    print(f"sample video: {video}\nmanifest:     {manifest}")
    # The shipped model tracks the sample for real; --model/--checkpoint take another.
    model = {"model": args.model, "checkpoint": args.checkpoint}
    if args.random_weights:
        model = {"model": args.model, "random_weights": True, "image_size": 256}
    config = JobConfig(
        manifest=str(manifest), output=str(root / "dataset"), chunk_frames=16,
        progress=args.progress or "auto", overwrite=True, **model,
    )
    summary = run(config)
    print(summary.text())
    args.url, args.storage_options, args.json = config.output, None, False
    cmd_inspect(args)
    if summary.ok:  # how good the masks are: DAVIS J&F against the sample's exact truth
        import shutil

        from sam_batch.evaluation.evaluate import evaluate

        truth = root / "truth"  # DAVIS layout: one folder of PNGs per video id
        shutil.copytree(root / "input" / "sample_gt", truth / "sample", dirs_exist_ok=True)
        print(evaluate(config.output, str(truth)).table())
    return 0 if summary.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from sam_batch.export import export

    options = dict(args.option or [])
    result = export(args.dataset, args.format, args.out, videos=args.videos,
                    storage_options=args.storage_options, **options)
    for url in result.outputs:
        print(url)
    print(f"exported {len(result.videos)} video(s) as {result.fmt} to {result.out_url}"
          + (f", {len(result.failed)} failed" if result.failed else ""))
    for video_id, error in result.failed:
        print(f"  failed {video_id}: {error}")
    return 0 if result.ok else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from sam_batch.evaluation.evaluate import evaluate

    report = evaluate(args.pred, args.gt, videos=args.videos,
                      storage_options=args.storage_options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    from sam_batch.driver.correct import correct

    args.redactor = Redactor(JobConfig(storage_options=args.storage_options or {}).secrets())
    for done in correct(args.dataset, args.prompts, args.storage_options,
                        args.input_storage_options, args.checkpoint, args.address):
        print(done.text())
    return 0


def _option(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value where it parses (``alpha=0.4``, ``objects=[1,2]``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam-batch", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="segment videos into a dataset")
    _job_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="print videos, frames and the chunk plan; run nothing")
    _job_flags(p)
    p.set_defaults(func=cmd_plan)

    _correct_parser(sub)
    _inspect_parser(sub)
    _demo_parser(sub)
    _export_parser(sub)
    _eval_parser(sub)
    return parser


def _correct_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("correct", help="re-track a finished dataset's videos from corrections "
                                       "on, from the nearest kept state")
    p.add_argument("dataset")
    p.add_argument("--prompts", required=True,
                   help="JSONL: {\"video_id\": ..., \"prompts\": [...]} per line, the "
                        "manifest's prompt format, one frame per video")
    p.add_argument("--storage-options", type=json.loads, metavar="JSON")
    p.add_argument("--input-storage-options", type=json.loads, metavar="JSON")
    p.add_argument("--checkpoint", help="the dataset's weights, where they are now")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or embedded)")
    p.set_defaults(func=cmd_correct)


def _inspect_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summary of a finished or partial dataset")
    p.add_argument("url")
    p.add_argument("--storage-options", type=json.loads, metavar="JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="track a generated sample video (embedded Ray)")
    p.add_argument("--output", default="sam_batch_demo")
    p.add_argument("--progress", choices=["auto", "bar", "log", "off"])
    p.add_argument("--model", default="sam-batch-tiny",
                   help="the shipped sam-batch-tiny (default) or a sam2 config with --checkpoint")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--checkpoint")
    w.add_argument("--random-weights", action="store_true")
    p.set_defaults(func=cmd_demo)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a dataset as DAVIS/SA-V PNGs, YouTube-VIS JSON, "
                                      "overlay/cutout/redacted video or stats")
    p.add_argument("dataset")
    p.add_argument("--format", required=True,
                   help="davis, per-object, ytvis (coco), overlay, cutout, redact, stats")
    p.add_argument("--out", required=True, help="output folder or file URL")
    p.add_argument("--videos", nargs="+", help="video ids (default: every ok video)")
    p.add_argument("--option", "-o", action="append", type=_option, metavar="KEY=VALUE",
                   help="format option, e.g. -o objects=[1,2] -o method=pixelate")
    p.add_argument("--storage-options", type=json.loads, metavar="JSON")
    p.set_defaults(func=cmd_export)


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="DAVIS 2017 J&F of a dataset against ground truth")
    p.add_argument("pred", help="the dataset to score")
    p.add_argument("--gt", required=True, help="DAVIS PNG folders, or another dataset")
    p.add_argument("--videos", nargs="+")
    p.add_argument("--storage-options", type=json.loads, metavar="JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except SamBatchError as e:
        redactor = getattr(args, "redactor", None) or Redactor(JobConfig().secrets())
        print(f"sam-batch: error: {redactor.scrub(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
