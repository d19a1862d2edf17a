"""Export promises: every format round-trips to exactly the masks in the dataset.

The dataset is built by ``tests/datasets.py`` from synthetic ground truth, so
each test knows the mask of every (video, frame, object). ``clip-a`` has a box
object (``BOX_ID``) overlapping object 1, an object that enters late (no rows
before it appears) and one whose last row is empty; ``clip b`` has a space in
its id; ``broken`` failed. Video exports are checked by decoding them with
PyAV; with ``encoding="lossless"`` they are compared pixel for pixel.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import fsspec
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from datasetkit import BOX_ID, BuiltDataset, BuiltVideo, build_dataset, finish, write_video
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from sam_batch.dataset.reader import Dataset
from sam_batch.dataset.rle import encode
from sam_batch.errors import SamBatchError
from sam_batch.export import FORMATS, export, options_of
from sam_batch.media.decode import read_frames
from sam_batch.media.storage import safe_name
from sam_batch.media.video import probe
from sam_batch.synthetic import davis_palette


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltDataset:
    return build_dataset(tmp_path_factory.mktemp("export") / "dataset")


@pytest.fixture(autouse=True)
def streaming_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports must stream: ``Dataset.masks`` (every row of a video at once) is off limits."""

    def refuse(*args, **kwargs):
        raise AssertionError("an export loaded all masks with Dataset.masks")

    monkeypatch.setattr(Dataset, "masks", refuse)


def source_frames(video: BuiltVideo) -> list[np.ndarray]:
    return [rgb for _, rgb in read_frames(str(video.path), 0, video.num_frames)]


def decoded(path: str | Path, fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format=fmt) for f in c.decode(c.streams.video[0])]


def union(video: BuiltVideo, t: int, ids: list[int] | None = None) -> np.ndarray:
    out = np.zeros(video.shape, bool)
    for k, m in video.masks.items():
        if ids is None or k in ids:
            out |= m[t]
    return out


def png(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


# ------------------------------------------------------------------ PNG exports


def test_davis_pngs_hold_object_ids_on_every_frame_and_the_lower_id_wins(built, tmp_path):
    result = export(built.url, "davis", str(tmp_path))
    assert result.videos == ("clip b", "clip-a"), "videos=None means the ok videos only"
    assert not (tmp_path / "broken").exists()
    for video in built.videos.values():
        folder = tmp_path / safe_name(video.video_id)
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{t:05d}.png" for t in range(video.num_frames)
        ]
        for t in range(video.num_frames):
            image = png(folder / f"{t:05d}.png")
            assert image.mode == "P" and image.getpalette()[:768] == davis_palette()
            expected = np.zeros(video.shape, np.uint8)
            for k in sorted(video.masks, reverse=True):
                expected[video.masks[k][t]] = k
            assert (np.asarray(image) == expected).all(), (video.video_id, t)
    a = built.videos["clip-a"]
    t = a.overlap_frame(1, BOX_ID)
    labels = np.asarray(png(tmp_path / "clip-a" / f"{t:05d}.png"))
    both = a.masks[1][t] & a.masks[BOX_ID][t]
    assert both.any() and (labels[both] == 1).all(), "object 1 wins where it overlaps object 9"
    assert (labels == BOX_ID).any(), "the box shows where no lower id covers it"


def test_davis_refuses_ids_above_255_before_writing_and_per_object_keeps_them(tmp_path):
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    write_video(tmp_path / "ds", "v", {300: masks, 2: ~masks})
    finish(tmp_path / "ds")
    with pytest.raises(SamBatchError, match=r"object id 300 .*'per-object'"):
        export(str(tmp_path / "ds"), "davis", str(tmp_path / "davis"))
    assert not (tmp_path / "davis").exists(), "nothing is written for a dataset it cannot hold"
    export(str(tmp_path / "ds"), "per-object", str(tmp_path / "sav"))
    assert (np.asarray(png(tmp_path / "sav" / "v" / "300" / "00001.png")) == masks[1]).all()


