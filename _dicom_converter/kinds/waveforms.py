"""Waveforms (PS3.3 C.10.9): ECGs on ECG paper, other waveforms as strips, CSV of every
channel, and audio as WAV.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from _dicom_converter.base import CorruptFile
from _dicom_converter.reading import is_multi
from _dicom_converter.values import person_name_listed, string_value
from _dicom_converter.writers import write_png

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.job import Conversion


ECG_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
}
AUDIO_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.4.1": "Basic Voice Audio",
    "1.2.840.10008.5.1.4.1.1.9.4.2": "General Audio",
}
# The other waveform classes (PS3.4 B.5), named in the header; any of them draws as strips.
WAVEFORM_CLASSES = {
    **ECG_CLASSES, **AUDIO_CLASSES,
    "1.2.840.10008.5.1.4.1.1.9.1.4": "General 32-bit ECG",
    "1.2.840.10008.5.1.4.1.1.9.2.1": "Hemodynamic Waveform",
    "1.2.840.10008.5.1.4.1.1.9.3.1": "Basic Cardiac Electrophysiology",
    "1.2.840.10008.5.1.4.1.1.9.5.1": "Arterial Pulse Waveform",
    "1.2.840.10008.5.1.4.1.1.9.6.1": "Respiratory Waveform",
    "1.2.840.10008.5.1.4.1.1.9.6.2": "Multi-channel Respiratory Waveform",
    "1.2.840.10008.5.1.4.1.1.9.7.1": "Routine Scalp EEG",
    "1.2.840.10008.5.1.4.1.1.9.7.2": "Electromyogram",
    "1.2.840.10008.5.1.4.1.1.9.7.3": "Electrooculogram",
    "1.2.840.10008.5.1.4.1.1.9.7.4": "Sleep EEG",
    "1.2.840.10008.5.1.4.1.1.9.8.1": "Body Position Waveform",
}

# The leads of a standard 12-lead ECG, in the order of the 3 x 4 page (read down each column).
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# MDC (ISO/IEEE 11073-10101, DICOM CID 3001: "2:1" Lead I ...) and SCP-ECG (EN 1064,
# "5.6.3-9-1" ...) number the leads alike, so one table of lead numbers serves both.
LEAD_NUMBERS = {1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
                3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6"}
LEAD_CODE_PREFIXES = ("2:", "5.6.3-9-", "MDC_ECG_LEAD_")

# UCUM code values (Channel Sensitivity Units, Measurement Units) as people write them.
UNIT_NAMES = {"uV": "µV", "mm[Hg]": "mmHg", "cm[H2O]": "cmH2O", "Cel": "°C", "deg": "°",
              "{beats}/min": "/min", "/min": "/min", "1": ""}
MILLIVOLTS_PER = {"µV": 1e-3, "mV": 1.0, "V": 1e3}  # ECG leads are drawn in mV

# ECG paper: the conventions of IEC 60601-2-25 and every ECG cart.  12 px/mm (304.8 dpi)
# rather than 300 dpi's 11.81: an integer keeps every 1 mm line exactly 12 px from the next,
# and the page (285 x 205 mm) still prints on A4 landscape at its true scale.
PX_PER_MM = 12
PAPER_SPEED = 25.0  # mm/s
GAIN = 10.0  # mm/mV
ECG_COLUMN_SECONDS = 2.5  # each column of the 3 x 4 layout: the next 2.5 s of its leads
ECG_SECONDS = 10.0  # the rhythm strip, and the most of a recording one page shows
ECG_ROW_MM = 40  # between baselines: +-2 mV before a trace reaches the next row
ECG_MARGIN_MM = 10
ECG_CALIBRATION_MM = 10  # room left of the traces for the 1 mV x 200 ms pulse
PAPER_WHITE = (255, 255, 255)
GRID_MINOR = (255, 208, 214)  # 1 mm lines
GRID_MAJOR = (236, 128, 142)  # 5 mm lines, drawn 2 px wide as paper prints them thicker
INK = (0, 0, 0)
TRACE_PX = 3  # 0.25 mm, a thermal printer's trace
TEXT_PX = 30  # 2.5 mm tall
LABEL_PX = 36

# Strips of other waveforms: not paper, so sized in pixels.
STRIP_WIDTH = 2400  # pixels of time axis: a whole recording, however long
STRIP_HEIGHT = 300
STRIP_LEFT = 280  # label, unit and the value ticks
STRIP_GAP = 90  # the time ticks below each strip, and air
STRIP_GRID = (225, 225, 225)


@dataclasses.dataclass
class WaveformGroup:
    """One multiplex group (an item of Waveform Sequence, PS3.3 C.10.9.1) in physical units."""

    index: int  # in Waveform Sequence, from 0 (annotations count from 1)
    originality: str  # ORIGINAL or DERIVED (C.10.9.1.1)
    rate: float  # Sampling Frequency, Hz
    labels: list[str]
    units: list[str]  # as shown: "µV", "mmHg"; "" for arbitrary units
    values: np.ndarray  # float64, (samples, channels)
    label: str = ""  # Multiplex Group Label: RHYTHM, MEDIAN BEAT ...
    filters: list[tuple[float | None, float | None, float | None]] = dataclasses.field(default_factory=list)
    # (low, high, notch) Hz of each channel, None where not given (C.10.9.1.4.1)

    @property
    def duration(self) -> float:
        return self.values.shape[0] / self.rate


def waveform_groups(ds: Dataset) -> list[WaveformGroup]:
    """Every multiplex group of the Waveform module (PS3.3 C.10.9) in physical units.

    Stored samples come from pydicom's `multiplex_array(as_raw=True)` once their sizes are
    checked here (pydicom itself would cut or fail on a reshape).  The scaling is done here,
    with pydicom's formula (C.10.9.1.4.3-4, Channel Sensitivity x Channel Sensitivity
    Correction Factor + Channel Baseline, each defaulting to 1, 1, 0), because pydicom's
    `waveform_array` scales mu-law and A-law codes as if they were linear and fails on an
    empty sensitivity.  Those are decoded to linear (ITU-T G.711, on the 16-bit scale) first.
    """
    sequence = ds.get("WaveformSequence")
    if not sequence:
        raise CorruptFile("it has no Waveform Sequence (5400,0100)")
    return [_waveform_group(ds, item, index) for index, item in enumerate(sequence)]


def _waveform_group(ds: Dataset, item: Dataset, index: int) -> WaveformGroup:
    import numpy as np

    raw = stored_samples(ds, item, index)
    channels = item.ChannelDefinitionSequence
    sensitivity = np.array([_number(c, "ChannelSensitivity", 1.0) for c in channels])
    correction = np.array([_number(c, "ChannelSensitivityCorrectionFactor", 1.0) for c in channels])
    baseline = np.array([_number(c, "ChannelBaseline", 0.0) for c in channels])
    if item.WaveformSampleInterpretation in ("MB", "AB"):
        raw = g711_to_linear(raw, item.WaveformSampleInterpretation)
    # the order of pydicom's arithmetic, so that values equal its waveform_array bit for bit
    values = raw.astype(np.float64) * sensitivity * correction + baseline
    return WaveformGroup(
        index=index,
        originality=str(item.get("WaveformOriginality", "") or ""),
        rate=float(item.SamplingFrequency),
        labels=[channel_label(c, k) for k, c in enumerate(channels)],
        units=[channel_unit(c) for c in channels],
        values=values,
        label=str(item.get("MultiplexGroupLabel", "") or ""),
        filters=[tuple(_number(c, k, None) for k in ("FilterLowFrequency", "FilterHighFrequency",
                                                      "NotchFilterFrequency")) for c in channels],
    )


def stored_samples(ds: Dataset, item: Dataset, index: int) -> np.ndarray:
    """The stored samples of multiplex group `index` (`item`), (samples, channels), after
    checking that its counts, sample format and rate agree with each other and its data
    (PS3.3 C.10.9.1.2-5); raises CorruptFile where they do not."""
    import math

    from pydicom.waveforms import numpy_handler

    where = f"waveform group {index + 1}"
    for keyword in ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "SamplingFrequency",
                    "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
                    "ChannelDefinitionSequence"):
        if item.get(keyword) in (None, ""):
            raise CorruptFile(f"{where} has no {keyword}")
    channels, samples = int(item.NumberOfWaveformChannels), int(item.NumberOfWaveformSamples)
    bits, interpretation = int(item.WaveformBitsAllocated), str(item.WaveformSampleInterpretation)
    rate = float(item.SamplingFrequency)
    if channels < 1 or samples < 1:
        raise CorruptFile(f"{where} claims {channels} channels of {samples} samples")
    if len(item.ChannelDefinitionSequence) != channels:
        raise CorruptFile(f"{where} claims {channels} channels but defines "
                          f"{len(item.ChannelDefinitionSequence)} (Channel Definition Sequence)")
    if (bits, interpretation) not in numpy_handler.WAVEFORM_DTYPES:
        raise CorruptFile(f"{where} has {bits} bits allocated with sample interpretation "
                          f"{interpretation!r}, which PS3.3 C.10.9.1.5 does not define")
    if not math.isfinite(rate) or rate <= 0:
        raise CorruptFile(f"{where} has a sampling frequency of {rate:g} Hz")
    expected = samples * channels * bits // 8
    length = len(item.WaveformData)
    if length < expected:
        raise CorruptFile(f"{where} has {length} bytes of Waveform Data, fewer than its "
                          f"{samples} samples x {channels} channels x {bits // 8} bytes ({expected})")
    if length > expected + expected % 2:  # the one pad byte to an even length (PS3.5 7.1) is allowed
        raise CorruptFile(f"{where} has {length} bytes of Waveform Data, more than its "
                          f"{samples} samples x {channels} channels x {bits // 8} bytes ({expected}): "
                          f"its counts are wrong")
    return numpy_handler.multiplex_array(ds, index, as_raw=True)


def _number(item: Dataset, keyword: str, default):
    value = item.get(keyword)
    try:
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        raise CorruptFile(f"its {keyword} {str(value)[:20]!r} is not a number") from None


def g711_to_linear(codes: np.ndarray, interpretation: str) -> np.ndarray:
    """mu-law (``MB``) or A-law (``AB``) codes (PS3.3 C.10.9.1.5) as linear int16 samples,
    the ITU-T G.711 expansion on the 16-bit scale (mu-law +-32124, A-law +-32256) that
    G.191's reference decoder and every WAV player use."""
    table = _mu_law_table() if interpretation == "MB" else _a_law_table()
    return table[codes.astype("uint8")]


