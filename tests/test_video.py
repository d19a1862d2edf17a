"""Frame-exact streaming decode: every promise of ``sam_batch.media.video`` (probe) and
``sam_batch.media.decode`` on real files.

Every test video is encoded here with PyAV and draws its own frame index
(``media.pattern_frame``), so "frame i" is checked against the pixels, not against
the decoder under test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import (
    decode_pattern,
    drop_first_gop,
    packets_out_of_order,
    pattern_frame,
    write_audio_only,
    write_video,
    write_video_without_frames,
)

from sam_batch.errors import VideoError
from sam_batch.media.decode import read_frame, read_frames, rotate_upright
from sam_batch.media.video import VideoInfo, probe

N = 96  # frames in the main test video
GOP = 7  # keyframe every 7 frames: most range starts fall mid-GOP

# Irregular frame durations (ms), so neither fps nor a constant step gives the index.
_rng = random.Random(7)
VFR_MS = [0]
for _ in range(59):
    VFR_MS.append(VFR_MS[-1] + _rng.choice([5, 17, 33, 34, 40, 90, 120]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real videos, written once for the module."""
    d = tmp_path_factory.mktemp("videos")
    return {
        "mp4-bframes": write_video(d / "b.mp4", N, gop=GOP, bframes=3),
        "mkv-bframes": write_video(d / "b.mkv", 60, gop=8, bframes=2),
        # Open GOPs: B-frames shown before a keyframe reference the GOP before it.
        "mp4-opengop": write_video(d / "o.mp4", 60, gop=10, bframes=3, open_gop=True),
        "webm-vp9": write_video(d / "v.webm", 40, codec="libvpx-vp9", gop=10),
        # MPEG-TS has no index: its seeks land a keyframe late.
        "ts-bframes": write_video(d / "t.ts", 60, gop=6, bframes=2),
        "mp4-vfr": write_video(
            d / "vfr.mp4", len(VFR_MS), gop=6, bframes=2, pts=VFR_MS, time_base=Fraction(1, 1000)
        ),
    }


def assert_frames(frames: list[tuple[int, np.ndarray]], start: int, end: int, info: VideoInfo):
    """Exactly frames ``start .. end-1``, in order, each showing its own index upright."""
    assert [i for i, _ in frames] == list(range(start, end))
    for i, rgb in frames:
        assert rgb.shape == (info.height, info.width, 3)
        assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
        assert decode_pattern(rgb) == i


def test_pattern_survives_only_the_right_orientation():
    frame = pattern_frame(613, 64, 48)
    assert decode_pattern(frame) == 613
    for wrong in (frame[::-1], frame[:, ::-1], np.rot90(frame, 2)):
        with pytest.raises(ValueError):
            decode_pattern(np.ascontiguousarray(wrong))


def test_h264_file_really_has_bframes_and_probe_orders_by_presentation(videos):
    path = videos["mp4-bframes"]
    assert packets_out_of_order(path), "test video has no B-frames: the test would prove nothing"
    info = probe(str(path))
    assert info.num_frames == N
    assert info.codec == "h264"
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert list(info.pts) == sorted(set(info.pts))
    assert info.keyframes == tuple(range(0, N, GOP))
    assert info.fps == pytest.approx(25.0)
    assert info.time_s(50) == pytest.approx(2.0)


def test_whole_video_reads_every_frame_in_order(videos):
    info = probe(str(videos["mp4-bframes"]))
    assert_frames(list(read_frames(info, 0, N)), 0, N, info)


@pytest.mark.parametrize(
    "name", ["mp4-bframes", "mkv-bframes", "mp4-opengop", "webm-vp9", "ts-bframes", "mp4-vfr"]
)
def test_any_range_is_frame_exact(videos, name):
    info = probe(str(videos[name]))
    n = info.num_frames
    rng = random.Random(name)
    ranges = [(0, 1), (n - 1, n), (0, n)]
    for k in info.keyframes[1:]:  # at, just before and just after each keyframe
        ranges += [(k, k + 1), (k - 1, min(k + 2, n)), (min(k + 1, n - 1), min(k + 4, n))]
    for _ in range(40):
        start = rng.randrange(n)
        ranges.append((start, rng.randint(start + 1, min(n, start + 20))))
    for start, end in ranges:
        assert_frames(list(read_frames(info, start, end)), start, end, info)


