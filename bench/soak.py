"""Soak: one job over hundreds of tiny videos; the driver's memory over the job.

A night's run is thousands of videos in one job. What the driver keeps of a
finished video must be on disk, not in its memory: this bench runs one job
over ``--videos`` copies of one short video (each its own manifest row and
video id), samples the driver's RSS at every scheduler step against the
number of videos done, and prints

- the RSS after start-up and at the end,
- the slope after ``--warmup`` videos, in KB per video done (least squares),
- videos per second after warm-up and over the whole job.

The driver is this process (the job runs in-process, as ``sam-batch run``
does); the actors are Ray's processes and not counted.

    python bench/soak.py --videos 150 --frames 30 --chunk 16 --model sam-batch-tiny
    python bench/soak.py --videos 300 --frames 8 --random-weights --json soak.json
    python bench/soak.py --videos 100 --diagnose    # where the driver's memory goes
    python bench/soak.py --videos 60 --trace 12     # Python's top growth (slow)
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import inspect
import json
import os
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TQDM_DISABLE", "1")


def rss_kb(field: str = "VmRSS") -> int:
    """A field of /proc/self/status in KB: VmRSS, or its parts RssAnon (the heaps),
    RssFile (mapped files) and RssShmem (shared memory: Ray's object store)."""
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(field + ":"))


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@functools.cache
def _mallinfo2() -> Callable[[], MallInfo2]:
    libc = ctypes.CDLL(None)  # once: each CDLL is a class and a reference cycle
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2


def malloc_in_use_kb() -> int:
    """glibc's heap in use (``mallinfo2``, every arena plus mmapped blocks), in KB: what
    the C side of the driver (Ray's core worker, Arrow) holds, as opposed to the pages
    RSS counts, which include freed blocks an arena keeps."""
    info = _mallinfo2()()
    return (info.uordblks + info.hblkhd) // 1024


def driver_refs() -> int:
    """Object references the driver's core worker counts (owned or borrowed)."""
    from ray._private.worker import global_worker

    return len(global_worker.core_worker.get_all_reference_counts())


def pymalloc_kb() -> dict[str, int]:
    """Python's small-object allocator, in KB (``sys._debugmallocstats``): its arenas
    (1 MiB each, mapped as the heap needs), the blocks in use, and the free blocks and
    pools its arenas keep. Arenas growing while blocks in use stay flat is
    fragmentation, not a leak."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)  # the statistics go to C's stderr
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        value = value.strip().replace(",", "")
        if not value.isdigit():
            continue
        if name.startswith("# arenas allocated current"):
            found["arenas"] = int(value) * 1024  # 1 MiB each
        elif name.startswith("# bytes in allocated blocks"):
            found["in use"] = int(value) // 1024
        elif name.startswith("# bytes in available blocks"):
            found["free blocks"] = int(value) // 1024
        elif "unused pools" in name:
            found["free pools"] = int(value) // 1024
    return found


def mappings() -> array:
    """(start address, resident KB, size KB) of each mapping of this process
    (/proc/self/smaps), flat. The size tells what an anonymous one is: 1 or 2 MiB,
    likely Python's object arenas; 64 MiB, a glibc arena; a few MiB, a thread's stack
    or another allocator's segment. Flat numbers, not a dict of strings, so that the
    snapshot taken inside the measured span adds next to nothing to what it measures."""
    out = array("Q")  # unsigned: the vsyscall page sits near 2**64
    start = size = 0
    with open("/proc/self/smaps", "rb") as f:
        for line in f:
            if line.startswith(b"Rss:"):
                out.extend((start, int(line.split()[1]), size))
            elif b"-" in line[:20] and not line.split(maxsplit=1)[0].endswith(b":"):
                lo, hi = (int(x, 16) for x in line.split(maxsplit=1)[0].split(b"-"))
                start, size = lo, (hi - lo) // 1024
    return out


def mapping_names() -> dict[int, str]:
    """What each mapping is (a file, [heap], [stack]...; none: anonymous), by start."""
    names = {}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            names[int(parts[0].split("-")[0], 16)] = parts[5] if len(parts) > 5 else "[anon]"
    return names


def print_mapping_growth(before: array, after: array, top: int = 8) -> None:
    rss0 = {before[i]: before[i + 1] for i in range(0, len(before), 3)}
    now = {after[i]: (after[i + 1], after[i + 2]) for i in range(0, len(after), 3)}
    names = mapping_names()
    grown = sorted(((rss - rss0.get(start, 0), start) for start, (rss, _) in now.items()),
                   reverse=True)
    print("resident growth by mapping: " + ", ".join(
        f"{start:x} {names.get(start, '?')} (of {now[start][1]} KB) {kb:+d} KB"
        for kb, start in grown[:top] if kb))


def _own_lines(*more: Callable) -> set[tuple[str, int]]:
    """The lines of this bench's recording (its sampler and what it calls): allocations
    with one of them in their traceback are the bench's, not the driver's."""
    lines = set()
    for fn in (rss_kb, malloc_in_use_kb, _mallinfo2, driver_refs, mappings, pymalloc_kb,
               *more):
        body, first = inspect.getsourcelines(inspect.unwrap(fn))
        lines |= {(__file__, first + i) for i in range(len(body))}
    return lines


def print_growth(snapshots: list, top: int = 12, own: set | None = None) -> None:
    """The tracebacks whose traced memory grew most between the two snapshots, leaving
    out the bench's own records (``own``: file and line of the recording code)."""
    (d0, s0), (d1, s1) = snapshots
    own = own or set()
    stats = [st for st in s1.compare_to(s0, "traceback")
             if not any((f.filename, f.lineno) in own for f in st.traceback)]
    total = sum(st.size_diff for st in stats)
    print(f"tracemalloc, videos {d0} -> {d1}: {total / 1024:+.0f} KB traced "
          f"({total / 1024 / max(d1 - d0, 1):+.2f} KB per video); top growth:")
    for st in stats[:top]:
        print(f"  {st.size_diff / 1024:+9.1f} KB {st.count_diff:+7d} blocks")
        for line in st.traceback.format()[-8:]:
            print("      " + line)