@functools.lru_cache(maxsize=1)
def _mu_law_table() -> np.ndarray:
    import numpy as np

    u = ~np.arange(256, dtype=np.int32) & 0xFF  # codes are sent inverted (G.711 table 2a)
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


@functools.lru_cache(maxsize=1)
def _a_law_table() -> np.ndarray:
    import numpy as np

    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted (G.711 table 1a)
    segment = (a & 0x70) >> 4
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(segment == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def channel_label(channel: Dataset, number: int) -> str:
    """A channel's name: Channel Label (PS3.3 C.10.9.1.4), else its Channel Source as a
    standard lead name (I ... V6), else the source's code meaning less a leading "Lead "."""
    label = str(channel.get("ChannelLabel", "") or "").strip()
    if label:
        return label
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    if source is None:
        return f"channel {number + 1}"
    code = str(source.get("CodeValue", "") or "")
    for prefix in LEAD_CODE_PREFIXES:
        tail = code[len(prefix):]
        if code.startswith(prefix) and tail.isdigit() and int(tail) in LEAD_NUMBERS:
            return LEAD_NUMBERS[int(tail)]
    meaning = str(source.get("CodeMeaning", "") or code).strip()
    return meaning[5:] if meaning.startswith("Lead ") else (meaning or f"channel {number + 1}")


def channel_unit(channel: Dataset) -> str:
    """The unit of a channel's values (Channel Sensitivity Units Sequence, PS3.3 C.10.9.1.4.3)
    as people write it; "" when the file gives none (arbitrary units)."""
    units = channel.get("ChannelSensitivityUnitsSequence")
    return unit_name(units[0]) if units else ""


def unit_name(code: Dataset) -> str:
    value = str(code.get("CodeValue", "") or "")
    return UNIT_NAMES.get(value, value)


def main_and_median(groups: list[WaveformGroup]) -> tuple[WaveformGroup, WaveformGroup | None]:
    """The group to show (the longest ORIGINAL one, else the longest; C.10.9.1.1) and, if
    there is one, the derived representative beat (a DERIVED group labelled a median or
    average beat, or any DERIVED group of one column's length or less), drawn on its own page."""
    originals = [g for g in groups if g.originality == "ORIGINAL"] or groups
    main = max(originals, key=lambda g: g.duration)
    for group in groups:
        if group is main or group.originality != "DERIVED":
            continue
        label = group.label.upper()
        if any(word in label for word in ("MEDIAN", "BEAT", "AVERAGE", "REPRESENTATIVE")) \
                or group.duration <= ECG_COLUMN_SECONDS:
            return main, group
    return main, None


def is_ecg(ds: Dataset, group: WaveformGroup) -> bool:
    """Whether `group` goes on ECG paper: it is of an ECG class (PS3.3 A.34.3-5) or holds the
    12 standard leads."""
    return str(ds.get("SOPClassUID", "")) in ECG_CLASSES or has_standard_leads(group)


def has_standard_leads(group: WaveformGroup) -> bool:
    return set(STANDARD_LEADS) <= set(group.labels)


def is_audio(ds: Dataset) -> bool:
    """Whether `ds` is Basic Voice Audio or General Audio (PS3.3 A.34.2, A.34.10): a WAV, not a picture."""
    return str(ds.get("SOPClassUID", "")) in AUDIO_CLASSES


# -----------------------------------------------------------------------------
# The header: what an ECG cart prints above the traces
# -----------------------------------------------------------------------------

def waveform_header(ds: Dataset, group: WaveformGroup, identify: bool = False) -> str:
    """The lines printed above the traces (`header_lines`), one string."""
    return "\n".join(header_lines(ds, group, identify))


def header_lines(ds: Dataset, group: WaveformGroup, identify: bool = False) -> list[str]:
    """The lines printed above the traces: with `identify` (not under --redact), the patient as
    a cart prints it (`patient_line`); what it is and when it was recorded, the group and its
    sampling; the channels' filters (PS3.3 C.10.9.1.4.1); the heart rate of an ECG
    (`heart_rate`) and the annotations of the group (Waveform Annotation Sequence, C.10.10):
    texts, coded findings and measurements."""
    when = recording_time(ds)
    lines = [patient_line(ds, when)] if identify else []
    first = [WAVEFORM_CLASSES.get(str(ds.get("SOPClassUID", "")), "Waveform"), "" if identify else when]
    first.append(f"{group.label} ({group.originality})" if group.label else group.originality)
    first.append(f"{group.rate:g} Hz, {group.values.shape[1]} channels x {group.duration:g} s")
    lines += [" · ".join(part for part in first if part), filter_text(group)]
    rate = heart_rate(ds, group) if is_ecg(ds, group) else None
    annotations = ([f"HR {rate[0]:.0f} bpm ({rate[1]})"] if rate else []) + annotation_texts(ds, group)
    if annotations:
        lines.append("; ".join(annotations))
    return [line for line in lines if line]


def patient_line(ds: Dataset, when: str = "") -> str:
    """Patient's Name ("FAMILY, Given", as the index page lists it), Patient ID and when it was acquired (`when`, else the
    Acquisition DateTime, Acquisition Date or Content Date as stored), as the top of a printed ECG."""
    stamp = when or string_value(ds.get("AcquisitionDateTime") or ds.get("AcquisitionDate") or ds.get("ContentDate"))
    patient_id = string_value(ds.get("PatientID"))
    parts = [person_name_listed(ds.get("PatientName")), f"ID {patient_id}" if patient_id else "", stamp]
    return " · ".join(part for part in parts if part)


# A heart rate the file measured: LOINC 8867-4 "Heart rate", MDC 2:16016 (MDC_ECG_HEART_RATE),
# or a concept whose name says so ("Ventricular Heart Rate", "Heart Rate").
HEART_RATE_CODES = {("8867-4", "LN"), ("2:16016", "MDC"), ("MDC_ECG_HEART_RATE", "MDC")}
RR_INTERVAL_WORDS = ("rr interval",)  # SCP-ECG 5.10.2.1-3, which carts that give no rate give instead
# R peaks: the QRS is the steepest part of a beat.  The slope of lead II smoothed over 20 ms (a
# low pass near 25 Hz, the derivative the high pass) is squared and summed over 100 ms (about a
# QRS); a beat is where that rises above 30% of its 99th percentile, no sooner than 200 ms
# (the refractory period) after the last.  On waveform_ecg.dcm it finds the 61 bpm its RR
# interval (982 ms) says.
R_PEAK_SMOOTH_S = 0.02
R_PEAK_WINDOW_S = 0.1
R_PEAK_THRESHOLD = 0.3
R_PEAK_REFRACTORY_S = 0.2
HEART_RATES = (20.0, 300.0)  # bpm: outside them a rate is a detection gone wrong, not shown


def heart_rate(ds: Dataset, group: WaveformGroup) -> tuple[float, str] | None:
    """The heart rate in beats per minute and where it comes from: the file's measurement of
    it (an annotation of the group, `HEART_RATE_CODES`), else 60000 / its RR interval in ms,
    else the R peaks of lead II in the first ECG_SECONDS (`r_peaks`); None when none gives one."""
    measured = rr = None
    for item in ds.get("WaveformAnnotationSequence") or []:
        referenced = [int(v) for v in (item.get("ReferencedWaveformChannels") or [])]
        names = item.get("ConceptNameCodeSequence")
        if (referenced and group.index + 1 not in referenced[0::2]) or not names or item.get("NumericValue") in (None, ""):
            continue
        code = (str(names[0].get("CodeValue", "")), str(names[0].get("CodingSchemeDesignator", "")))
        meaning = str(names[0].get("CodeMeaning", "") or "").lower()
        try:
            value = float(item.NumericValue[0] if is_multi(item.NumericValue) else item.NumericValue)
        except (TypeError, ValueError, IndexError):
            continue
        if code in HEART_RATE_CODES or "heart rate" in meaning:
            measured = measured if measured is not None else value
        elif any(word in meaning for word in RR_INTERVAL_WORDS) and value > 0:
            units = item.get("MeasurementUnitsCodeSequence")
            seconds = units and str(units[0].get("CodeValue", "")) == "s"
            rr = rr if rr is not None else 60.0 / value if seconds else 60000.0 / value
    for rate, source in ((measured, "from the file"), (rr, "from the file's RR interval")):
        if rate is not None and HEART_RATES[0] <= rate <= HEART_RATES[1]:
            return rate, source
    if "II" not in group.labels:
        return None
    lead = group.values[:round(ECG_SECONDS * group.rate), group.labels.index("II")]
    peaks = r_peaks(lead, group.rate)
    if len(peaks) < 3:  # two intervals at least: one could be a beat and a missed one
        return None
    import numpy as np

    rate = 60.0 * group.rate / float(np.median(np.diff(peaks)))
    return (rate, "from lead II R peaks") if HEART_RATES[0] <= rate <= HEART_RATES[1] else None


def r_peaks(values: np.ndarray, rate: float) -> np.ndarray:
    """The sample numbers where beats start in one ECG lead (see R_PEAK_SMOOTH_S): numpy only."""
    import numpy as np

    values = np.nan_to_num(np.asarray(values, dtype=np.float64), posinf=0.0, neginf=0.0)
    peak = float(np.abs(values).max()) if values.size else 0.0
    if not peak:
        return np.array([], dtype=np.int64)
    values = values / peak  # the threshold is relative: scaled to +-1, no square overflows
    smooth, window = max(1, round(R_PEAK_SMOOTH_S * rate)), max(1, round(R_PEAK_WINDOW_S * rate))
    if values.size < 2 * (smooth + window):
        return np.array([], dtype=np.int64)
    slope = np.diff(np.convolve(values, np.ones(smooth) / smooth, mode="valid"))
    energy = np.convolve(slope * slope, np.ones(window), mode="valid")
    threshold = R_PEAK_THRESHOLD * np.percentile(energy, 99)
    if threshold <= 0:
        return np.array([], dtype=np.int64)
    rises = np.flatnonzero((energy[1:] > threshold) & (energy[:-1] <= threshold)) + 1
    refractory = R_PEAK_REFRACTORY_S * rate
    kept: list[int] = []
    for rise in rises.tolist():
        if not kept or rise - kept[-1] >= refractory:
            kept.append(rise)
    return np.array(kept, dtype=np.int64)


def recording_time(ds: Dataset) -> str:
    """Acquisition DateTime, else Content Date/Time, else Study Date/Time, as 2013-01-25 10:59:19."""
    stamp = str(ds.get("AcquisitionDateTime", "") or "")
    if not stamp:
        for date, time in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
            if ds.get(date):
                stamp = str(ds.get(date)) + str(ds.get(time, "") or "")
                break
    stamp = stamp.split("+")[0].split("-")[0]  # a UTC offset is not worth the room
    if len(stamp) < 8:
        return ""
    text = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
    clock = stamp[8:14]
    if len(clock) >= 4:
        text += " " + ":".join(clock[k:k + 2] for k in range(0, len(clock), 2))
    return text


def filter_text(group: WaveformGroup) -> str:
    """The filters as one line: one setting for all channels, else each setting with its channels."""
    settings: dict[tuple, list[str]] = {}
    for label, setting in zip(group.labels, group.filters):
        settings.setdefault(setting, []).append(label)
    described = [(_filter_setting(*s), labels) for s, labels in settings.items() if any(v is not None for v in s)]
    if not described:
        return ""
    if len(described) == 1 and len(described[0][1]) == len(group.labels):
        return "filters " + described[0][0]
    return "filters " + "; ".join(f"{text} ({', '.join(labels)})" for text, labels in described)


def _filter_setting(low: float | None, high: float | None, notch: float | None) -> str:
    band = f"{'?' if low is None else f'{low:g}'}-{'?' if high is None else f'{high:g}'} Hz"
    # Notch Filter Frequency 0 is how carts (and pydicom's sample) say no notch was applied
    return band + (", no notch" if not notch else f", notch {notch:g} Hz")


def annotation_texts(ds: Dataset, group: WaveformGroup) -> list[str]:
    """The annotations (PS3.3 C.10.10) that refer to `group` (Referenced Waveform Channels
    pairs count groups from 1; channel 0 is the whole group) or to no group: Unformatted Text
    Value, Concept Name + Concept Code ("Rhythm: sinus"), Concept Name + Numeric Value +
    Measurement Units ("QT Interval 368 ms").  Markers of a sample position alone (fiducial
    points, without a value) are not text and are left out."""
    texts = []
    for item in ds.get("WaveformAnnotationSequence") or []:
        referenced = [int(v) for v in (item.get("ReferencedWaveformChannels") or [])]
        if referenced and group.index + 1 not in referenced[0::2]:
            continue
        text = annotation_text(item)
        if text:
            texts.append(text)
    return texts


def annotation_text(item: Dataset) -> str:
    from pydicom.multival import MultiValue

    unformatted = str(item.get("UnformattedTextValue", "") or "").strip()
    if unformatted:
        return unformatted
    name = _meaning(item.get("ConceptNameCodeSequence"))
    concept = _meaning(item.get("ConceptCodeSequence"))
    if concept:
        return f"{name}: {concept}" if name else concept
    if item.get("NumericValue") not in (None, ""):
        value = item.NumericValue
        values = list(value) if isinstance(value, MultiValue) else [value]
        units = item.get("MeasurementUnitsCodeSequence")
        unit = unit_name(units[0]) if units else ""
        number = ", ".join(f"{float(v):g}" for v in values)
        return f"{name} {number}{'' if unit in ('°', '') else ' '}{unit}".strip()
    return ""


def _meaning(sequence) -> str:
    return str(sequence[0].get("CodeMeaning", "") or "").strip() if sequence else ""


# -----------------------------------------------------------------------------
# ECG paper
# -----------------------------------------------------------------------------

def ecg_page(group: WaveformGroup, header: str) -> np.ndarray:
    """`group` on ECG paper as an RGB uint8 image, 12 px/mm: 25 mm/s, 10 mm/mV, the 1 mm and
    5 mm grid, a 1 mV x 200 ms calibration pulse at the start of each row, `header` above.

    With the 12 standard leads: the 3 x 4 layout (I, II, III | aVR, aVL, aVF | V1-V3 | V4-V6),
    each column its leads' own 2.5 s (as carts print it; a sample at t s is at
    x0 + t x 25 mm/s), and a 10 s lead II rhythm strip below.  A group of 2.5 s or less (a
    median beat) shows its whole length in every column and has no rhythm strip.  Otherwise
    one row per channel.  At most the first 10 s are drawn; the CSV has every sample.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    shown = min(group.duration, ECG_SECONDS)
    notes = [f"{PAPER_SPEED:g} mm/s · {GAIN:g} mm/mV"]
    if group.duration > ECG_SECONDS + 1e-9:
        notes.append(f"first {ECG_SECONDS:g} s of {group.duration:g} s shown")
    rows, width_s = ecg_layout(group, shown)
    extra = [label for label in group.labels if label not in STANDARD_LEADS] if has_standard_leads(group) else []
    if extra:
        notes.append(f"also recorded: {', '.join(extra)} (in the CSV)")
    drawn = group.values[:round(shown * group.rate) + 1]  # a day-long Holter: convert 10 s, not 24 h
    millivolts = drawn * np.array([MILLIVOLTS_PER.get(unit, 1.0) for unit in group.units])
    mm = PX_PER_MM
    page_w_mm = ECG_MARGIN_MM + ECG_CALIBRATION_MM + width_s * PAPER_SPEED + 5 + ECG_MARGIN_MM
    lines, font, line_h = _wrapped(header + "\n" + " · ".join(notes), round(page_w_mm * mm) - 2 * ECG_MARGIN_MM * mm)
    header_h = ECG_MARGIN_MM * mm // 2 + len(lines) * line_h + 3 * mm
    grid_top = header_h
    grid_h = round((len(rows) * ECG_ROW_MM + 10) * mm)
    height, width = grid_top + grid_h + ECG_MARGIN_MM * mm // 2, round(page_w_mm * mm)
    page = np.empty((height, width, 3), np.uint8)
    page[:] = PAPER_WHITE
    grid_left = ECG_MARGIN_MM * mm
    draw_ecg_grid(page, grid_top, grid_left, height - ECG_MARGIN_MM * mm // 2, width - ECG_MARGIN_MM * mm)
    image = Image.fromarray(page)
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((ECG_MARGIN_MM * mm, ECG_MARGIN_MM * mm // 2 + k * line_h), line, fill=INK, font=font)
    label_font = ImageFont.load_default(size=LABEL_PX)
    x0 = ecg_x0()
    for r, row in enumerate(rows):
        baseline = ecg_baseline(grid_top, r)
        draw_calibration(draw, grid_left + 2 * mm, baseline)
        for column, (channel, start, end, left) in enumerate(row):
            x = x0 + left * PAPER_SPEED * mm
            if column:  # the cart's mark where one lead's window ends and the next begins
                draw.line([(x, baseline - 3 * mm), (x, baseline + 3 * mm)], fill=INK, width=2)
            draw.text((x + mm, baseline - 12 * mm), drawable(group.labels[channel]), fill=INK, font=label_font, anchor="ls")
            first, last = round(start * group.rate), min(round(end * group.rate), millivolts.shape[0])
            t = np.arange(first, last) / group.rate - start
            xs = x + t * PAPER_SPEED * mm
            ys = baseline - millivolts[first:last, channel] * GAIN * mm
            draw_trace(draw, xs, ys)
    return np.asarray(image)


def ecg_layout(group: WaveformGroup, shown: float) -> tuple[list[list[tuple[int, float, float, float]]], float]:
    """The rows of the page, each a list of (channel, start s, end s, left s) segments, and
    the width of the traces in seconds."""
    if has_standard_leads(group):
        index = {label: k for k, label in reversed(list(enumerate(group.labels)))}  # first of a name
        if shown <= ECG_COLUMN_SECONDS:  # a representative beat: all of it in every column
            windows = [(0.0, shown, c * shown) for c in range(4)]
        else:
            step = shown / 4 if shown < ECG_SECONDS else ECG_COLUMN_SECONDS
            windows = [(c * step, (c + 1) * step, c * step) for c in range(4)]
        rows = [[(index[STANDARD_LEADS[3 * c + r]], *windows[c]) for c in range(4)] for r in range(3)]
        width = 4 * shown if shown <= ECG_COLUMN_SECONDS else 4 * windows[0][1]
        if shown > ECG_COLUMN_SECONDS:
            rows.append([(index["II"], 0.0, width, 0.0)])
        return rows, width
    return [[(k, 0.0, shown, 0.0)] for k in range(group.values.shape[1])], shown


def ecg_baseline(grid_top: int, row: int) -> int:
    """The pixel row of row `row`'s 0 mV line: on a 5 mm line, 25 mm into the grid and then
    every ECG_ROW_MM."""
    return grid_top + (25 + row * ECG_ROW_MM) * PX_PER_MM


def ecg_x0() -> int:
    """The pixel column of t = 0 on every row."""
    return (ECG_MARGIN_MM + ECG_CALIBRATION_MM) * PX_PER_MM


def draw_ecg_grid(page: np.ndarray, top: int, left: int, bottom: int, right: int) -> None:
    """ECG paper: 1 mm lines, every fifth (5 mm, 0.2 s, 0.5 mV) darker and 2 px wide, from
    (`left`, `top`) every PX_PER_MM pixels."""
    import numpy as np

    xs = np.arange(left, right + 1, PX_PER_MM)
    ys = np.arange(top, bottom + 1, PX_PER_MM)
    right, bottom = xs[-1], ys[-1]
    page[top:bottom + 1, xs] = GRID_MINOR
    page[ys, left:right + 1] = GRID_MINOR
    major_xs, major_ys = xs[::5], ys[::5]
    page[top:bottom + 1, np.concatenate([major_xs, np.minimum(major_xs + 1, right)])] = GRID_MAJOR
    page[np.concatenate([major_ys, np.minimum(major_ys + 1, bottom)]), left:right + 1] = GRID_MAJOR


def draw_calibration(draw, x: float, baseline: int) -> None:
    """The standardisation pulse: 1 mV (10 mm) high for 200 ms (5 mm), with 1 mm of baseline either side."""
    mm = PX_PER_MM
    top = baseline - GAIN * mm
    draw.line([(x, baseline), (x + mm, baseline), (x + mm, top), (x + 6 * mm, top),
               (x + 6 * mm, baseline), (x + 7 * mm, baseline)], fill=INK, width=TRACE_PX)


def draw_trace(draw, xs: np.ndarray, ys: np.ndarray, width: int = TRACE_PX) -> None:
    """One polyline through the points; more than two samples to a pixel column are first
    reduced to each column's lowest and highest value, which draws the same ink in far
    fewer segments (a whole day of a 1 kHz Holter lead, say)."""
    import numpy as np

    finite = np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    if len(xs) < 2:
        return
    columns = np.floor(xs).astype(np.int64)
    if len(xs) > 2 * (columns[-1] - columns[0] + 1):
        starts = np.flatnonzero(np.diff(columns, prepend=columns[0] - 1))
        low, high = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
        xs = np.repeat(columns[starts] + 0.5, 2)
        ys = np.column_stack([low, high]).ravel()
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=INK, width=width)


def drawable(text: str) -> str:
    """`text` in glyphs Pillow's default font (Aileron) has: it lacks the micro sign."""
    return text.replace("µ", "u").replace("μ", "u")


def _wrapped(text: str, width: int, size: int = TEXT_PX):
    """`text` broken into lines no wider than `width` px in Pillow's default font at `size`
    (needs Pillow >= 10.1), the font, and the line pitch."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = []
    for paragraph in drawable(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and measure.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines, font, round(size * 1.25)


# -----------------------------------------------------------------------------
# Strips: pressures, pulse, respiration, anything not on ECG paper
# -----------------------------------------------------------------------------

def strips_page(group: WaveformGroup, header: str) -> np.ndarray:
    """One strip per channel of `group`, each in its own unit and scale (the range of its
    values, ticked at 1-2-5 steps), over a time axis in seconds spanning the whole
    recording; `header` above.  RGB uint8."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    width = STRIP_LEFT + STRIP_WIDTH + 60
    lines, font, line_h = _wrapped(header, width - 80)
    top = 40 + len(lines) * line_h + 30
    channels = group.values.shape[1]
    height = top + channels * (STRIP_HEIGHT + STRIP_GAP) + 20
    page = np.full((height, width, 3), 255, np.uint8)
    duration = group.duration
    times = nice_ticks(0.0, duration)
    tick_xs = np.rint(STRIP_LEFT + times / duration * STRIP_WIDTH).astype(int)
    strips = []
    for k in range(channels):
        y0 = top + k * (STRIP_HEIGHT + STRIP_GAP)
        low, high = value_range(group.values[:, k])
        ticks = nice_ticks(low, high)
        tick_ys = np.rint(y0 + (high - ticks) / (high - low) * STRIP_HEIGHT).astype(int)
        page[y0:y0 + STRIP_HEIGHT + 1, tick_xs] = STRIP_GRID
        page[tick_ys, STRIP_LEFT:STRIP_LEFT + STRIP_WIDTH + 1] = STRIP_GRID
        strips.append((y0, low, high, ticks, tick_ys))
    image = Image.fromarray(page)
    draw = ImageDraw.Draw(image)
    small = ImageFont.load_default(size=22)
    big = ImageFont.load_default(size=28)
    for k, line in enumerate(lines):
        draw.text((40, 40 + k * line_h), line, fill=INK, font=font)
    t = np.arange(group.values.shape[0]) / group.rate
    for k, (y0, low, high, ticks, tick_ys) in enumerate(strips):
        draw.rectangle([STRIP_LEFT, y0, STRIP_LEFT + STRIP_WIDTH, y0 + STRIP_HEIGHT], outline=(128, 128, 128))
        unit = group.units[k]
        draw.text((20, y0 + STRIP_HEIGHT // 2), drawable(group.labels[k]), fill=INK, font=big, anchor="lb")
        draw.text((20, y0 + STRIP_HEIGHT // 2 + 8), drawable(unit) or "(no unit)", fill=INK, font=small, anchor="lt")
        for value, y in zip(ticks.tolist(), tick_ys.tolist()):
            draw.text((STRIP_LEFT - 8, y), f"{value:g}", fill=INK, font=small, anchor="rm")
        for value, x in zip(times.tolist(), tick_xs.tolist()):
            draw.text((x, y0 + STRIP_HEIGHT + 6), f"{value:g}", fill=INK, font=small, anchor="mt")
        draw.text((STRIP_LEFT + STRIP_WIDTH, y0 + STRIP_HEIGHT + 34), "time (s)", fill=INK, font=small, anchor="rt")
        xs = STRIP_LEFT + t / duration * STRIP_WIDTH
        ys = y0 + (high - group.values[:, k]) / (high - low) * STRIP_HEIGHT
        draw_trace(draw, xs, ys, width=2)
    return np.asarray(image)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """The range a strip shows: its values' range and 5% more either side (1 either side of a flat line)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if not finite.size:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return low - 1.0, high + 1.0
    pad = (high - low) * 0.05
    return low - pad, high + pad


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """Ticks at a 1, 2 or 5 x 10^n step, about `count` of them, within [low, high]."""
    import math

    import numpy as np

    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = np.arange(first, math.floor(high / step + 1e-9) + 1) * step
    return np.round(ticks, 12)


# -----------------------------------------------------------------------------
# CSV and WAV
# -----------------------------------------------------------------------------

def write_waveform_csv(group: WaveformGroup, path: Path) -> None:
    """Every sample of `group`: a ``time (s)`` column (sample number / Sampling Frequency,
    from the group's first sample) and one column per channel in its physical unit, headed
    ``I (µV)``; values as Python's shortest exact repr; UTF-8, "\\n" line ends everywhere."""
    import csv

    import numpy as np

    heads = ["time (s)"] + [f"{label} ({unit})" if unit else label for label, unit in zip(group.labels, group.units)]
    times = np.arange(group.values.shape[0]) / group.rate
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(heads)
        writer.writerows(np.column_stack([times, group.values]).tolist())


def write_audio(ds: Dataset, path: Path) -> None:
    """The audio of `ds` (its longest original multiplex group) as a 16-bit PCM WAV: channels
    interleaved, at its Sampling Frequency rounded to whole Hz (WAV has no fractions).
    Samples are the stored ones on the 16-bit scale: mu-law and A-law expanded (G.711),
    8-bit shifted up, unsigned made signed, 32/64-bit cut to their top 16 bits; the Channel
    Sensitivity of audio names no physical level a player could use, so it is not applied."""
    import wave

    import numpy as np

    sequence = ds.get("WaveformSequence")
    if not sequence:
        raise CorruptFile("it has no Waveform Sequence (5400,0100)")
    groups = [(index, item, stored_samples(ds, item, index)) for index, item in enumerate(sequence)]
    originals = [g for g in groups if g[1].get("WaveformOriginality") == "ORIGINAL"] or groups
    index, item, raw = max(originals, key=lambda g: g[2].shape[0] / float(g[1].SamplingFrequency))
    pcm = pcm16(raw, str(item.WaveformSampleInterpretation))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(max(1, round(float(item.SamplingFrequency))))
        wav.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())  # C order: interleaved


def pcm16(raw: np.ndarray, interpretation: str) -> np.ndarray:
    """Stored samples (PS3.3 C.10.9.1.5) as signed 16-bit linear PCM."""
    import numpy as np

    if interpretation in ("MB", "AB"):
        return g711_to_linear(raw, interpretation)
    bits = raw.dtype.itemsize * 8
    signed = raw.astype(np.int64)
    if raw.dtype.kind == "u":  # offset binary: the middle code is silence
        signed -= 1 << (bits - 1)
    shift = bits - 16
    return (signed << -shift if shift < 0 else signed >> shift).astype(np.int16)


MEDIAN_SUFFIX = "_median.png"  # the representative beat of an ECG, beside its page


def write_waveform(job: Conversion, kind: str) -> None:
    """A waveform object (PS3.3 A.34): audio as ``STEM.wav``; anything else as ``STEM.png``
    (an ECG on ECG paper, other waveforms as strips), its representative beat as
    ``STEM_median.png``, and every sample of the group shown in ``STEM.csv``.  Under --redact
    the page's header comes from the de-identified dataset, so no date or free text the
    profile removes is drawn, and audio is withheld (speech names people)."""
    ds, options = job.ds, job.options
    name = WAVEFORM_CLASSES.get(str(ds.get("SOPClassUID", "")), "waveform")
    if is_audio(ds):
        if options.redact_salt:
            job.rendering["Display"] = f"metadata only (--redact: the {name} is withheld, speech names people)"
            return
        write_audio(ds, job.output(".wav"))
        job.rendering["Display"] = f"{name} as WAV"
        job.rendering["Output"] = "WAV 16-bit PCM"
        return
    shown = job.shown
    main, median = main_and_median(waveform_groups(ds))
    on_paper = is_ecg(ds, main)
    channels = main.values.shape[1]
    job.rendering["Display"] = (f"{name}, {channels} channel{'s' if channels != 1 else ''} x {main.duration:g} s at "
                                f"{main.rate:g} Hz, " + ("on ECG paper (25 mm/s, 10 mm/mV)" if on_paper else "as strips"))
    if options.write_png:
        identify = not options.redact_salt  # under --redact no name, ID or date is printed
        page = (ecg_page if on_paper else strips_page)(main, waveform_header(shown, main, identify))
        write_png(page, job.output(".png"))
        job.thumbnail(page)
        if median is not None:
            write_png(ecg_page(median, waveform_header(shown, median, identify)), job.output(MEDIAN_SUFFIX))
            job.rendering["Display"] += f", its {median.label.lower() or 'derived'} group on a page of its own"
    write_waveform_csv(main, job.output(".csv"))
    job.rendering["Output"] = "PNG 8-bit and CSV" if options.write_png else "CSV"
