"""libjpeg-turbo as a pydicom decoder plugin for JPEG Baseline, Extended and Lossless.

A plugin module as pydicom's decoder registry (`pydicom.pixels.decoders`) expects one:
`is_available(uid)`, `DECODER_DEPENDENCIES` and `decode_frame(src, runner)`.
`use_libjpeg_turbo` registers it ahead of pydicom's own plugins, which stay behind it:
pydicom falls back to them for any frame this one declines or fails on.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

# pydicom decodes the JPEG syntaxes with pylibjpeg-libjpeg (or GDCM).  For JPEG
# Lossless both took 54-57 ms per 1024^2 12-bit frame here, 5.4 s of a 100-frame
# angiography run converted in 9 s; libjpeg-turbo 3, as bundled by imagecodecs,
# decodes the same frames bit for bit in 9.8 ms.  For JPEG Baseline/Extended it
# takes 1.1 ms per 640x480 ultrasound frame where pylibjpeg takes 35 ms, and its
# output equals DCMTK's (dcmdjpeg) on every such file in pydicom's test data, where
# pylibjpeg's differs by up to 5 levels (chroma upsampling, IDCT rounding).  It
# also reads NEMA's NM1_JPLY (pydicom's JPEG-lossy.dcm), which pylibjpeg refuses.
# Like pydicom's plugins, it hands back the colour space the JPEG stream holds
# (YCbCr for YBR_FULL/YBR_FULL_422, else RGB) and leaves the conversion to RGB to
# pydicom (PS3.3 C.7.6.3.1.2).
PLUGIN_LABEL = "libjpeg-turbo"
JPEG_LOSSLESS_SYNTAXES = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")  # Process 14; its SV1 form
TURBO_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", *JPEG_LOSSLESS_SYNTAXES)  # + Baseline, Extended
JPEG_STREAM_COLOUR = {"YBR_FULL": "YCBCR", "YBR_FULL_422": "YCBCR", "RGB": "RGB"}  # libjpeg's names

# What pydicom reports as missing when `is_available` says no.
DECODER_DEPENDENCIES = dict.fromkeys(TURBO_SYNTAXES, ("imagecodecs",))


def is_available(uid: str) -> bool:
    """Whether this plugin decodes `uid` here: one of its syntaxes, and imagecodecs built with libjpeg-turbo."""
    if uid not in TURBO_SYNTAXES:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


@functools.cache  # once per process: pydicom refuses a second plugin of the same name
def use_libjpeg_turbo() -> None:
    """Put this plugin first among pydicom's JPEG decoders."""
    from pydicom.pixels.decoders import (
        JPEGBaseline8BitDecoder,
        JPEGExtended12BitDecoder,
        JPEGLosslessDecoder,
        JPEGLosslessSV1Decoder,
    )

    for decoder in (JPEGBaseline8BitDecoder, JPEGExtended12BitDecoder, JPEGLosslessDecoder, JPEGLosslessSV1Decoder):
        # plugins are tried in the order they were added: take pydicom's own
        # (as pydicom registers them) out, add this one, then put theirs back
        theirs = []
        for name in ("gdcm", "pylibjpeg", "pillow"):
            with contextlib.suppress(ValueError):  # not registered for this syntax
                decoder.remove_plugin(name)
                theirs.append(name)
        decoder.add_plugin(PLUGIN_LABEL, (__name__, "decode_frame"))
        for name in theirs:
            decoder.add_plugin(name, (f"pydicom.pixels.decoders.{name}", "_decode_frame"))


def decode_frame(src: bytes, runner) -> bytes:
    """One JPEG frame through libjpeg-turbo, as pydicom's decoders return it.

    Colour comes back in the stream's own colour space, samples interleaved.
    A frame whose data stops before the end-of-image marker is decoded as far
    as it goes (as DCMTK and pylibjpeg do) with a warning, instead of silently.
    """
    import imagecodecs

    samples = runner.samples_per_pixel
    colour = JPEG_STREAM_COLOUR.get(str(runner.photometric_interpretation)) if samples == 3 else None
    if samples != 1 and colour is None:
        raise ValueError(f"{samples} samples as {runner.photometric_interpretation} are left to pydicom's decoders")
    frame = imagecodecs.jpeg8_decode(src, colorspace=colour, outcolorspace=colour)
    shape = (runner.rows, runner.columns) + ((samples,) if samples > 1 else ())
    if frame.shape != shape or 8 * frame.dtype.itemsize > runner.bits_allocated:
        raise ValueError(f"decoded a {frame.shape} {frame.dtype} frame, not the "
                         f"{shape} {runner.bits_allocated}-bit one declared")
    tail = bytes(src[-256:]).rstrip(b"\x00\xff")  # the end-of-image marker, then any padding
    if tail and not tail.endswith(b"\xff\xd9"):
        warnings.warn("a JPEG frame ends before its end-of-image marker (cut short?): "
                      "shown as far as it decodes", stacklevel=2)
    if samples > 1:
        runner.set_option("planar_configuration", 0)  # interleaved, whatever the file says
    return frame.astype(f"<u{runner.bits_allocated // 8}", copy=False).tobytes()
