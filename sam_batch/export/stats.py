"""Per-object, per-frame statistics as a table, and an area-over-time plot per video.

The questions after a run are often about shape, not pixels: when does an
object appear, how big is it, where does it go, where did tracking drop it.
One table row per (video, object, frame) with a row in the dataset answers
them without decoding masks again; a plot per video shows the areas over time,
where a lost object is a curve falling to zero.

Columns: ``video_id, obj_id, frame_idx, time_s, area, bbox_x, bbox_y, bbox_w,
bbox_h`` (COCO: pixel edges, ``x, y`` of the top-left corner), ``centroid_x,
centroid_y`` (the mean column and row index of the mask's pixels; NaN for an
empty mask) and ``score``. ``out_url`` ending in ``.csv`` or ``.parquet``
names the table; the plots go beside it in ``<stem>_plots/<video>.png``.
Otherwise ``out_url`` is a directory with ``stats.parquet`` and
``plots/<video>.png``. The table is written row group by row group (one per
video) to a temporary file, so it never sits in memory whole.

>>> export("/data/run", "stats", "/data/run-stats.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sam_batch.dataset.reader import Dataset
from sam_batch.export.common import (
    color_of,
    every_frame,
    local_file,
    parse_objects,
    split_target,
    video_dir,
    video_row,
)
from sam_batch.media.storage import Location

STATS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("obj_id", pa.int64(), nullable=False),
        pa.field("frame_idx", pa.int64(), nullable=False),
        pa.field("time_s", pa.float64(), nullable=False),
        pa.field("area", pa.int64(), nullable=False),
        pa.field("bbox_x", pa.float32(), nullable=False),
        pa.field("bbox_y", pa.float32(), nullable=False),
        pa.field("bbox_w", pa.float32(), nullable=False),
        pa.field("bbox_h", pa.float32(), nullable=False),
        pa.field("centroid_x", pa.float64(), nullable=False),
        pa.field("centroid_y", pa.float64(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)``: mean column and row index of the mask's pixels, NaN if empty.

    >>> m = np.zeros((4, 4), bool); m[1, 1:3] = True
    >>> centroid(m)
    (1.5, 1.0)
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return float("nan"), float("nan")
    return float(xs.mean()), float(ys.mean())


def video_stats(ds: Dataset, video_id: str, chosen: frozenset[int] | None) -> pa.Table:
    """One video's rows, in frame then object order."""
    cols: dict[str, list] = {f.name: [] for f in STATS_SCHEMA}
    for t, objs in every_frame(ds, video_id):
        for k in sorted(objs):
            if chosen is not None and k not in chosen:
                continue
            m = objs[k]
            cx, cy = centroid(m.mask()) if m.area else (float("nan"), float("nan"))
            for name, value in zip(
                STATS_SCHEMA.names,
                (video_id, k, t, m.time_s, m.area, *m.bbox, cx, cy, m.score),
                strict=True,
            ):
                cols[name].append(value)
    return pa.table(cols, schema=STATS_SCHEMA)


def area_plot(table: pa.Table, video_id: str, num_frames: int) -> bytes:
    """PNG of each object's area per frame (absent frames left as gaps)."""
    fig = Figure(figsize=(8, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    obj_ids = np.asarray(table.column("obj_id"))
    frames, areas = np.asarray(table.column("frame_idx")), np.asarray(table.column("area"))
    for k in np.unique(obj_ids).tolist():
        series = np.full(num_frames, np.nan)
        pick = obj_ids == k
        series[frames[pick]] = areas[pick]
        ax.plot(
            np.arange(num_frames),
            series,
            label=f"object {k}",
            color=np.asarray(color_of(k)) / 255,
            linewidth=1.2,
        )
    ax.set(title=video_id, xlabel="frame", ylabel="area (pixels)", xlim=(0, max(1, num_frames - 1)))
    ax.grid(alpha=0.3)
    if len(obj_ids):
        ax.legend(loc="upper right", fontsize="small", ncol=4)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def export_stats(
    ds: Dataset,
    videos: list[str],
    out_url: str,
    storage_options: dict | None = None,
    *,
    objects: Iterable[int] | None = None,
    plots: bool = True,
) -> list[str]:
    """Write the table (and plots); returns the table's URL then the plots' URLs."""
    suffixes = (".csv", ".parquet")
    directory, name = split_target(out_url, suffixes, "stats.parquet")
    names_file = out_url.rstrip("/").lower().endswith(suffixes)
    plot_dir = f"{name.rsplit('.', 1)[0]}_plots" if names_file else "plots"
    loc, chosen = Location(directory, storage_options), parse_objects(objects)
    written_plots = []
    with local_file(loc, name) as path:
        if name.lower().endswith(".csv"):
            writer = pacsv.CSVWriter(str(path), STATS_SCHEMA)
        else:
            writer = pq.ParquetWriter(str(path), STATS_SCHEMA, compression="zstd")
        try:
            for video_id in videos:
                table = video_stats(ds, video_id, chosen)
                writer.write_table(table)
                if plots:
                    rel = f"{plot_dir}/{video_dir(video_id)}.png"
                    frames = int(video_row(ds, video_id)["frames"])
                    loc.write(rel, area_plot(table, video_id, frames))
                    written_plots.append(loc.url_of(rel))
        finally:
            writer.close()
    return [loc.url_of(name), *written_plots]
