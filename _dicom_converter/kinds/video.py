"""DICOM video (MPEG-2, H.264, HEVC: PS3.5 8.2.5-8.2.8): the stream itself in an MP4,
without re-encoding, and a GIF preview.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import warnings
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import CorruptFile, first_line
from _dicom_converter.gif import gif_writer
from _dicom_converter.job import in_own_thread
from _dicom_converter.reading import number_of_frames, transfer_syntax_of
from _dicom_converter.redaction import is_deferred
from _dicom_converter.sop import VIDEO_SYNTAXES
from _dicom_converter.timing import frame_timing
from _dicom_converter.writers import mp4_writer, write_png

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.job import Conversion


VIDEO_CODECS = {"mpeg2": "mpeg2video", "h264": "h264", "hevc": "hevc"}  # FFmpeg's decoder of each


@contextlib.contextmanager
def video_bit_stream(source: Path, ds: Dataset):
    """The video bit stream of `source` (its fragments joined, the Basic Offset Table left
    out) in an anonymous temporary file, which the demuxer can seek (an MP4 inside DICOM keeps
    its index at the end); the stream is copied fragment by fragment, never held whole."""
    import io
    import tempfile

    from pydicom.encaps import generate_fragments

    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    with contextlib.ExitStack() as stack:
        if is_deferred(raw) and raw.value_tell is not None:
            buffer = stack.enter_context(open(source, "rb"))
            buffer.seek(raw.value_tell)
        else:
            buffer = io.BytesIO(bytes(ds.PixelData))
        spool = stack.enter_context(tempfile.TemporaryFile())
        try:
            for number, fragment in enumerate(generate_fragments(buffer)):
                if number:  # the first item is the Basic Offset Table
                    spool.write(fragment)
        except (ValueError, EOFError, OSError) as exc:
            raise CorruptFile(f"cannot read the video's fragments: {first_line(exc)}") from None
        if not spool.tell():
            raise CorruptFile("the video bit stream is empty")
        spool.seek(0)
        yield spool


# Video longer than this gets no GIF: measured on 90 frames of full-motion 1280 x 720 video
# (FFmpeg's mandelbrot source), each GIF frame fitted within 512 px costs ~130 ms and ~90 KiB,
# so 300 frames (10 s at 30 fps) are ~40 s and ~27 MB; the MP4 and the poster stay.
GIF_MAX_VIDEO_FRAMES = 300

RAW_VIDEO_FORMATS = ("h264", "hevc", "mpegvideo")  # FFmpeg's demuxers of bare streams: no timestamps
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus", "alac", "flac"})  # what MP4 holds
TRANSCODED_SUFFIX = ".h264.mp4"  # from HEVC, for the browsers that do not play it (see --no-transcode)


@dataclasses.dataclass
class VideoPlan:
    """What becomes of one DICOM video stream (see `video_plan`)."""

    family: str  # "h264", "hevc", "mpeg2": VIDEO_SYNTAXES
    raw: bool  # a bare elementary stream, not a transport stream or MP4 with timestamps
    rate: Fraction
    rate_source: str
    audio: list[int]  # the indices of the audio streams kept (a closed container's streams forget theirs)
    copy: bool  # the coded stream goes into STEM.mp4 as it is (else decoded and re-encoded)
    transcode: bool  # HEVC copied, and also re-encoded to H.264 in STEM.h264.mp4
    gif: bool


def video_plan(container, video, job: Conversion, family: str) -> VideoPlan:
    """Decide, from the stream and the options, which outputs a video gets and how.

    H.264 and HEVC are copied (PS3.5 8.2.6-8.2.8 keep the coded stream whole), unless
    --redact has rectangles to blank: those frames must be decoded, blanked and re-encoded,
    as MPEG-2 always is.  Audio is kept when MP4 can hold its codec, and never under --redact
    (speech names people)."""
    options, ds = job.options, job.ds
    raw = container.format.name.split(",")[0] in RAW_VIDEO_FORMATS
    rate, rate_source = video_rate(ds, video, raw, options.fps)
    audio, kept = [], []
    for stream in container.streams.audio:
        name = stream.codec_context.name
        if options.redact_salt:
            job.rendering["Audio"] = "audio left out (--redact: speech can name people)"
        elif name in MP4_AUDIO_CODECS:
            audio.append(stream)
            kept.append(stream.index)
        else:
            warnings.warn(f"its {name} audio is left out: an MP4 cannot hold it")
    if audio:
        job.rendering["Audio"] = ", ".join(f"{s.codec_context.name} {s.rate} Hz {s.codec_context.channels} channel(s)"
                                           for s in audio)
    blanking = job.plan is not None and job.plan.action == "blank"
    copy = family != "mpeg2" and not blanking
    declared = number_of_frames(ds) if ds.get("NumberOfFrames") else int(video.frames or 0)
    gif = options.write_gif and declared <= GIF_MAX_VIDEO_FRAMES  # 0: not said; the GIF stops at the limit
    if options.write_gif and not gif:
        job.rendering["Gif"] = f"no GIF: longer than {GIF_MAX_VIDEO_FRAMES} frames (the MP4 is the video)"
    return VideoPlan(family, raw, rate, rate_source, kept, copy,
                     copy and family == "hevc" and options.transcode and options.write_mp4, gif)


def video_rate(ds: Dataset, video, raw: bool, fps: Fraction | None) -> tuple[Fraction, str]:
    """The frame rate: --fps, else for a bare stream the DICOM timing (Frame Time, Cine Rate…,
    as for any cine), else the stream's own (H.264/HEVC VUI, the MPEG-2 sequence header).
    PyAV's `average_rate` of a bare stream is the demuxer's default 25, so the decoder's
    `framerate` is asked.  A transport stream or MP4 keeps its own timestamps (PS3.5 8.2.8):
    its rate is only what the poster, GIF and transcode use.  When the file and the stream
    disagree, the line says so."""
    own = video.codec_context.framerate if raw else video.average_rate
    own = Fraction(own) if own else None
    timing = frame_timing(ds, max(1, number_of_frames(ds)), fps)
    if timing.source != "default" and (raw or fps):
        if own and fps is None and abs(float(timing.rate) - float(own)) > 0.01 * float(own):
            warnings.warn(f"the file says {float(timing.rate):.4g} fps, its stream {float(own):.4g} fps; "
                          f"the file's rate is used")
        return timing.rate, timing.source
    if own:
        if timing.source != "default" and abs(float(timing.rate) - float(own)) > 0.01 * float(own):
            warnings.warn(f"the file says {float(timing.rate):.4g} fps, its stream's timestamps "
                          f"{float(own):.4g} fps; the stream's are kept")
        return own, "the stream's own"
    return timing.rate, timing.source


def write_video(job: Conversion, kind: str) -> None:
    """A DICOM video: H.264 or HEVC copied into ``STEM.mp4`` as it is (HEVC tagged hvc1 for
    Safari, and also re-encoded to ``STEM.h264.mp4`` for the other browsers), MPEG-2 decoded and
    re-encoded to H.264; audio kept; a poster ``STEM.png`` and, for short videos, a GIF."""
    import tempfile

    import av
    from pydicom.uid import UID

    ds, options = job.ds, job.options
    family = VIDEO_SYNTAXES[transfer_syntax_of(ds)]
    with video_bit_stream(job.source, ds) as stream, contextlib.ExitStack() as scratch:
        try:
            with av.open(stream, "r") as container:
                video = _video_stream_of(container)
                codec = video.codec_context
                if codec.name != VIDEO_CODECS[family]:
                    raise CorruptFile(f"its video stream is {codec.name}, not the {VIDEO_CODECS[family]} its "
                                      f"transfer syntax says")
                video.thread_type = "AUTO"  # frame threads: the decode pass runs on every core
                plan = video_plan(container, video, job, family)
                described = f"{codec.name} {codec.profile or ''}".strip() + f" {codec.width}x{codec.height}"
                reencode_to = None
                if not plan.copy and options.write_mp4:  # with audio, the H.264 is muxed with it afterwards
                    reencode_to = job.output(".mp4") if not plan.audio else \
                        Path(scratch.enter_context(tempfile.TemporaryDirectory())) / "video.mp4"
                decoded = decode_pass(container, video, job, plan, reencode_to)
            stream.seek(0)
            if plan.copy and options.write_mp4:
                copy_into_mp4(stream, job.output(".mp4"), plan, decoded.positions)
            elif reencode_to is not None and plan.audio:
                with_audio(reencode_to, stream, plan, job.output(".mp4"))
        except av.error.FFmpegError as exc:
            syntax = transfer_syntax_of(ds)
            raise CorruptFile(f"cannot read the {UID(syntax).name} ({syntax}) video stream: {first_line(exc)}") from None
    declared = int(ds.get("NumberOfFrames") or decoded.count)
    if declared != decoded.count:
        warnings.warn(f"the file says {declared} frames, its stream has {decoded.count}; the stream's are used")
    how = ("copied into the MP4 without re-encoding" if plan.copy else "decoded and re-encoded to H.264") \
        if options.write_mp4 else "decoded"
    if plan.transcode:
        how += f", and re-encoded to H.264 in {TRANSCODED_SUFFIX}"
    seconds = decoded.seconds if decoded.seconds is not None else decoded.count / float(plan.rate)
    job.rendering["Display"] = f"{described}, {decoded.count} frames, {seconds:.2f} s, {how}"
    job.rendering["FrameRate"] = f"{float(plan.rate):.4g} fps ({plan.rate_source})"
    job.rendering["Output"] = ", ".join(
        name for name, wanted in (("MP4", options.write_mp4), ("H.264 MP4", plan.transcode),
                                  ("GIF", plan.gif), ("poster PNG 8-bit", options.write_png)) if wanted) or "none"


def _video_stream_of(container):
    if not container.streams.video:
        raise CorruptFile("the video bit stream holds no video")
    return container.streams.video[0]


@dataclasses.dataclass
class DecodedVideo:
    """What the decode pass learnt of the stream."""

    count: int = 0  # frames decoded (or, when only the poster was decoded, packets counted)
    shown: list[int] = dataclasses.field(default_factory=list)  # bare streams: packet numbers in display order
    first_pts: int | None = None
    end_pts: int | None = None
    seconds: float | None = None  # the stream's own duration, when its timestamps give one

    @property
    def positions(self) -> dict[int, int]:
        """Packet number -> display position, for a bare stream."""
        return {packet: index for index, packet in enumerate(self.shown)}


def decode_pass(container, video, job: Conversion, plan: VideoPlan, reencode_to: Path | None) -> DecodedVideo:
    """One pass over the stream, each frame decoded once and shown in display order to the
    poster, the GIF and the H.264 encoders (`reencode_to`, and the transcode of HEVC)."""
    options = job.options
    decoded = DecodedVideo()
    with contextlib.ExitStack() as stack:
        writers = []
        if reencode_to is not None:
            writers.append(stack.enter_context(in_own_thread(mp4_writer(reencode_to, plan.rate, options.crf))))
        if plan.transcode:
            writers.append(stack.enter_context(in_own_thread(
                mp4_writer(job.output(TRANSCODED_SUFFIX), plan.rate, options.crf))))
        if plan.gif:
            writers.append(stack.enter_context(
                gif_writer(job.output(".gif"), itertools.repeat(1000 / float(plan.rate)), options.gif_max_size)))
        everything = bool(writers) or plan.raw
        for number, frame in enumerate(job.blanked(_display_frames(container, video, plan, decoded, everything))):
            if number == 0 and options.write_png:
                write_png(frame, job.output(".png"))
            if number == 0:
                job.thumbnail(frame)
            if plan.gif and number == GIF_MAX_VIDEO_FRAMES:  # NumberOfFrames said short, the stream is not
                writers.pop()
                job.rendering["Gif"] = f"the GIF holds the first {GIF_MAX_VIDEO_FRAMES} frames only"
            for write in writers:
                write(frame)
    if not decoded.count:
        raise CorruptFile("no frame of the video could be decoded")
    if decoded.first_pts is not None and not plan.raw:
        decoded.seconds = float((decoded.end_pts - decoded.first_pts) * video.time_base)
    return decoded


def _display_frames(container, video, plan: VideoPlan, decoded: DecodedVideo, everything: bool
                    ) -> Iterator[np.ndarray]:
    """The frames in display order (RGB), noting what `decoded` keeps of the stream.

    A bare stream's packets have no timestamps, and numbering them in decode order would
    show B-frame streams out of order: each packet is numbered as it is fed, and the decoder
    hands the numbers back in display order.  When nothing needs more than the poster (an
    MP4 or transport stream copied, no GIF), only the first frame is decoded and the rest of
    the packets counted."""
    packets = 0
    for number, packet in enumerate(p for p in container.demux(video) if p.size):
        packets += 1
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            decoded.first_pts = packet.pts if decoded.first_pts is None else min(decoded.first_pts, packet.pts)
            decoded.end_pts = end if decoded.end_pts is None else max(decoded.end_pts, end)
        if plan.raw:
            packet.pts = packet.dts = number
        if decoded.count and not everything:
            continue
        for frame in video.codec_context.decode(packet):
            decoded.count += 1
            decoded.shown.append(frame.pts)
            yield frame.to_ndarray(format="rgb24")
    if everything or not decoded.count:
        for frame in video.codec_context.decode(None):
            decoded.count += 1
            decoded.shown.append(frame.pts)
            yield frame.to_ndarray(format="rgb24")
    if not everything and decoded.count:
        decoded.count = packets


def copy_into_mp4(stream, path: Path, plan: VideoPlan, positions: dict[int, int]) -> None:
    """The coded video (and the audio kept) into an MP4, packet for packet.

    A transport stream or MP4 keeps its own timestamps, moved together so that the first
    stream starts at zero (a transport stream's clock starts anywhere, and a player would
    show its first frame late by that much).  A bare stream gets each packet's
    display position as its presentation time and its decode number, less the decoder's
    reordering delay, as its decode time; HEVC is tagged hvc1, which Safari asks for."""
    import av

    with av.open(stream, "r") as source, av.open(str(path), "w", format="mp4",
                                                   options={"movflags": "+faststart"}) as mp4:
        video = _video_stream_of(source)
        audio = [source.streams[index] for index in plan.audio]
        copied = {video.index: mp4.add_stream_from_template(video)}
        copied.update({s.index: mp4.add_stream_from_template(s) for s in audio})
        if video.codec_context.name == "hevc":
            copied[video.index].codec_tag = "hvc1"
        tick = Fraction(1) / plan.rate
        delay = max((number - position for number, position in positions.items()), default=0)
        starts = [s.start_time * s.time_base for s in (video, *audio) if s.start_time is not None]
        start = min(starts) if starts and not plan.raw else 0
        number = 0
        for packet in source.demux(video, *audio):
            if not packet.size:
                continue
            if plan.raw and packet.stream.index == video.index:
                packet.time_base = tick
                packet.pts, packet.dts, packet.duration = positions.get(number, number), number - delay, 1
                number += 1
            elif start and packet.pts is not None:
                moved = round(start / packet.time_base)
                packet.pts -= moved
                packet.dts = packet.dts - moved if packet.dts is not None else None
            packet.stream = copied[packet.stream.index]
            mp4.mux(packet)


def with_audio(video_mp4: Path, stream, plan: VideoPlan, path: Path) -> None:
    """The re-encoded H.264 `video_mp4` and the kept audio of the input `stream`, muxed into
    one MP4 in time order (the audio moved by the input video's start, which the re-encode
    starts at zero)."""
    import heapq

    import av

    with av.open(str(video_mp4), "r") as encoded, av.open(stream, "r") as source, \
            av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as mp4:
        video = encoded.streams.video[0]
        audio = [source.streams[index] for index in plan.audio]
        start = source.streams.video[0].start_time
        offset = float(start * source.streams.video[0].time_base) if start is not None else 0.0
        out_video = mp4.add_stream_from_template(video)
        out_audio = {s.index: mp4.add_stream_from_template(s) for s in audio}

        def timed(packets, order: int):
            for packet in packets:
                if packet.size and packet.pts is not None:
                    if order:  # audio: moved to the re-encoded video's clock
                        moved = round(offset / packet.time_base)
                        packet.pts -= moved
                        packet.dts = packet.dts - moved if packet.dts is not None else None
                    when = packet.dts if packet.dts is not None else packet.pts
                    yield float(when * packet.time_base), order, packet

        for _, order, packet in heapq.merge(timed(encoded.demux(video), 0), timed(source.demux(*audio), 1),
                                            key=lambda item: item[0]):
            packet.stream = out_audio[packet.stream.index] if order else out_video
            mp4.mux(packet)