def test_per_object_pngs_follow_the_sav_layout_with_every_frame_and_overlaps_kept(built, tmp_path):
    export(built.url, "per-object", str(tmp_path))
    for video in built.videos.values():
        folder = tmp_path / safe_name(video.video_id)
        assert sorted(p.name for p in folder.iterdir()) == [f"{k:03d}" for k in video.masks]
        for k, masks in video.masks.items():
            files = sorted((folder / f"{k:03d}").iterdir())
            assert [p.name for p in files] == [f"{t:05d}.png" for t in range(video.num_frames)]
            for t, path in enumerate(files):
                image = png(path)
                values = np.asarray(image)
                # SAM 2's vos_inference writes mask.astype(uint8) with the DAVIS palette
                # and reads it back as `> 0`.
                assert image.mode == "P" and set(np.unique(values)) <= {0, 1}
                assert ((values > 0) == masks[t]).all(), (video.video_id, k, t)
    a = built.videos["clip-a"]
    assert 0 not in a.present[3], "object 3 enters late"
    assert not np.asarray(png(tmp_path / "clip-a" / "003" / "00000.png")).any()
    t = a.overlap_frame(1, BOX_ID)
    one = np.asarray(png(tmp_path / "clip-a" / "001" / f"{t:05d}.png"))
    box = np.asarray(png(tmp_path / "clip-a" / f"{BOX_ID:03d}" / f"{t:05d}.png"))
    assert ((one == 1) & (box == 1)).any(), "both objects keep the pixels they share"


# ------------------------------------------------------------------ JSON export


def test_ytvis_json_decodes_with_pycocotools_to_the_masks_with_null_where_absent(built, tmp_path):
    out = tmp_path / "ann.json"
    result = export(
        built.url, "ytvis", str(out), categories={("clip-a", 2): 7, 1: 5}, category_names={7: "dog"}
    )
    assert result.outputs == (str(out),)
    doc = json.loads(out.read_text())
    videos = {v["id"]: v for v in doc["videos"]}
    assert sorted(v["name"] for v in videos.values()) == sorted(built.videos)
    seen = set()
    for ann in doc["annotations"]:
        video = built.videos[videos[ann["video_id"]]["name"]]
        k = ann["obj_id"]
        seen.add((video.video_id, k))
        assert videos[ann["video_id"]]["length"] == video.num_frames
        assert len(videos[ann["video_id"]]["file_names"]) == video.num_frames
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == len(ann["areas"])
        assert len(ann["segmentations"]) == video.num_frames and ann["iscrowd"] == 0
        want = 7 if (video.video_id, k) == ("clip-a", 2) else 5 if k == 1 else 1
        assert ann["category_id"] == want
        for t, seg in enumerate(ann["segmentations"]):
            mask = video.masks[k][t]
            if not mask.any():
                assert seg is None and ann["bboxes"][t] is None and ann["areas"][t] is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == list(video.shape)
            assert (mask_utils.decode(seg).astype(bool) == mask).all(), (video.video_id, k, t)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            assert ann["bboxes"][t] == mask_utils.toBbox(rle).tolist()
            assert ann["areas"][t] == int(mask.sum())
    assert seen == {(v, k) for v, video in built.videos.items() for k in video.masks}
    a = built.videos["clip-a"]
    last_of_1 = a.num_frames - 1
    assert last_of_1 in a.present[1] and not a.masks[1][last_of_1].any(), "an empty row"
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert cats == {1: "object", 5: "5", 7: "dog"}


# ------------------------------------------------------------------ video exports


