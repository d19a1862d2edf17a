"""What a dataset weighs: files and bytes of masks, states and tracks per video-hour.

``sam-batch inspect`` prints it and ``bench/dataset.py`` measures with it: the
numbers that decide what a dataset costs to keep and to read (engines reading
object storage pay per file, storage per byte).

>>> import tempfile
>>> loc = Location(tempfile.mkdtemp())
>>> loc.write("masks/a/x.parquet", b"1234")
>>> f = footprint(loc, [{"status": "ok", "frames": 1800, "fps": 30.0}])
>>> f["video_hours"], f["masks"]
(0.016666666666666666, {'files': 1, 'bytes': 4, 'files_per_hour': 60.0, 'bytes_per_hour': 240.0})
"""

from __future__ import annotations

from collections.abc import Iterable

from sam_batch.dataset.layout import MASKS_DIR, STATES_DIR, TRACKS_DIR
from sam_batch.media.storage import Location

#: Folder of each kind of file a footprint counts.
KINDS = {"masks": MASKS_DIR, "states": STATES_DIR, "tracks": TRACKS_DIR}


def files_and_bytes(loc: Location, relpath: str) -> tuple[int, int]:
    """Files and bytes under ``relpath`` (one listing; temporary files left out)."""
    base = loc.path(relpath)
    if not loc.fs.exists(base):
        return 0, 0
    infos = [i for p, i in loc.fs.find(base, detail=True).items() if ".tmp-" not in p]
    return len(infos), sum(int(i.get("size") or 0) for i in infos)


def footprint(loc: Location, videos: Iterable[dict]) -> dict:
    """Files and bytes of each kind, in all and per hour of the ok videos (``videos/`` rows)."""
    hours = sum((v["frames"] or 0) / v["fps"] / 3600 for v in videos
                if v["status"] == "ok" and v.get("fps"))
    out: dict = {"video_hours": hours}
    for kind, folder in KINDS.items():
        files, size = files_and_bytes(loc, folder)
        out[kind] = {
            "files": files, "bytes": size,
            "files_per_hour": files / hours if hours else None,
            "bytes_per_hour": size / hours if hours else None,
        }
    return out
