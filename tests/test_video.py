"""DICOM video: H.264 and HEVC copied into an MP4 without re-encoding, in display order; MPEG-2
re-encoded.  No DICOM video ships in the reachable packages: `video_stream` encodes a clip with
PyAV (a white bar moving 3 px a frame, so display order shows) and `video_dicom` wraps it as a
Video Endoscopic Image, the way PS3.5 8.2.5-8.2.8 describes (the whole stream in one fragment,
or split over several for the Fragmentable syntaxes).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import index_cards, run_cli

from _dicom_converter.inputs import plan_outputs
from _dicom_converter.kinds.video import GIF_MAX_VIDEO_FRAMES

H264 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1
H264_FRAGMENTABLE = "1.2.840.10008.1.2.4.102.1"
HEVC = "1.2.840.10008.1.2.4.107"
MPEG2 = "1.2.840.10008.1.2.4.100"
FRAMES, RATE = 24, 24


def video_stream(codec: str, container_format: str, frames: int = FRAMES) -> bytes:
    """A 96 x 64 raw elementary stream with B-frames: frame i has a white bar at x = 2 + 3i."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as out:
        stream = bar_track(out, codec)
        for i in range(frames):
            for packet in stream.encode(bar_frame(i)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def bar_track(out, codec: str):
    """A 96 x 64 video stream of `codec` in the container `out`, with B-frames, 12 frames a GOP."""
    stream = out.add_stream(codec, rate=RATE)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    if codec == "libx264":
        stream.options = {"bf": "2", "g": "12"}
    elif codec == "libx265":
        stream.options = {"x265-params": "bframes=2:log-level=none"}
    else:
        stream.codec_context.max_b_frames, stream.codec_context.gop_size = 2, 12
    return stream


def bar_frame(i: int):
    """Frame i: black with a 4 px white bar at x = 2 + 3i."""
    import av

    image = np.zeros((64, 96, 3), np.uint8)
    image[:, 2 + 3 * i:6 + 3 * i] = 255
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def video_dicom(path, data: bytes, syntax: str, fragments: int = 1, **attributes):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "ES", 64, 96, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_PARTIAL_420", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = encapsulate([data], fragments_per_frame=fragments)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def bar_positions(mp4) -> list[int]:
    import av

    with av.open(str(mp4)) as container:
        # the bar's left edge: the first bright pixel (the brightest one wanders with lossy coding's ringing)
        return [int(np.flatnonzero(frame.to_ndarray(format="gray")[32] > 128)[0])
                for frame in container.decode(video=0)]


def assert_in_order(positions: list[int]) -> None:
    """Frame i's bar starts at x = 2 + 3i (within a pixel of lossy coding): a frame shown out of
    order would be 3 px or more off."""
    assert len(positions) == FRAMES and all(abs(x - (2 + 3 * i)) <= 1 for i, x in enumerate(positions)), positions


def annex_b_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream (split at 00 00 01 start codes, trailing zeros dropped)."""
    import re

    return [unit.rstrip(b"\x00") for unit in re.split(b"\x00\x00\x01", data) if unit.rstrip(b"\x00")]


def mp4_units(mp4) -> list[bytes]:
    """The NAL units of an MP4's video packets (each a 4-byte length and the unit)."""
    import av

    units = []
    with av.open(str(mp4)) as container:
        for packet in container.demux(video=0):
            data, at = bytes(packet), 0
            while at + 4 <= len(data):
                length = int.from_bytes(data[at:at + 4], "big")
                units.append(data[at + 4:at + 4 + length].rstrip(b"\x00"))  # as annex_b_units (cabac_zero_words)
                at += 4 + length
    return units


@pytest.mark.parametrize("fragments", [1, 3])
def test_h264_is_copied_in_display_order(tmp_path, fragments):
    import av

    data = video_stream("libx264", "h264")
    syntax = H264 if fragments == 1 else H264_FRAGMENTABLE
    source = video_dicom(tmp_path / "scope.dcm", data, syntax, fragments, CineRate=RATE, FrameTime=1000 / RATE)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "h264 High 96x64, 24 frames, 1.00 s, copied into the MP4 without re-encoding, 24 fps (Frame Time" \
        in run.stdout
    mp4 = tmp_path / "out" / "scope.mp4"
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.frames == FRAMES
        assert float(stream.duration * stream.time_base) == pytest.approx(1.0, abs=0.05)
        pts = [p.pts for p in container.demux(stream) if p.size]
    assert pts != sorted(pts)  # B-frames: presentation order differs from decode order
    assert_in_order(bar_positions(mp4))  # each frame where it belongs
    slices = [u for u in annex_b_units(data) if u[0] & 0x1F in (1, 5)]  # coded slices, byte for byte
    assert [u for u in mp4_units(mp4) if u[0] & 0x1F in (1, 5)] == slices
    assert (tmp_path / "out" / "scope.gif").exists()
    from PIL import Image

    with Image.open(tmp_path / "out" / "scope.png") as poster:  # the first frame shown, 8-bit RGB
        assert poster.mode == "RGB" and abs(int(np.argmax(np.asarray(poster.convert("L"))[32])) - 2) <= 1


def test_hevc_is_copied_and_tagged_for_safari(tmp_path):
    import av

    source = video_dicom(tmp_path / "heart.dcm", video_stream("libx265", "hevc"), HEVC)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    mp4 = tmp_path / "out" / "heart.mp4"
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc" and stream.frames == FRAMES
        assert stream.codec_tag == "hvc1"
    assert b"hvc1" in mp4.read_bytes()  # the sample entry box
    assert_in_order(bar_positions(mp4))


def test_mpeg2_is_reencoded_to_h264(tmp_path):
    import av

    source = video_dicom(tmp_path / "old.dcm", video_stream("mpeg2video", "mpeg2video"), MPEG2)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "mpeg2video Main 96x64, 24 frames, 1.00 s, decoded and re-encoded to H.264" in run.stdout
    with av.open(str(tmp_path / "out" / "old.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    positions = bar_positions(tmp_path / "out" / "old.mp4")
    assert len(positions) == FRAMES and positions == sorted(positions) and positions[-1] > positions[0] + 60


def test_a_video_stream_that_is_garbage_fails_and_leaves_nothing(tmp_path):
    source = video_dicom(tmp_path / "junk.dcm", bytes(range(256)) * 40, H264)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 1
    line = next(line for line in (run.stdout + run.stderr).splitlines() if line.startswith("FAILED"))
    assert line.startswith("FAILED     junk.dcm: ") and "unexpected" not in line, line
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name not in ("index.html", "manifest.csv")]


def test_redact_withholds_an_endoscopy_video_without_a_flag(tmp_path):
    source = video_dicom(tmp_path / "scope.dcm", video_stream("libx264", "h264"), H264)
    run = run_cli(source, "-o", tmp_path / "out", "--redact")
    assert run.returncode == 0 and "image withheld" in run.stdout, run.stdout + run.stderr
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_the_stream_wins_when_number_of_frames_is_wrong(tmp_path):
    source = video_dicom(tmp_path / "old.dcm", video_stream("mpeg2video", "mpeg2video"), MPEG2, NumberOfFrames=5)
    run = run_cli(source, "-o", tmp_path / "out", "--no-mp4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "24 frames, 1.00 s, decoded" in run.stdout
    assert "warning: the file says 5 frames, its stream has 24; the stream's are used" in run.stdout
    from PIL import Image

    assert Image.open(tmp_path / "out" / "old.gif").n_frames == FRAMES


def clip_with_audio(container_format: str, video_codec: str = "libx264", audio_codec: str = "aac") -> bytes:
    """A 1 s clip in a container (MPEG-TS or MP4): the moving bar of `video_stream` and a 440 Hz
    mono tone at 48 kHz, made with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as out:
        video = bar_track(out, video_codec)
        audio = out.add_stream(audio_codec, rate=48000)
        audio.layout = "mono"
        for i in range(FRAMES):
            for packet in video.encode(bar_frame(i)):
                out.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
        size = audio.codec_context.frame_size or 1152
        for start in range(0, 48000 - size + 1, size):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + size], format=audio.format.name,
                                               layout="mono") if audio.format.name == "fltp" else \
                av.AudioFrame.from_ndarray((tone[None, start:start + size] * 32767).astype(np.int16),
                                           format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                out.mux(packet)
    return buffer.getvalue()


def packets_of(data_or_path, kind: str) -> list[tuple[int | None, bytes]]:
    import av

    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
    with av.open(source) as container:
        stream = getattr(container.streams, kind)[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]


def without_adts(packet: bytes) -> bytes:
    """An AAC frame without the ADTS header a transport stream carries (MP4 keeps the raw frame):
    7 bytes, 9 with a CRC (ISO/IEC 13818-7 6.2)."""
    if packet[:2] in (b"\xff\xf1", b"\xff\xf9", b"\xff\xf0", b"\xff\xf8"):
        return packet[7 if packet[1] & 1 else 9:]
    return packet


@pytest.mark.parametrize("container_format", ["mpegts", "mp4"])
def test_a_container_keeps_its_timestamps_and_its_audio(tmp_path, container_format):
    import av

    data = clip_with_audio(container_format)
    source = video_dicom(tmp_path / "scope.dcm", data, H264)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "24 frames, 1.00 s, copied into the MP4 without re-encoding, 24 fps (the stream's own)" in run.stdout
    mp4 = tmp_path / "out" / "scope.mp4"
    with av.open(str(mp4)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    # the audio packet for packet; the video packets at the container's own presentation times
    # (the MP4 starts its clock at the first one, a transport stream's starts later)
    assert [b for _, b in packets_of(mp4, "audio")] == [without_adts(b) for _, b in packets_of(data, "audio")]
    wanted, got = packets_of(data, "video"), packets_of(mp4, "video")
    if container_format == "mp4":
        assert [b for _, b in got] == [b for _, b in wanted]
    start_wanted, start_got = min(t for t, _ in wanted), min(t for t, _ in got)
    assert [round(t - start_got, 3) for t, _ in got] == [round(t - start_wanted, 3) for t, _ in wanted]
    assert_in_order(bar_positions(mp4))
    assert "aac 48000 Hz 1 channel(s)" in (tmp_path / "out" / "scope.txt").read_text()


def test_mpeg2_with_audio_is_reencoded_and_keeps_the_audio(tmp_path):
    import av

    data = clip_with_audio("mpegts", "mpeg2video", "mp2")
    source = video_dicom(tmp_path / "old.dcm", data, MPEG2)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    mp4 = tmp_path / "out" / "old.mp4"
    with av.open(str(mp4)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]  # MP2 reads back as MP3
    assert [b for _, b in packets_of(mp4, "audio")] == [b for _, b in packets_of(data, "audio")]
    audio_start = packets_of(mp4, "audio")[0][0]
    assert abs(audio_start - (packets_of(data, "audio")[0][0] - packets_of(data, "video")[0][0])) < 0.05
    positions = bar_positions(mp4)
    assert len(positions) == FRAMES and positions == sorted(positions)


def test_audio_is_left_out_under_redact(tmp_path):
    import av

    source = video_dicom(tmp_path / "scope.dcm", clip_with_audio("mp4"), H264, BurnedInAnnotation="NO",
                         Manufacturer="Agfa")  # a device deid's whitelist shows
    run = run_cli(source, "-o", tmp_path / "out", "--redact", "--redact-pixels", "keep")
    assert run.returncode == 0, run.stdout + run.stderr
    with av.open(str(tmp_path / "out" / "scope.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]
    assert "audio left out (--redact: speech can name people)" in (tmp_path / "out" / "scope.txt").read_text()


def test_hevc_also_gets_an_h264_mp4_unless_no_transcode(tmp_path):
    import av

    source = video_dicom(tmp_path / "heart.dcm", video_stream("libx265", "hevc"), HEVC)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "and re-encoded to H.264 in .h264.mp4" in run.stdout
    transcoded = tmp_path / "out" / "heart.h264.mp4"
    with av.open(str(transcoded)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert_in_order(bar_positions(transcoded))
    ((item,),) = [card["items"] for card in index_cards(tmp_path / "out" / "index.html")]
    assert item["video"] == "heart.h264.mp4" and ["MP4 video (HEVC)", "heart.mp4"] in item["links"]
    run = run_cli(source, "-o", tmp_path / "plain", "--no-transcode")
    assert run.returncode == 0 and not (tmp_path / "plain" / "heart.h264.mp4").exists()
    assert (tmp_path / "plain" / "heart.mp4").exists()


def test_the_line_warns_when_the_file_and_the_stream_disagree_on_the_rate(tmp_path):
    source = video_dicom(tmp_path / "scope.dcm", video_stream("libx264", "h264"), H264, FrameTime=40)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "25 fps (Frame Time" in run.stdout
    assert "warning: the file says 25 fps, its stream 24 fps; the file's rate is used" in run.stdout


def test_a_long_video_gets_no_gif_but_a_poster(tmp_path):

    frames = GIF_MAX_VIDEO_FRAMES + 1
    source = video_dicom(tmp_path / "long.dcm", video_stream("libx264", "h264", frames=frames), H264,
                         NumberOfFrames=frames)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (tmp_path / "out" / "long.gif").exists() and (tmp_path / "out" / "long.png").exists()
    assert f"no GIF: longer than {frames - 1} frames" in (tmp_path / "out" / "long.txt").read_text()


def test_an_input_named_like_a_transcode_does_not_take_its_name(tmp_path):

    inputs = [tmp_path / "a.dcm", tmp_path / "a.h264"]
    planned = plan_outputs(inputs, tmp_path, tmp_path / "out")
    stems = {path.name: stem.name for path, stem, _ in planned}
    assert stems == {"a.dcm": "a", "a.h264": "a.h264_2"}
    # the other way round (an upper-case name sorts first), and a median page: the same
    planned = plan_outputs([tmp_path / "A.h264", tmp_path / "a.dcm", tmp_path / "B_median",
                                            tmp_path / "b"], tmp_path, tmp_path / "out")
    stems = {path.name: stem.name for path, stem, _ in planned}
    assert stems == {"A.h264": "A.h264", "a.dcm": "a_2", "B_median": "B_median", "b": "b_2"}
    # and nothing takes the run's own index.html or manifest.csv
    planned = plan_outputs([tmp_path / "index.dcm", tmp_path / "manifest"], tmp_path, tmp_path / "out")
    assert [stem.name for _, stem, _ in planned] == ["index_2", "manifest_2"]


def test_redact_blanks_outside_the_ultrasound_regions_by_reencoding(tmp_path):
    """A copied stream cannot be blanked: under --redact with a region to keep, the frames are
    decoded, blanked and re-encoded, and no pixel outside the region reaches the MP4 or poster."""
    import av
    from PIL import Image
    from pydicom.dataset import Dataset

    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 47, 63
    source = video_dicom(tmp_path / "echo.dcm", video_stream("libx264", "h264"), H264, Modality="US",
                         SequenceOfUltrasoundRegions=[region])
    run = run_cli(source, "-o", tmp_path / "out", "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "decoded and re-encoded to H.264" in run.stdout and "outside the ultrasound regions" in run.stdout
    with av.open(str(tmp_path / "out" / "echo.mp4")) as container:
        frames = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    assert len(frames) == FRAMES
    assert all(frame[:, 50:].max() < 40 for frame in frames)  # the bar, once past x = 48, is gone
    assert max(frame[:, :46].max() for frame in frames) > 200  # and shown inside the region
    with Image.open(tmp_path / "out" / "echo.png") as poster:
        assert np.asarray(poster)[:, 50:].max() < 40
