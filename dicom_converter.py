#!/usr/bin/env python3
"""Convert everything on a DICOM disc or folder into files anyone can open.

Single frames become PNG (16-bit grey by default), cines an animated GIF and an H.264 MP4,
volumes, segmentations and doses a contact sheet and a clip, DICOM video an MP4 of its own
stream, encapsulated documents the document itself, structured reports an HTML page,
waveforms an ECG page, CSV and WAV; every DICOM file gets a UTF-8 ``.txt`` beside its outputs
with a summary and the full element dump, and the run an ``index.html`` and a ``manifest.csv``.

Pixels follow the DICOM display pipelines (PS3.3 C.11, PS3.4 Annex N):

    stored values -> Modality LUT -> VOI LUT / window -> Presentation -> output bits

This file is the entry point (``python3 dicom_converter.py``, ``python3 -m dicom_converter``
and the ``dicom-converter`` script); the code is the `_dicom_converter` package beside it,
whose docstring maps its modules.
"""

import sys

from _dicom_converter.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(run())