def test_mpegts_seeks_that_land_late_fall_back_to_an_earlier_keyframe(videos):
    path = videos["ts-bframes"]
    info = probe(str(path))
    k = info.keyframes[3]
    with av.open(str(path)) as container:  # the trap itself, shown with plain PyAV
        stream = container.streams.video[0]
        container.seek(info.pts[k], stream=stream, backward=True, any_frame=False)
        landed = next(container.decode(stream)).pts
    assert landed > info.pts[k], "MPEG-TS seek no longer lands late: the test proves nothing"
    assert_frames(list(read_frames(info, k, k + 2)), k, k + 2, info)
    assert_frames(list(read_frames(info, 1, 3)), 1, 3, info)  # first GOP: from the beginning


@pytest.mark.parametrize("name", ["mkv-bframes", "webm-vp9"])
def test_matroska_reports_no_frame_count_but_probe_counts_packets(videos, name):
    with av.open(str(videos[name])) as container:
        assert container.streams.video[0].frames == 0
    assert probe(str(videos[name])).num_frames == {"mkv-bframes": 60, "webm-vp9": 40}[name]


def test_variable_frame_rate_indices_and_times_come_from_timestamps(videos):
    info = probe(str(videos["mp4-vfr"]))
    assert info.num_frames == len(VFR_MS)
    assert packets_out_of_order(videos["mp4-vfr"])
    times = [info.time_s(i) for i in range(info.num_frames)]
    assert times == pytest.approx([ms / 1000 for ms in VFR_MS], abs=1e-9)
    # A constant rate would misplace frames: the file really is variable.
    assert max(abs(t - i / info.fps) for i, t in enumerate(times)) > 0.5 / info.fps
    assert_frames(list(read_frames(info, 17, 41)), 17, 41, info)


def test_cut_open_gop_file_starts_at_its_first_decodable_frame(tmp_path):
    whole = write_video(tmp_path / "open.mkv", 40, gop=10, bframes=3, open_gop=True)
    cut = drop_first_gop(whole, tmp_path / "cut.mkv")
    with av.open(str(cut)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.pts is not None]
    assert min(p.pts for p in packets) < packets[0].pts, "no orphaned leading B-frame to drop"
    info = probe(str(cut))
    assert info.num_frames == 30 and info.keyframes[0] == 0
    frames = list(read_frames(info, 0, 30))
    assert [i for i, _ in frames] == list(range(30))
    assert [decode_pattern(rgb) for _, rgb in frames] == list(range(10, 40))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_comes_out_as_displayed(tmp_path, rotation):
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("writing a display matrix needs PyAV >= 18.1")
    path = write_video(tmp_path / "rot.mp4", 30, width=64, height=48, rotation=rotation, bframes=2)
    with av.open(str(path)) as container:
        stored = container.streams.video[0]
        stored_size = (stored.width, stored.height)
    assert stored_size == ((48, 64) if rotation % 180 else (64, 48))
    info = probe(str(path))
    assert (info.rotation, info.width, info.height) == (rotation, 64, 48)
    assert_frames(list(read_frames(info, 13, 20)), 13, 20, info)


