"""Exports: turn a sam_batch dataset into the files other tools read.

One function, :func:`export`, and one module per format; each format is a
function ``(dataset, video_ids, out_url, storage_options, **options) -> URLs``
registered in :data:`FORMATS`:

===============  ==========================================================
``davis``        DAVIS palette PNGs, ``<out>/<video>/00000.png`` (:mod:`.davis`)
``per-object``   SA-V per-object PNGs, ``<out>/<video>/001/00000.png`` (:mod:`.davis`)
``ytvis``        YouTube-VIS JSON with COCO RLE (:mod:`.ytvis`); ``coco`` is the same
``overlay``      preview mp4 with tinted, labelled masks (:mod:`.overlay`)
``cutout``       objects on a colour/image, or an alpha matte (:mod:`.cutout`)
``redact``       objects blurred or pixelated, audio kept (:mod:`.redact`)
``stats``        area/bbox/centroid table and area plots (:mod:`.stats`)
===============  ==========================================================

A video export (overlay, cutout, redact) that cannot write one video goes
on with the others and names it in ``Exported.failed``.

Every export reads the dataset one video at a time and one mask part at a
time, and writes to a local path or any fsspec URL, each file whole or not
at all. ``videos=None`` exports every video whose status is ``ok``.

>>> import tempfile
>>> sorted(FORMATS)[:3]
['coco', 'cutout', 'davis']
>>> export("/data/run", "davis", tempfile.mkdtemp())        # doctest: +SKIP
Exported(fmt='davis', ...)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sam_batch.dataset.reader import Dataset
from sam_batch.errors import SamBatchError
from sam_batch.export.common import VideosFailed, select_videos
from sam_batch.export.cutout import export_cutout
from sam_batch.export.davis import export_davis, export_per_object
from sam_batch.export.overlay import export_overlay
from sam_batch.export.redact import export_redact
from sam_batch.export.stats import export_stats
from sam_batch.export.videofile import ENCODINGS, Encoding
from sam_batch.export.ytvis import export_ytvis

Writer = Callable[..., list[str]]

#: Format name -> writer. ``coco`` and ``ytvis`` are one format (YouTube-VIS JSON
#: with COCO RLE); ``sav`` is another name for ``per-object``.
FORMATS: dict[str, Writer] = {
    "davis": export_davis,
    "per-object": export_per_object,
    "sav": export_per_object,
    "ytvis": export_ytvis,
    "coco": export_ytvis,
    "overlay": export_overlay,
    "cutout": export_cutout,
    "redact": export_redact,
    "stats": export_stats,
}


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the videos and the top-level URLs (folders or files), and
    the videos that could not be exported, each with its error."""

    fmt: str
    out_url: str
    videos: tuple[str, ...]
    outputs: tuple[str, ...]
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


def options_of(fmt: str) -> list[str]:
    """The options a format takes (its writer's keyword-only parameters).

    >>> options_of("redact")
    ['objects', 'method', 'strength', 'grow', 'encoding', 'audio']
    """
    writer = _writer(fmt)
    params = inspect.signature(writer).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def export(
    dataset_url: str,
    fmt: str,
    out_url: str,
    videos: Iterable[str] | None = None,
    storage_options: dict | None = None,
    **options: object,
) -> Exported:
    """Export the dataset at ``dataset_url`` as ``fmt`` to ``out_url``.

    ``storage_options`` (fsspec) serve the dataset, the source videos and the
    output. ``options`` are the format's own (:func:`options_of`); an unknown
    one is an error that lists the known ones.

    >>> export("s3://bucket/run", "redact", "s3://bucket/redacted",            # doctest: +SKIP
    ...        videos=["cam1"], storage_options={"anon": False}, method="pixelate")
    """
    writer = _writer(fmt)
    known = options_of(fmt)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SamBatchError(
            f"export {fmt!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(known) or 'none'}"
        )
    ds = Dataset(dataset_url, storage_options)
    chosen = select_videos(ds, videos)
    try:
        outputs = writer(ds, chosen, out_url, storage_options, **options)
    except VideosFailed as e:  # the video formats go on past a video they cannot export
        bad = {v for v, _ in e.failed}
        return Exported(fmt, out_url, tuple(v for v in chosen if v not in bad),
                        tuple(e.written), tuple(e.failed))
    return Exported(fmt, out_url, tuple(chosen), tuple(outputs))


def _writer(fmt: str) -> Writer:
    if fmt not in FORMATS:
        raise SamBatchError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[fmt]


__all__ = ["ENCODINGS", "FORMATS", "Encoding", "Exported", "export", "options_of"]