#: Numbers ``--diagnose`` records at each step (videos done, then seven measures).
EXTRA = 8


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (KB) over videos done."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def fifths(samples: list[tuple[float, int, int]], videos: int) -> list[dict]:
    """Videos per second and RSS growth per video done in each fifth of the job, end to
    end (first sample at or past the fifth's start to the first at or past its end): a
    driver that slowed as the job grew, or kept growing, shows it here."""
    out = []
    for k in range(5):
        lo, hi = videos * k // 5, videos * (k + 1) // 5
        first = next((s for s in samples if s[1] >= max(lo, 1)), None)
        last = next((s for s in samples if s[1] >= hi), None)
        if first is None or last is None or last[1] <= first[1]:
            continue
        done = last[1] - first[1]
        out.append({"videos": f"{lo}-{hi}", "videos_per_s": done / max(last[0] - first[0], 1e-9),
                    "rss_kb_per_video": (last[2] - first[2]) / done})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--model", default=None, help="e.g. sam-batch-tiny (the shipped model)")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cpus-per-worker", type=float, default=1)
    ap.add_argument("--warmup", type=int, default=None,
                    help="videos done before the slope is measured (default: a fifth)")
    ap.add_argument("--out", default=None, help="dataset folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--diagnose", action="store_true",
                    help="also the slopes of glibc's heap in use, Python's traced memory and "
                         "the object references the driver holds")
    ap.add_argument("--trace", type=int, default=0, metavar="FRAMES",
                    help="tracemalloc with this many frames: print the top growth between "
                         "the end of warm-up and nine tenths of the job (slow)")
    args = ap.parse_args()
    if not args.model and not args.random_weights:
        args.random_weights = True
    warmup = args.videos // 5 if args.warmup is None else args.warmup
    if args.trace:
        tracemalloc.start(args.trace)

    from sam_batch.config import JobConfig
    from sam_batch.driver.job import run
    from sam_batch.driver.progress import Progress
    from sam_batch.synthetic import first_frame_prompts, generate, write_mp4

    class Sampler(Progress):
        """Records (videos done, RSS) at every scheduler step; prints nothing.

        With ``--diagnose``, also glibc's heap in use, Python's traced memory and the
        number of object references the driver holds; with ``--trace``, a tracemalloc
        snapshot once warm-up is over and another at nine tenths of the job."""

        def __init__(self) -> None:
            super().__init__("off")
            # Flat arrays (24 bytes a step): the bench's own records stay out of the slope.
            self.times, self.dones, self.rss = array("d"), array("q"), array("q")
            self.extra = array("q")  # --diagnose: EXTRA numbers a step, flat
            self.snapshots: list = []
            self.maps: list[array] = []
            self.pymalloc: list[tuple[int, dict[str, int]]] = []
            self.done = 0

        def __call__(self, scheduler) -> None:
            self.done = scheduler.tally.done + scheduler.tally.failed
            self.times.append(time.monotonic())
            self.dones.append(self.done)
            self.rss.append(rss_kb())
            if args.diagnose:
                self.extra.extend((self.done, malloc_in_use_kb(),
                                   tracemalloc.get_traced_memory()[0] // 1024, driver_refs(),
                                   rss_kb("RssAnon"), rss_kb("RssFile"), rss_kb("RssShmem"),
                                   rss_kb("Threads")))
            if args.diagnose and len(self.maps) < 2 and self.done >= marks[len(self.maps)]:
                self.maps.append(mappings())
                self.pymalloc.append((self.done, pymalloc_kb()))
            if args.trace and len(self.snapshots) < 2 and self.done >= marks[len(self.snapshots)]:
                self.snapshots.append((self.done, tracemalloc.take_snapshot()))

    marks = (warmup, args.videos * 9 // 10)  # --diagnose and --trace compare these

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        clip = generate(0, width=args.width, height=args.height, num_frames=args.frames,
                        num_objects=1, enter_leave=False)
        video = folder / "in.mp4"
        write_mp4(clip, video)  # the driver imports no torch: nor does this bench
        prompts = [{**p, "frame": 0} for p in first_frame_prompts(clip, "box")]
        manifest = folder / "m.jsonl"
        manifest.write_text("".join(
            json.dumps({"video": str(video), "video_id": f"v{i:05d}", "prompts": prompts}) + "\n"
            for i in range(args.videos)))
        out = args.out or str(folder / "ds")
        config = JobConfig(
            manifest=str(manifest), output=out, chunk_frames=args.chunk, workers=args.workers,
            cpus_per_worker=args.cpus_per_worker, random_weights=args.random_weights,
            image_size=args.image_size or (None if args.model else 128), progress="off",
            overwrite=True, **({"model": args.model} if args.model else {}))
        sampler = Sampler()
        start_kb = rss_kb()
        t0 = time.monotonic()
        summary = run(config, progress=sampler)
        wall = time.monotonic() - t0

    samples = list(zip(sampler.times, sampler.dones, sampler.rss, strict=True))
    after = [(d, kb) for _, d, kb in samples if d >= warmup]
    first_done = next((t for t, d, _ in samples if d >= warmup), t0)
    last_t = samples[-1][0] if samples else t0
    steady_vps = (summary.videos_ok - warmup) / max(last_t - first_done, 1e-9)
    started_kb = next((kb for _, d, kb in samples if d >= 1), start_kb)
    result = {
        "videos": args.videos, "frames": args.frames, "size": f"{args.width}x{args.height}",
        "chunk": args.chunk, "model": args.model or "random", "workers": args.workers,
        "ok": summary.videos_ok, "failed": summary.videos_failed,
        "rss_before_mb": start_kb / 1024, "rss_first_video_mb": started_kb / 1024,
        "rss_end_mb": samples[-1][2] / 1024 if samples else None,
        "slope_kb_per_video": slope(after), "warmup_videos": warmup,
        # Whether the growth levels off: the slope over the job's second half alone.
        "slope_second_half_kb_per_video": slope(
            [(d, kb) for _, d, kb in samples if d >= args.videos // 2]),
        "videos_per_s_after_warmup": steady_vps, "videos_per_s": summary.videos_ok / wall,
        "wall_s": wall,
        # (videos done, RSS KB, seconds into the job) as each video finished.
        "rss_kb_by_videos_done": sorted({d: (d, kb, round(t - t0, 2))
                                         for t, d, kb in samples}.values()),
    }
    result["fifths"] = fifths(samples, args.videos)
    print(f"{args.videos} videos x {args.frames} frames ({result['size']}, chunk {args.chunk}, "
          f"{result['model']}): {summary.videos_ok} ok, {summary.videos_failed} failed in "
          f"{wall:.0f} s")
    print(f"driver RSS: {result['rss_first_video_mb']:.0f} MB after start-up (first video "
          f"done), {result['rss_end_mb']:.0f} MB at the end; slope after {warmup} videos: "
          f"{result['slope_kb_per_video']:+.2f} KB per video "
          f"({result['slope_second_half_kb_per_video']:+.2f} over the second half)")
    print(f"videos/s: {steady_vps:.2f} after warm-up, {result['videos_per_s']:.2f} overall; "
          f"{len(samples)} scheduler steps")
    print("by fifth of the job (does the driver slow down or keep growing?): " + "; ".join(
        f"{f['videos']} {f['videos_per_s']:.2f} videos/s {f['rss_kb_per_video']:+.2f} KB/video"
        for f in result["fifths"]))
    if sampler.extra:
        rows = [sampler.extra[i:i + EXTRA] for i in range(0, len(sampler.extra), EXTRA)]
        after_x = [row for row in rows if row[0] >= warmup]
        for i, name, unit, key in (
                (1, "glibc heap in use", "KB", "slope_heap_kb_per_video"),
                (2, "Python traced", "KB", "slope_traced_kb_per_video"),
                (3, "driver's object refs", "refs", "slope_refs_per_video"),
                (4, "RSS anonymous", "KB", "slope_anon_kb_per_video"),
                (5, "RSS files", "KB", "slope_file_kb_per_video"),
                (6, "RSS shared memory", "KB", "slope_shmem_kb_per_video"),
                (7, "threads", "", "slope_threads_per_video")):
            pts = [(row[0], row[i]) for row in after_x]
            result[key] = slope(pts)
            print(f"{name}: {pts[0][1] if pts else '?'} -> {pts[-1][1] if pts else '?'} {unit}; "
                  f"slope {slope(pts):+.2f} {unit} per video")
    if len(sampler.maps) == 2:
        print_mapping_growth(*sampler.maps)
        (d0, p0), (d1, p1) = sampler.pymalloc
        print(f"Python's allocator, videos {d0} -> {d1}: " + ", ".join(
            f"{k} {p0.get(k, 0)} -> {p1.get(k, 0)} KB" for k in p1))
    if len(sampler.snapshots) == 2:
        print_growth(sampler.snapshots, own=_own_lines(Sampler.__call__))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