def test_overlay_keeps_frame_count_fps_timing_and_audio_and_tints_the_masks(built, tmp_path):
    export(built.url, "overlay", str(tmp_path))
    with av.open(str(tmp_path / "clip%20b.mp4")) as c:  # constant 24 fps, no audio
        assert c.streams.video[0].average_rate == 24 and not c.streams.audio
        assert c.streams.video[0].frames == built.videos["clip b"].num_frames
    a = built.videos["clip-a"]
    path = tmp_path / "clip-a.mp4"
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1
    info, source = probe(str(path)), probe(str(a.path))
    assert info.num_frames == a.num_frames and (info.width, info.height) == (64, 48)
    # clip-a has variable frame rate: every frame keeps its own time, not just the count
    assert [p * info.time_base for p in info.pts] == [p * source.time_base for p in source.pts]
    # Plain tint (no outline, no label), encoded losslessly: each mask moves its pixels
    # halfway to the object's palette colour, the lower id on top; outside, the source.
    export(
        built.url,
        "overlay",
        str(tmp_path / "tint"),
        videos=["clip-a"],
        outline=False,
        labels=False,
        encoding="lossless",
    )
    palette = np.array(davis_palette()).reshape(256, 3)
    labelled = decoded(path)
    for t, (frame, src) in enumerate(
        zip(decoded(tmp_path / "tint" / "clip-a.mp4"), source_frames(a), strict=True)
    ):
        expected = src.astype(float)
        for k in sorted(a.masks, reverse=True):
            m = a.masks[k][t]
            expected[m] = (expected[m] + palette[k]) / 2  # layers composite, lowest id last
        assert np.abs(frame - expected).max() <= 0.5, t
        # Outline and ids are drawn on top of the tint.
        assert np.abs(labelled[t].astype(int) - frame).max() > 100, t


def test_cutout_alpha_pngs_are_the_source_pixels_with_the_mask_as_alpha(built, tmp_path):
    export(
        built.url,
        "cutout",
        str(tmp_path),
        videos=["clip-a"],
        objects=[2, BOX_ID],
        alpha=True,
        output="png",
    )
    a = built.videos["clip-a"]
    for t, src in enumerate(source_frames(a)):
        rgba = np.asarray(png(tmp_path / "clip-a" / f"{t:05d}.png"))
        assert rgba.shape == (*a.shape, 4)
        assert (rgba[..., 3] == np.where(union(a, t, [2, BOX_ID]), 255, 0)).all(), t
        assert (rgba[..., :3] == src).all()


@pytest.mark.parametrize("encoding", ["png-mov", "qtrle"])
def test_cutout_alpha_video_carries_the_mask_exactly(built, tmp_path, encoding):
    export(built.url, "cutout", str(tmp_path), videos=["clip-a"], alpha=True, encoding=encoding)
    a = built.videos["clip-a"]
    frames = decoded(tmp_path / "clip-a.mov", "rgba")
    assert len(frames) == a.num_frames
    for t, rgba in enumerate(frames):
        assert (rgba[..., 3] == np.where(union(a, t), 255, 0)).all(), t


def test_cutout_vp9_alpha_webm_is_close_to_the_mask(built, tmp_path):
    export(built.url, "cutout", str(tmp_path), videos=["clip-a"], alpha=True, encoding="vp9-alpha")
    a = built.videos["clip-a"]
    with av.open(str(tmp_path / "clip-a.webm")) as c:
        stream = c.streams.video[0]
        decoder = av.CodecContext.create("libvpx-vp9", "r")  # FFmpeg's own vp9 drops alpha
        frames = [f.to_ndarray(format="rgba") for p in c.demux(stream) for f in decoder.decode(p)]
    assert len(frames) == a.num_frames
    for t, rgba in enumerate(frames):
        assert ((rgba[..., 3] > 127) == union(a, t)).mean() > 0.98, t


def test_cutout_on_a_colour_or_an_image_is_exact_when_lossless(built, tmp_path):
    a = built.videos["clip-a"]
    export(
        built.url,
        "cutout",
        str(tmp_path / "green"),
        videos=["clip-a"],
        objects=[1],
        background="#00ff00",
        encoding="lossless",
    )
    bg = np.zeros((30, 40, 3), np.uint8)
    bg[:, :, 2] = np.arange(40, dtype=np.uint8)[None, :] * 6
    Image.fromarray(bg).save(tmp_path / "bg.png")
    export(
        built.url,
        "cutout",
        str(tmp_path / "image"),
        videos=["clip-a"],
        objects=[1],
        background_image=str(tmp_path / "bg.png"),
        encoding="lossless",
    )
    fitted = np.asarray(Image.fromarray(bg).resize((64, 48), Image.Resampling.LANCZOS))
    for t, (green, on_image, src) in enumerate(
        zip(
            decoded(tmp_path / "green" / "clip-a.mp4"),
            decoded(tmp_path / "image" / "clip-a.mp4"),
            source_frames(a),
            strict=True,
        )
    ):
        m = a.masks[1][t]
        assert (green[m] == src[m]).all() and (green[~m] == [0, 255, 0]).all(), t
        assert (on_image[m] == src[m]).all() and (on_image[~m] == fitted[~m]).all(), t