def test_rotate_upright_turns_counter_clockwise():
    a = np.arange(6).reshape(2, 3, 1)  # [[0 1 2], [3 4 5]]
    assert rotate_upright(a, 0)[..., 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert rotate_upright(a, 90)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert rotate_upright(a, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_upright(a, 270)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_upright(a, 90).flags.c_contiguous


def test_s3_video_reads_the_same_frames_as_the_local_file(videos, s3):
    local = probe(str(videos["mp4-bframes"]))
    url = s3.upload(videos["mp4-bframes"], "videos/b.mp4")
    remote = probe(url, s3.storage_options)
    assert remote == replace(local, url=url)
    got = list(read_frames(remote, 30, 45, s3.storage_options))
    want = list(read_frames(local, 30, 45))
    assert_frames(got, 30, 45, remote)
    assert all(np.array_equal(g, w) for (_, g), (_, w) in zip(got, want, strict=True))


def test_missing_s3_object_does_not_exist(s3):
    with pytest.raises(VideoError, match="does not exist") as e:
        probe(s3.url("videos/missing.mp4"), s3.storage_options)
    assert (e.value.video, e.value.field) == (s3.url("videos/missing.mp4"), "url")


def test_url_forms_and_read_frame_agree(videos):
    path = videos["mkv-bframes"]
    info = probe(f"file://{path}")
    assert info.num_frames == 60
    assert decode_pattern(read_frame(info, 33)) == 33
    assert decode_pattern(read_frame(str(path), 59)) == 59  # a URL is probed first
    assert [i for i, _ in read_frames(str(path), 5, 9)] == [5, 6, 7, 8]


def test_info_round_trips_through_json(videos):
    info = probe(str(videos["mp4-vfr"]))
    again = VideoInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    assert isinstance(again.time_base, Fraction) and isinstance(again.pts, tuple)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_closing_the_iterator_early_closes_the_file(videos):
    info = probe(str(videos["mp4-bframes"]))
    before = _open_fds()
    frames = read_frames(info, 10, N)
    idx, _ = next(frames)
    assert idx == 10 and _open_fds() > before
    frames.close()
    assert _open_fds() == before
    list(read_frames(info, 10, 20))  # ran to the end
    assert _open_fds() == before


# --- errors: each names the video and the field, and says what to do -----------------


def test_missing_path_does_not_exist(tmp_path):
    url = str(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="does not exist") as e:
        probe(url)
    assert (e.value.video, e.value.field) == (url, "url")


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n" * 50])
def test_not_a_media_file(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="not a readable media file") as e:
        probe(str(path))
    assert e.value.field == "format"


def test_random_bytes_are_not_a_media_file(tmp_path):
    path = tmp_path / "noise.mkv"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())
    with pytest.raises(VideoError) as e:
        probe(str(path))
    assert e.value.field == "format"


def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(VideoError, match="no video stream") as e:
        probe(str(write_audio_only(tmp_path / "a.mkv")))
    assert e.value.field == "video stream"


def test_video_stream_without_frames(tmp_path):
    with pytest.raises(VideoError, match="no frames") as e:
        probe(str(write_video_without_frames(tmp_path / "z.mkv")))
    assert e.value.field == "frames"


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_mp4_cut_before_its_index_is_not_readable(tmp_path):
    path = write_video(tmp_path / "cut.mp4", 60, bframes=2)  # index (moov) at the end
    _cut(path, 0.8)
    with pytest.raises(VideoError, match=r"no video stream .* truncated") as e:
        probe(str(path))
    assert e.value.field == "video stream"


def test_truncated_file_is_refused_by_probe(tmp_path):
    path = write_video(tmp_path / "cut.mp4", 60, bframes=2, faststart=True)  # index first
    _cut(path, 0.7)
    with pytest.raises(VideoError, match="truncated") as e:
        probe(str(path))
    assert e.value.field == "frames"


def test_file_truncated_after_probing_raises_instead_of_yielding_fewer_frames(tmp_path):
    path = write_video(tmp_path / "cut.mp4", 60, gop=10, bframes=2, faststart=True)
    info = probe(str(path))
    _cut(path, 0.6)
    got = []
    with pytest.raises(VideoError, match="frame") as e:
        for idx, rgb in read_frames(info, 0, 60):
            got.append((idx, rgb))
    assert e.value.field == "frames"
    assert 0 < len(got) < 60
    assert_frames(got, 0, len(got), info)  # what came before the error was right
    with pytest.raises(VideoError):
        list(read_frames(info, 50, 60))
    # A range inside what remains still reads: decoding stops after end - 1.
    assert_frames(list(read_frames(info, 0, 5)), 0, 5, info)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (-1, 5, "start"),
        (N, N + 1, "start"),
        (5, 5, "end"),
        (6, 5, "end"),
        (0, N + 1, "end"),
        (1.5, 3, "start"),
        (0, "3", "end"),
    ],
)
def test_bad_range_is_refused_before_opening_the_file(videos, tmp_path, start, end, field):
    info = probe(str(videos["mp4-bframes"]))
    gone = tmp_path / "moved.mp4"
    shutil.copy(videos["mp4-bframes"], gone)
    info = replace(info, url=str(gone))
    gone.unlink()  # a range error must come first, from the call itself
    with pytest.raises(VideoError) as e:
        read_frames(info, start, end)
    assert (e.value.video, e.value.field) == (str(gone), field)


@pytest.mark.parametrize("frame_idx", [-1, N])
def test_frame_index_out_of_range(videos, frame_idx):
    info = probe(str(videos["mp4-bframes"]))
    with pytest.raises(VideoError, match=f"outside the video's frames \\[0, {N - 1}\\]") as e:
        read_frame(info, frame_idx)
    assert e.value.field == "frame_idx"
    with pytest.raises(VideoError):
        info.time_s(frame_idx)


def test_missing_file_is_reported_when_reading(videos, tmp_path):
    info = replace(probe(str(videos["mp4-bframes"])), url=str(tmp_path / "deleted.mp4"))
    with pytest.raises(VideoError, match="does not exist"):
        list(read_frames(info, 0, 3))
