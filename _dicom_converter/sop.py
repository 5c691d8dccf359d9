"""SOP classes and transfer syntaxes that decide what kind of object a file is
(PS3.4 B.5, PS3.5 Annex A), shared by the classification and the kinds that handle them.
"""

from __future__ import annotations

CINE_POINTERS = ("FrameTime", "FrameTimeVector")  # PS3.3 C.7.6.5 Cine Module
VOLUME_POINTERS = ("GridFrameOffsetVector", "SliceVector")  # RT Dose C.8.8.3.2, NM C.8.4.8
SEGMENTATION_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
WHOLE_SLIDE_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


RT_DOSE_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"


# PS3.3 A.45.1 (PDF), A.45.2 (CDA), A.85.1 (STL), A.85.2 (OBJ), A.85.3 (MTL): the file each
# becomes.  Never an extension a browser would run (.html, .svg, .js), whatever the file says.
DOCUMENT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.104.1": (".pdf", "PDF"), "1.2.840.10008.5.1.4.1.1.104.2": (".xml", "CDA"),
    "1.2.840.10008.5.1.4.1.1.104.3": (".stl", "STL"), "1.2.840.10008.5.1.4.1.1.104.4": (".obj", "OBJ"),
    "1.2.840.10008.5.1.4.1.1.104.5": (".mtl", "MTL"),
}


SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # PS3.4 B.5: every SR Storage class (Basic Text, Enhanced, …)


# PS3.5 8.2.5-8.2.8: the transfer syntaxes that carry a whole video bit stream (the
# Fragmentable ones split it over fragments).  H.264 and HEVC are copied into an MP4
# without re-encoding; browsers do not play MPEG-2, so it is decoded and re-encoded.
VIDEO_SYNTAXES = {
    "1.2.840.10008.1.2.4.100": "mpeg2", "1.2.840.10008.1.2.4.100.1": "mpeg2",
    "1.2.840.10008.1.2.4.101": "mpeg2", "1.2.840.10008.1.2.4.101.1": "mpeg2",
    **{f"1.2.840.10008.1.2.4.{n}{part}": "h264" for n in range(102, 107) for part in ("", ".1")},
    "1.2.840.10008.1.2.4.107": "hevc", "1.2.840.10008.1.2.4.108": "hevc",
}