def test_redact_changes_only_the_chosen_masks_and_keeps_timing_and_audio(built, tmp_path):
    a = built.videos["clip-a"]
    export(
        built.url, "redact", str(tmp_path), videos=["clip-a"], objects=[1, 2], encoding="lossless"
    )
    out = tmp_path / "clip-a.mp4"
    info, source = probe(str(out)), probe(str(a.path))
    assert info.num_frames == a.num_frames
    assert [p * info.time_base for p in info.pts] == [p * source.time_base for p in source.pts]
    changed = 0
    for t, (frame, src) in enumerate(zip(decoded(out), source_frames(a), strict=True)):
        chosen = union(a, t, [1, 2])
        assert (frame[~chosen] == src[~chosen]).all(), f"frame {t}: a pixel outside changed"
        differs = (frame != src).any(axis=2)
        changed += differs[chosen].sum()
        assert differs[chosen].mean() > 0.6, f"frame {t}: the masks are not blurred"
    assert changed > 0

    def audio(path: Path) -> list[bytes]:
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.dts is not None]

    assert audio(out) == audio(a.path) and len(audio(out)) > 10, "audio packets copied unchanged"


def test_redact_pixelates_on_a_frame_grid_and_grow_widens_the_masks(built, tmp_path):
    a = built.videos["clip-a"]
    export(
        built.url,
        "redact",
        str(tmp_path),
        videos=["clip-a"],
        objects=[2],
        method="pixelate",
        strength=4,
        grow=2,
        encoding="lossless",
        audio=False,
    )
    with av.open(str(tmp_path / "clip-a.mp4")) as c:
        assert not c.streams.audio
    frames = decoded(tmp_path / "clip-a.mp4")
    for t, (frame, src) in enumerate(zip(frames, source_frames(a), strict=True)):
        # grow=2: every pixel within 2 (chessboard distance) of the mask
        grown = ndimage.binary_dilation(a.masks[2][t], np.ones((3, 3), bool), iterations=2)
        assert (frame[~grown] == src[~grown]).all(), "nothing changes outside the grown mask"
        assert (frame[grown] != src[grown]).any(axis=1).mean() > 0.6
        for y in range(0, 48, 4):
            for x in range(0, 64, 4):
                inside = grown[y : y + 4, x : x + 4]
                colours = frame[y : y + 4, x : x + 4][inside]
                assert len(np.unique(colours, axis=0)) <= 1, f"block ({y}, {x}) is one colour"


@pytest.mark.parametrize(("encoding", "codec"), [("h264", "h264"), ("ffv1", "ffv1")])
def test_video_exports_open_with_pyav_with_every_frame(built, tmp_path, encoding, codec):
    result = export(built.url, "redact", str(tmp_path), encoding=encoding, audio=False)
    suffix = ".mp4" if encoding == "h264" else ".mkv"
    for video in built.videos.values():
        path = tmp_path / f"{safe_name(video.video_id)}{suffix}"
        assert str(path) in result.outputs
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == codec
        assert len(decoded(path)) == video.num_frames


# ------------------------------------------------------------------ stats


@pytest.mark.parametrize("name", ["stats.parquet", "stats.csv"])
def test_stats_areas_boxes_and_centroids_equal_the_masks(built, tmp_path, name):
    result = export(built.url, "stats", str(tmp_path / name))
    path = tmp_path / name
    table = pq.read_table(path) if name.endswith(".parquet") else pacsv.read_csv(path)
    rows = table.to_pylist()
    expected = {
        (v, k, t)
        for v, video in built.videos.items()
        for k, frames in video.present.items()
        for t in frames
    }
    assert {(r["video_id"], r["obj_id"], r["frame_idx"]) for r in rows} == expected
    for r in rows:
        mask = built.videos[r["video_id"]].masks[r["obj_id"]][r["frame_idx"]]
        assert r["area"] == mask.sum()
        assert [r["bbox_x"], r["bbox_y"], r["bbox_w"], r["bbox_h"]] == list(encode(mask).bbox)
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert r["centroid_x"] == pytest.approx(xs.mean())
            assert r["centroid_y"] == pytest.approx(ys.mean())
        else:
            # NaN; a CSV reader gives null for it (pyarrow's default null values)
            assert all(r[c] is None or np.isnan(r[c]) for c in ("centroid_x", "centroid_y"))
    stem = name.rsplit(".", 1)[0]
    for video_id in built.videos:
        plot = tmp_path / f"{stem}_plots" / f"{safe_name(video_id)}.png"
        assert str(plot) in result.outputs and png(plot).size[0] > 100


