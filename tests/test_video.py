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

from conftest import run_cli

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
        stream = out.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        if codec == "libx264":
            stream.options = {"bf": "2", "g": "12"}
        elif codec == "libx265":
            stream.options = {"x265-params": "bframes=2:log-level=none"}
        else:
            stream.codec_context.max_b_frames, stream.codec_context.gop_size = 2, 12
        for i in range(frames):
            image = np.zeros((64, 96, 3), np.uint8)
            image[:, 2 + 3 * i:6 + 3 * i] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


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
        return [int(np.argmax(frame.to_ndarray(format="gray")[32])) for frame in container.decode(video=0)]


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
    assert "h264 High 96x64, 24 frames, copied into the MP4 without re-encoding, 24 fps (Frame Time" in run.stdout
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
    assert "mpeg2video Main 96x64, 24 frames, decoded and re-encoded to H.264" in run.stdout
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
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name != "index.html"]


def test_redact_withholds_an_endoscopy_video_without_a_flag(tmp_path):
    source = video_dicom(tmp_path / "scope.dcm", video_stream("libx264", "h264"), H264)
    run = run_cli(source, "-o", tmp_path / "out", "--redact")
    assert run.returncode == 0 and "image withheld" in run.stdout, run.stdout + run.stderr
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_the_stream_wins_when_number_of_frames_is_wrong(tmp_path):
    source = video_dicom(tmp_path / "old.dcm", video_stream("mpeg2video", "mpeg2video"), MPEG2, NumberOfFrames=5)
    run = run_cli(source, "-o", tmp_path / "out", "--no-mp4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "24 frames, decoded (the file says 5 frames)" in run.stdout
    from PIL import Image

    assert Image.open(tmp_path / "out" / "old.gif").n_frames == FRAMES
