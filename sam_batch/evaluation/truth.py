"""Ground truth for ``evaluate``, read one video and one frame at a time.

Either a folder of DAVIS palette PNG folders (``<gt>/<video>/00000.png``, the
layout of DAVIS ``Annotations``, of ``synthetic.write_davis_png`` and of our
``davis`` export; value = object id, 255 = void) or another sam_batch dataset
(its ``ok`` videos, every frame). Both yield one ``TruthFrame`` per frame.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from urllib.parse import unquote

import numpy as np
from PIL import Image

from sam_batch.dataset.layout import VIDEOS_DIR
from sam_batch.dataset.reader import Dataset
from sam_batch.errors import SamBatchError
from sam_batch.export.common import every_frame
from sam_batch.media.storage import Location, safe_name

#: PNG value that marks pixels not to score (DAVIS convention).
VOID = 255

# (frame_idx, {obj_id: [H, W] bool}, void [H, W] bool or None, (H, W))
TruthFrame = tuple[int, dict[int, np.ndarray], np.ndarray | None, tuple[int, int]]



class PngTruth:
    """Ground truth as ``<root>/<video>/<frame>.png``, indexed PNGs (value = object id)."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.loc = Location(url, storage_options)
        if not self.loc.exists(""):
            raise SamBatchError(f"no ground truth at {url}")
        self.url = self.loc.url

    def video_ids(self) -> list[str]:
        entries = self.loc.fs.ls(self.loc.path(""), detail=True)
        names = [
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        ]
        return sorted(unquote(n) for n in names)

    def _folder(self, video_id: str) -> str:
        for name in (video_id, safe_name(video_id)):
            if self.loc.exists(name):
                return name
        raise SamBatchError(f"video {video_id!r} has no ground-truth folder in {self.url}")

    def _paths(self, video_id: str) -> dict[int, str]:
        """Frame index -> PNG path, for the ``<digits>.png`` files directly in the folder."""
        folder = self._folder(video_id)
        found = {}
        for path in self.loc.list(folder, ".png"):
            stem = path.rsplit("/", 1)[-1][: -len(".png")]
            if path.count("/") == folder.count("/") + 1 and stem.isdigit():
                found[int(stem)] = path
        if not found:
            raise SamBatchError(f"{self.loc.url_of(folder)} holds no <frame>.png ground truth")
        return found

    def frames(self, video_id: str) -> list[int]:
        return sorted(self._paths(video_id))

    def iter(self, video_id: str) -> Iterator[TruthFrame]:
        paths = self._paths(video_id)
        for t in sorted(paths):
            path = paths[t]
            image = Image.open(io.BytesIO(self.loc.read(path)))
            if image.mode not in ("P", "L", "1"):
                raise SamBatchError(
                    f"{self.loc.url_of(path)} is a {image.mode} PNG; ground truth must be "
                    "indexed (mode P, value = object id) or greyscale"
                )
            labels = np.asarray(image)
            ids = [int(v) for v in np.unique(labels) if 0 < v < VOID]
            void = labels == VOID
            yield t, {k: labels == k for k in ids}, (void if void.any() else None), labels.shape


class DatasetTruth:
    """Ground truth as another sam_batch dataset: its ``ok`` videos, every frame."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.ds = Dataset(url, storage_options)
        self.url = self.ds.url

    def video_ids(self) -> list[str]:
        return sorted(self.ds.video_ids("ok"))

    def frames(self, video_id: str) -> list[int]:
        if video_id not in self.ds.video_ids("ok"):
            raise SamBatchError(f"video {video_id!r} is not an ok video of {self.url}")
        return list(range(int(self.ds.video(video_id)["frames"])))

    def iter(self, video_id: str) -> Iterator[TruthFrame]:
        row = self.ds.video(video_id)
        shape = (int(row["height"]), int(row["width"]))
        for t, objs in every_frame(self.ds, video_id, row):
            yield t, {k: m.mask() for k, m in objs.items() if m.area > 0}, None, shape


def open_truth(gt: str, storage_options: dict | None = None) -> PngTruth | DatasetTruth:
    """A dataset (it has ``videos/``) or a folder of PNG folders."""
    if Location(gt, storage_options).exists(VIDEOS_DIR):
        return DatasetTruth(gt, storage_options)
    return PngTruth(gt, storage_options)