# ------------------------------------------------------------------ storage, selection


def test_exports_write_to_s3(built, s3):
    so = s3.storage_options
    export(built.url, "davis", s3.url("exp/davis"), videos=["clip-a"], storage_options=so)
    export(built.url, "ytvis", s3.url("exp/ann.json"), storage_options=so)
    export(built.url, "overlay", s3.url("exp/overlay"), videos=["clip-a"], storage_options=so)
    export(built.url, "stats", s3.url("exp/stats"), storage_options=so)
    fs = fsspec.filesystem("s3", **so)
    a = built.videos["clip-a"]
    pngs = fs.find(f"{s3.bucket}/exp/davis/clip-a")
    assert len(pngs) == a.num_frames
    first = np.asarray(Image.open(io.BytesIO(fs.cat_file(pngs[0]))))
    assert (first == np.asarray(Image.open(io.BytesIO(fs.cat_file(pngs[0]))))).all()
    assert (first > 0).sum() == union(a, 0).sum()
    doc = json.loads(fs.cat_file(f"{s3.bucket}/exp/ann.json"))
    assert len(doc["videos"]) == 2
    with av.open(io.BytesIO(fs.cat_file(f"{s3.bucket}/exp/overlay/clip-a.mp4"))) as c:
        assert sum(1 for _ in c.decode(video=0)) == a.num_frames
    stats = pq.read_table(io.BytesIO(fs.cat_file(f"{s3.bucket}/exp/stats/stats.parquet")))
    assert stats.num_rows == sum(len(p) for v in built.videos.values() for p in v.present.values())
    assert fs.exists(f"{s3.bucket}/exp/stats/plots/clip-a.png")
    assert not [p for p in fs.find(f"{s3.bucket}/exp") if ".tmp-" in p]


def test_bad_selections_formats_and_options_are_clear_errors(built, tmp_path):
    with pytest.raises(SamBatchError, match=r"'nope' is not in the dataset .*clip-a"):
        export(built.url, "davis", str(tmp_path), videos=["nope"])
    with pytest.raises(SamBatchError, match="'broken' failed"):
        export(built.url, "davis", str(tmp_path), videos=["broken"])
    with pytest.raises(SamBatchError, match=r"unknown export format 'gif'.*'davis'"):
        export(built.url, "gif", str(tmp_path))
    with pytest.raises(SamBatchError, match=r"no option 'radius'.*strength"):
        export(built.url, "redact", str(tmp_path), radius=3)
    with pytest.raises(SamBatchError, match="no alpha channel"):
        export(built.url, "cutout", str(tmp_path), alpha=True, encoding="h264")
    with pytest.raises(SamBatchError, match="not a colour"):
        export(built.url, "cutout", str(tmp_path), background="notacolour")
    webm = export(  # a video the format cannot hold fails that video, not the export
        built.url,
        "cutout",
        str(tmp_path / "webm"),
        videos=["clip-a"],
        alpha=True,
        encoding="vp9-alpha",
        audio=True,
    )
    assert not webm.ok and webm.videos == () and webm.failed[0][0] == "clip-a"
    assert "aac audio cannot go into a .webm file" in webm.failed[0][1]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "a refused export writes nothing"
    assert FORMATS["coco"] is FORMATS["ytvis"] and FORMATS["sav"] is FORMATS["per-object"]
    assert set(FORMATS) >= {
        "davis",
        "per-object",
        "coco",
        "ytvis",
        "overlay",
        "cutout",
        "redact",
        "stats",
    }
    assert "objects" in options_of("overlay")
