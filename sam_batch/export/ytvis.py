"""YouTube-VIS style JSON: one annotation per (video, object) with a mask per frame.

This is the video-instance format that VIS tools (the ``ytvos`` API, Detectron2,
MMDetection) load::

    {"info": {...}, "licenses": [],
     "videos": [{"id", "name", "file_names", "width", "height", "length"}],
     "annotations": [{"id", "video_id", "category_id", "iscrowd": 0,
                      "segmentations": [rle | null per frame],
                      "bboxes": [[x, y, w, h] | null], "areas": [int | null],
                      "width", "height", "length"}],
     "categories": [{"id", "name", "supercategory"}]}

Each segmentation is COCO compressed RLE, ``{"size": [H, W], "counts": str}``,
the dataset's own ``rle`` column passed through unchanged (no decode), so
``pycocotools.mask.decode`` gives the stored mask. A frame where the object
has no row, or an empty mask, is ``null``; an object never visible gets no
annotation. ``file_names`` are ``<video>/<frame:05d>.jpg`` (``frame_ext``).

The JSON is streamed to a temporary file: one video at a time, and within a
video each object's segmentations go to their own spool file, so neither the
masks of the dataset nor of one long video are ever held together.

>>> export("/data/run", "ytvis", "/data/ann.json", categories={1: 3})   # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from sam_batch import __version__
from sam_batch.dataset.reader import Dataset
from sam_batch.export.common import every_frame, local_file, split_target, video_dir, video_row
from sam_batch.media.storage import Location

CategoryMap = Mapping[int, int] | Mapping[tuple[str, int], int] | Callable[[str, int], int]


def _category(categories: CategoryMap | None, video_id: str, obj_id: int) -> int:
    """``(video_id, obj_id)`` first, then ``obj_id``, else category 1."""
    if categories is None:
        return 1
    if callable(categories):
        return int(categories(video_id, obj_id))
    if (video_id, obj_id) in categories:
        return int(categories[(video_id, obj_id)])  # type: ignore[index]
    return int(categories.get(obj_id, 1))  # type: ignore[call-overload]


class _Track:
    """One object's per-frame lists while its video streams; segmentations spool to disk."""

    def __init__(self, spool_dir: str, obj_id: int, frames_before: int):
        self.spool: IO[str] = open(Path(spool_dir) / f"{obj_id}.json", "w+")  # noqa: SIM115
        self.bboxes: list[list[float] | None] = []
        self.areas: list[int | None] = []
        self.visible = 0
        for _ in range(frames_before):
            self.add(None, None, None)

    def add(self, seg: dict | None, bbox: list[float] | None, area: int | None) -> None:
        if self.areas:
            self.spool.write(",")
        self.spool.write(json.dumps(seg, separators=(",", ":")))
        self.bboxes.append(bbox)
        self.areas.append(area)
        self.visible += seg is not None


def _write_video(
    out: IO[str],
    ds: Dataset,
    video_id: str,
    vid: int,
    next_ann: int,
    first: bool,
    categories: CategoryMap | None,
    used: set[int],
) -> int:
    """Append one video's annotations to ``out``; returns the next annotation id."""
    row = video_row(ds, video_id)
    height, width, length = int(row["height"]), int(row["width"]), int(row["frames"])
    with tempfile.TemporaryDirectory(prefix="sam_batch_ytvis_") as spool_dir:
        tracks: dict[int, _Track] = {}
        for t, objs in every_frame(ds, video_id, row):
            for k in objs:
                if k not in tracks:
                    tracks[k] = _Track(spool_dir, k, t)
            for k, track in tracks.items():
                m = objs.get(k)
                if m is None or m.area == 0:
                    track.add(None, None, None)
                else:
                    seg = {"size": [height, width], "counts": m.rle}
                    track.add(seg, [float(v) for v in m.bbox], int(m.area))
        for k in sorted(tracks):
            track = tracks[k]
            if not track.visible:
                track.spool.close()
                continue
            category = _category(categories, video_id, k)
            used.add(category)
            head = {
                "id": next_ann,
                "video_id": vid,
                "category_id": category,
                "iscrowd": 0,
                "width": width,
                "height": height,
                "length": length,
                "bboxes": track.bboxes,
                "areas": track.areas,
                "obj_id": k,
            }
            text = json.dumps(head, separators=(",", ":"))
            out.write(("" if first else ",") + text[:-1] + ',"segmentations":[')
            track.spool.seek(0)
            while block := track.spool.read(1 << 20):
                out.write(block)
            out.write("]}")
            track.spool.close()
            first = False
            next_ann += 1
    return next_ann


def export_ytvis(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    categories: CategoryMap | None = None,
    category_names: Mapping[int, str] | None = None,
    frame_ext: str = ".jpg",
) -> list[str]:
    """Write the JSON (``out_url`` ending ``.json``, else ``<out_url>/instances.json``).

    ``categories`` maps ``(video_id, obj_id)`` or ``obj_id`` to a category id
    (or is a function of both); unmapped objects are category 1.
    ``category_names`` names the categories (default ``"object"``, or the id).
    Annotations also carry ``obj_id``, the dataset's object id.
    """
    directory, name = split_target(out_url, (".json",), "instances.json")
    loc = Location(directory, storage_options)
    used: set[int] = set()
    video_entries = []
    with local_file(loc, name) as path, open(path, "w") as out:
        info = {"description": f"sam_batch export of {ds.url}", "version": __version__}
        out.write('{"info":' + json.dumps(info) + ',"licenses":[],"annotations":[')
        next_ann = 1
        for vid, video_id in enumerate(videos, start=1):
            row = video_row(ds, video_id)
            folder = video_dir(video_id)
            video_entries.append(
                {
                    "id": vid,
                    "name": video_id,
                    "width": int(row["width"]),
                    "height": int(row["height"]),
                    "length": int(row["frames"]),
                    "file_names": [
                        f"{folder}/{t:05d}{frame_ext}" for t in range(int(row["frames"]))
                    ],
                }
            )
            next_ann = _write_video(
                out, ds, video_id, vid, next_ann, next_ann == 1, categories, used
            )
        names = dict(category_names or {})
        cats = [
            {"id": c, "name": names.get(c, "object" if c == 1 else str(c)), "supercategory": ""}
            for c in sorted(used | set(names))
        ]
        out.write('],"videos":' + json.dumps(video_entries, separators=(",", ":")))
        out.write(',"categories":' + json.dumps(cats) + "}")
    return [loc.url_of(name)]
