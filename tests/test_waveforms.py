"""Waveforms (PS3.3 C.10.9): pydicom's real 12-lead ECG (waveform_ecg.dcm: 12 leads x 10 s
at 1000 Hz, a 1.2 s median beat, annotations) and synthetic files for what no real file covers."""

import csv
import wave

import numpy as np
import pytest
from conftest import index_cards, run_cli
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from _dicom_converter.base import CorruptFile, Options
from _dicom_converter.kinds.waveforms import (
    ECG_MARGIN_MM,
    ECG_ROW_MM,
    GAIN,
    GRID_MAJOR,
    GRID_MINOR,
    PAPER_SPEED,
    PX_PER_MM,
    STANDARD_LEADS,
    STRIP_HEIGHT,
    STRIP_LEFT,
    STRIP_WIDTH,
    TEXT_PX,
    channel_label,
    ecg_baseline,
    ecg_page,
    ecg_x0,
    g711_to_linear,
    header_lines,
    heart_rate,
    is_audio,
    is_ecg,
    main_and_median,
    nice_ticks,
    patient_line,
    pcm16,
    r_peaks,
    strips_page,
    value_range,
    waveform_groups,
    waveform_header,
    write_audio,
    write_waveform_csv,
)
from _dicom_converter.redaction import as_shown

PX = PX_PER_MM
MINOR, MAJOR = np.array(GRID_MINOR), np.array(GRID_MAJOR)


@pytest.fixture(scope="module")
def ecg():
    return dcmread(get_testdata_file("waveform_ecg.dcm", download=False))


@pytest.fixture(scope="module")
def groups(ecg):
    return waveform_groups(ecg)


@pytest.fixture(scope="module")
def page(ecg, groups):
    main, _ = main_and_median(groups)
    return ecg_page(main, waveform_header(ecg, main))


# -----------------------------------------------------------------------------
# Synthetic files
# -----------------------------------------------------------------------------

def channel(label="", unit=None, sensitivity=None, baseline=None, source=None):
    """One Channel Definition Sequence item (PS3.3 C.10.9.1.4)."""
    item = Dataset()
    if label:
        item.ChannelLabel = label
    if source:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = source
        item.ChannelSourceSequence = Sequence([code])
    if sensitivity is not None:
        item.ChannelSensitivity = sensitivity
        item.ChannelSensitivityCorrectionFactor = 1
        units = Dataset()
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = unit, "UCUM", unit
        item.ChannelSensitivityUnitsSequence = Sequence([units])
    if baseline is not None:
        item.ChannelBaseline = baseline
    return item


def waveform_file(path, sop_class, stored, rate, interpretation, channels, bits=None, data=None, **claims):
    """A waveform object of `sop_class`, written to `path` and read back: one multiplex group
    holding `stored` (samples x channels, interleaved as PS3.3 C.10.9.1.3 says) with the
    Channel Definition items `channels`; `data` replaces the Waveform Data bytes and `claims`
    (NumberOfWaveformChannels=...) overrides what the group says of itself."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.ContentDate, ds.ContentTime = "HD", "20240102", "030405"
    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = stored.shape[1]
    group.NumberOfWaveformSamples = stored.shape[0]
    group.SamplingFrequency = rate
    group.WaveformBitsAllocated = bits or stored.dtype.itemsize * 8
    group.WaveformSampleInterpretation = interpretation
    group.ChannelDefinitionSequence = Sequence(channels)
    for keyword, value in claims.items():
        setattr(group, keyword, value)
    payload = stored.astype(stored.dtype.newbyteorder("<")).tobytes() if data is None else data
    group.add_new(0x54001010, "OB" if stored.dtype.itemsize == 1 else "OW", payload)
    ds.WaveformSequence = Sequence([group])
    ds.save_as(path, enforce_file_format=True)
    return dcmread(path)


def hemodynamic_file(tmp_path):
    """A Hemodynamic Waveform (PS3.3 A.34.6): arterial (ART) and pulmonary (PA) pressure in
    mmHg, 250 Hz for 4 s, 16-bit signed at 0.1 mmHg a step, PA with a baseline of 5 mmHg."""
    t = np.arange(1000) / 250
    art = 100 + 20 * np.sin(2 * np.pi * 1.2 * t)  # 80-120 mmHg at 72 /min
    pa = 20 + 8 * np.sin(2 * np.pi * 1.2 * t)
    stored = np.column_stack([np.rint(art / 0.1), np.rint((pa - 5) / 0.1)]).astype(np.int16)
    channels = [channel("ART", "mm[Hg]", 0.1), channel("PA", "mm[Hg]", 0.1, baseline=5)]
    return waveform_file(tmp_path / "hemo.dcm", "1.2.840.10008.5.1.4.1.1.9.2.1", stored, 250, "SS", channels), stored


def mulaw_encode(linear: np.ndarray) -> np.ndarray:
    """The mu-law code whose G.711 expansion is nearest each 16-bit value (the test's own encoder)."""
    table = g711_to_linear(np.arange(256, dtype=np.uint8), "MB").astype(np.int64)
    order = np.argsort(table, kind="stable")
    position = np.clip(np.searchsorted(table[order], linear), 1, 255)
    lower, upper = order[position - 1], order[position]
    nearer = np.abs(table[upper] - linear) < np.abs(table[lower] - linear)
    return np.where(nearer, upper, lower).astype(np.uint8)


def mulaw_audio_file(tmp_path):
    """Basic Voice Audio (PS3.3 A.34.2): 0.5 s of a 440 Hz tone at 8 kHz, one channel, mu-law (MB)."""
    tone = np.rint(20000 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)).astype(np.int64)
    codes = mulaw_encode(tone)[:, None]
    ds = waveform_file(tmp_path / "voice.dcm", "1.2.840.10008.5.1.4.1.1.9.4.1", codes, 8000, "MB",
                       [channel("voice")])
    return ds, tone, codes


def small_group_file(tmp_path, **claims):
    """A General ECG group of 2 leads x 100 16-bit samples at 500 Hz, with `claims` overriding its counts."""
    stored = np.arange(200, dtype=np.int16).reshape(100, 2)
    return waveform_file(tmp_path / "lying.dcm", "1.2.840.10008.5.1.4.1.1.9.1.2", stored, 500, "SS",
                         [channel("I", "uV", 5), channel("II", "uV", 5)], **claims)


# -----------------------------------------------------------------------------
# Reading the groups
# -----------------------------------------------------------------------------

def test_lead_labels_from_scpecg_codes(groups):
    assert [g.labels for g in groups] == [list(STANDARD_LEADS)] * 2


def test_values_equal_pydicoms_waveform_array(ecg, groups):
    # Every channel is Sensitivity 1.25 uV x Correction 1 + Baseline 0: what pydicom applies too.
    for group in groups:
        assert np.array_equal(group.values, ecg.waveform_array(group.index))
        raw = ecg.waveform_array(group.index) / 1.25
        assert np.array_equal(group.values, np.rint(raw) * 1.25)
    assert groups[0].units == ["µV"] * 12 and groups[0].rate == 1000.0
    assert groups[0].values.shape == (10000, 12) and groups[1].values.shape == (1200, 12)


def test_main_and_median(groups):
    main, median = main_and_median(groups)
    assert (main.index, main.label, median.index, median.label) == (0, "RHYTHM", 1, "MEDIAN BEAT")


def test_labels_from_mdc_codes_and_channel_label():
    assert channel_label(channel(source=("2:61", "MDC", "Lead III")), 0) == "III"
    assert channel_label(channel(source=("2:62", "MDC", "aVR, augmented voltage, right")), 0) == "aVR"
    assert channel_label(channel(source=("2:10", "MDC", "Lead V2R")), 0) == "V2R"  # no table entry: the meaning
    assert channel_label(channel("Pleth", source=("2:1", "MDC", "Lead I")), 0) == "Pleth"
    assert channel_label(channel(), 2) == "channel 3"


def test_hemodynamic_in_mmhg_with_baseline(tmp_path):
    ds, stored = hemodynamic_file(tmp_path)
    (group,) = waveform_groups(ds)
    assert group.labels == ["ART", "PA"] and group.units == ["mmHg", "mmHg"]
    assert np.array_equal(group.values, stored * 0.1 * 1.0 + np.array([0.0, 5.0]))
    assert np.array_equal(group.values, ds.waveform_array(0))  # pydicom applies the baseline as well
    assert not is_ecg(ds, group) and not is_audio(ds)


def test_mulaw_values_are_linear(tmp_path):
    ds, tone, codes = mulaw_audio_file(tmp_path)
    (group,) = waveform_groups(ds)
    # mu-law keeps ~3% relative precision: far from the codes (0-255) pydicom would scale
    assert np.max(np.abs(group.values[:, 0] - tone)) <= 0.04 * 20000
    assert not np.allclose(ds.waveform_array(0), group.values)


def test_g711_tables_match_audioop():
    audioop = pytest.importorskip("audioop")  # the stdlib's G.711, until Python 3.13
    codes = np.arange(256, dtype=np.uint8)
    for law, expand in (("MB", audioop.ulaw2lin), ("AB", audioop.alaw2lin)):
        expected = np.frombuffer(expand(codes.tobytes(), 2), "<i2")
        assert np.array_equal(g711_to_linear(codes, law), expected)


@pytest.mark.parametrize("claims, reason", [
    ({"NumberOfWaveformChannels": 3}, "claims 3 channels but defines 2"),
    ({"NumberOfWaveformSamples": 150}, "fewer than its 150 samples x 2 channels x 2 bytes"),
    ({"NumberOfWaveformSamples": 50}, "more than its 50 samples"),
    ({"WaveformBitsAllocated": 12}, "12 bits allocated"),
    ({"SamplingFrequency": 0}, "sampling frequency of 0 Hz"),
    ({"SamplingFrequency": -250}, "sampling frequency of -250 Hz"),
])
def test_lies_are_corrupt(tmp_path, claims, reason):
    ds = small_group_file(tmp_path, **claims)
    with pytest.raises(CorruptFile, match=reason):
        waveform_groups(ds)


def test_short_data_is_corrupt(tmp_path):
    stored = np.zeros((100, 2), np.int16)
    ds = waveform_file(tmp_path / "short.dcm", "1.2.840.10008.5.1.4.1.1.9.1.2", stored, 500, "SS",
                       [channel("I"), channel("II")], data=bytes(300))
    with pytest.raises(CorruptFile, match="300 bytes of Waveform Data, fewer than"):
        waveform_groups(ds)
    with pytest.raises(CorruptFile, match="fewer than"):
        write_audio(ds, tmp_path / "short.wav")


def test_no_waveform_sequence_is_corrupt():
    with pytest.raises(CorruptFile, match="no Waveform Sequence"):
        waveform_groups(Dataset())


# -----------------------------------------------------------------------------
# The header
# -----------------------------------------------------------------------------

def test_header_has_time_rate_filters_and_annotations(ecg, groups):
    header = waveform_header(ecg, groups[0])
    for text in ("12-lead ECG", "2013-01-25 10:59:19", "1000 Hz", "filters 0.05-300 Hz, no notch",
                 "RITMO SINUSALE", "ECG NORMALE", "QT Interval 368 ms", "QRS Axis 52°"):
        assert text in header
    assert "Fiducial" not in header and "P Onset" not in header  # markers of positions, not text
    # the annotations name group 1 only; the median beat's leads I lacks filter values
    median = waveform_header(ecg, groups[1])
    assert "QT Interval" not in median and "(II, III," in median


def test_the_header_names_the_patient_unless_redacted_and_gives_the_heart_rate(ecg, groups):
    """waveform_ecg.dcm gives no heart rate but an RR Interval of 982 ms: 61 bpm from the file."""
    main, _ = main_and_median(groups)
    lines = header_lines(ecg, main, identify=True)
    assert lines[0] == "Anonymous · ID 642341 · 2013-01-25 10:59:19"  # the name has no given part
    (rate,) = [part for part in lines[-1].split("; ") if part.startswith("HR ")]
    assert rate == "HR 61 bpm (from the file's RR interval)"
    assert 40 <= heart_rate(ecg, main)[0] <= 200
    anonymous = "\n".join(header_lines(ecg, main))  # identify is off unless asked for
    assert "Anonymous" not in anonymous and "642341" not in anonymous and "HR 61 bpm" in anonymous
    shown = as_shown(ecg, Options(redact_salt="test"))  # as --redact hands it to the writer
    redacted = "\n".join(header_lines(shown, main, identify=False))
    assert "Anonymous" not in redacted and "642341" not in redacted and "2013" not in redacted
    assert "HR 61 bpm (from lead II R peaks)" in redacted  # the profile removes the annotations
    assert not any(line.startswith("HR") for line in header_lines(ecg, groups[1]))  # one beat gives no rate


def without_annotations(ecg):
    """waveform_ecg.dcm with its Waveform Annotation Sequence removed: no measurement to read."""
    import copy

    bare = copy.deepcopy(ecg)
    del bare.WaveformAnnotationSequence
    return bare


def test_the_heart_rate_from_lead_ii_agrees_with_the_files_rr_interval(ecg, groups):
    main, _ = main_and_median(groups)
    rate, source = heart_rate(without_annotations(ecg), main)
    assert source == "from lead II R peaks" and rate == pytest.approx(60000 / 982, abs=1.5)
    peaks = r_peaks(main.values[:, main.labels.index("II")], main.rate)
    assert len(peaks) in (10, 11) and (np.diff(peaks) > 900).all() and (np.diff(peaks) < 1060).all()
    assert not len(r_peaks(np.zeros(5000), 1000)) and not len(r_peaks(np.full(5000, np.nan), 1000))


def with_heart_rate(ecg, code, value):
    """waveform_ecg.dcm with one more annotation of group 1: a Numeric Value `value` /min under
    the concept `code` (value, scheme, meaning), as a cart that measures the rate writes it."""
    import copy

    marked = copy.deepcopy(ecg)
    item, name, unit = Dataset(), Dataset(), Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = code
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "/min", "UCUM", "/min"
    item.ConceptNameCodeSequence, item.MeasurementUnitsCodeSequence = Sequence([name]), Sequence([unit])
    item.NumericValue, item.ReferencedWaveformChannels = value, [1, 0]
    marked.WaveformAnnotationSequence.append(item)
    return marked


@pytest.mark.parametrize("code", [("8867-4", "LN", "Heart rate"), ("2:16016", "MDC", "Ventricular Heart Rate"),
                                  ("X-1", "99LOCAL", "Ventricular heart rate")])
def test_a_heart_rate_the_file_measured_comes_first(ecg, groups, code):
    main, _ = main_and_median(groups)
    lines = header_lines(with_heart_rate(ecg, code, 72), main)
    assert "HR 72 bpm (from the file)" in lines[-1]


@pytest.mark.parametrize("name, shown", [
    ("DOE^John^Q^Dr^Jr", "DOE, Dr John Q, Jr"), ("Anonymous", "Anonymous"), ("^Madonna", "Madonna"),
    ("a^b^c^d^e^f^g", "a b c d e f g"),  # not a PN: as stored, no crash
])
def test_the_patient_is_family_first(name, shown):
    ds = Dataset()
    ds.PatientName = name
    assert patient_line(ds) == shown


def test_a_date_that_does_not_parse_is_shown_as_stored():
    import warnings

    ds = Dataset()
    with warnings.catch_warnings():  # pydicom warns of the invalid DT, which is the point
        warnings.simplefilter("ignore")
        ds.PatientName, ds.PatientID, ds.AcquisitionDateTime = "Smith^Anna", "77", "yesterday"
    assert patient_line(ds) == "Smith, Anna · ID 77 · yesterday"
    ds.AcquisitionDateTime = "20240229083000"
    assert patient_line(ds, "2024-02-29 08:30:00") == "Smith, Anna · ID 77 · 2024-02-29 08:30:00"


def test_the_page_prints_the_patient_line_only_without_redact(tmp_path):
    """The converted pages: under --redact the header is one line shorter (no patient line), so
    the grid starts one text line higher."""
    source = get_testdata_file("waveform_ecg.dcm", download=False)
    tops = []
    for flags in ((), ("--redact",)):
        out = tmp_path / ("redacted" if flags else "plain")
        run = run_cli(source, "-o", out, *flags)
        assert run.returncode == 0, run.stdout + run.stderr
        (png,) = [p for p in out.glob("*.png") if not p.name.endswith("_median.png")]
        tops.append(grid_top_of(np.asarray(Image.open(png).convert("RGB"))))
    assert tops[0] - tops[1] == round(TEXT_PX * 1.25)


# -----------------------------------------------------------------------------
# ECG paper
# -----------------------------------------------------------------------------

def is_dark(pixels):
    return np.all(pixels < 90, axis=-1)


def grid_top_of(page):
    """The first pixel row of the grid: where the grid's left edge (a 5 mm line) turns pink."""
    left = ECG_MARGIN_MM * PX
    return int(np.flatnonzero(np.all(page[:, left + 6] == MINOR, axis=-1) | np.all(page[:, left + 6] == MAJOR, axis=-1))[0])


def assert_trace_follows(page, values_mv, rate, baseline, x_start, t_start, t_end, skip=0.3):
    """In every pixel column of [t_start + skip, t_end), the black pixels near `baseline` span
    the samples drawn there, at 25 mm/s (x = x_start + (t - t_start) x 25 x PX) and
    10 mm/mV (y = baseline - mV x 10 x PX), within 2 px (the 3 px pen reaches 1.5 px across a steep segment, hence the
    samples of 2.5 px either side)."""
    band = slice(baseline - 10 * PX, baseline + 15 * PX)  # below the lead's name, above the next row
    dark = is_dark(page[band])
    px_per_s = PAPER_SPEED * PX
    checked = 0
    for x in range(round(x_start + skip * px_per_s), round(x_start + (t_end - t_start) * px_per_s) - 2):
        first = max(0, int(np.floor((x - 2.5 - x_start) / px_per_s * rate + t_start * rate)))
        last = int(np.ceil((x + 2.5 - x_start) / px_per_s * rate + t_start * rate)) + 1
        ys = baseline - values_mv[first:last] * GAIN * PX - band.start
        rows = np.flatnonzero(dark[:, x])
        if ys.min() < 2:  # a wave reaching above the band: its ink may all be above it here
            assert not rows.size or rows.max() <= ys.max() + 2
            continue
        assert rows.size, f"no trace in column {x}"
        assert rows.min() >= ys.min() - 2 and rows.max() <= ys.max() + 2, (x, rows.min(), rows.max(), ys.min(), ys.max())
        checked += 1
    assert checked > 0.5 * (t_end - t_start) * px_per_s


def test_rhythm_strip_lead_ii_at_25_mm_s_and_10_mm_mv(page, groups):
    lead_ii = groups[0].values[:, 1] / 1000  # µV to mV
    baseline = ecg_baseline(grid_top_of(page), 3)
    assert_trace_follows(page, lead_ii, 1000, baseline, ecg_x0(), 0.0, 10.0)


def test_r_peak_where_25_mm_s_puts_it(page, groups):
    lead_ii = groups[0].values[:, 1] / 1000
    peak = 1000 + int(np.argmax(lead_ii[1000:2000]))  # the R wave in the rhythm strip's 2nd second
    baseline = ecg_baseline(grid_top_of(page), 3)
    top = baseline - round(lead_ii[peak] * GAIN * PX)
    x = ecg_x0() + peak / 1000 * PAPER_SPEED * PX
    columns = np.flatnonzero(is_dark(page[top - 1:top + 2, round(x) - 30:round(x) + 30]).any(axis=0))
    assert abs(round(x) - 30 + columns.mean() - x) <= 2


def test_each_column_shows_its_own_window(page, groups):
    # aVR (row 0, column 1) shows 2.5-5 s at x0 + t x 25 mm/s; V6 (row 2, column 3) 7.5-10 s
    top = grid_top_of(page)
    for lead, row, column in (("aVR", 0, 1), ("V6", 2, 3), ("I", 0, 0)):
        values = groups[0].values[:, STANDARD_LEADS.index(lead)] / 1000
        t0 = column * 2.5
        assert_trace_follows(page, values, 1000, ecg_baseline(top, row),
                             ecg_x0() + t0 * PAPER_SPEED * PX, t0, t0 + 2.5)


def test_calibration_pulse_is_10_mm_by_5_mm(page):
    baseline = ecg_baseline(grid_top_of(page), 0)
    pulse = ECG_MARGIN_MM * PX + 2 * PX  # where ecg_page starts it
    middle = is_dark(page[baseline - 15 * PX:baseline + 5 * PX, pulse + 3 * PX])
    rows = np.flatnonzero(middle) + baseline - 15 * PX
    assert abs(rows.mean() - (baseline - 10 * PX)) <= 1  # the pulse's top: 1 mV = 10 mm up
    foot = np.flatnonzero(is_dark(page[baseline - 15 * PX:baseline + 5 * PX, pulse + PX // 2])) + baseline - 15 * PX
    assert abs(foot.mean() - baseline) <= 1
    edge_row = is_dark(page[baseline - 5 * PX, pulse:pulse + 8 * PX])  # half way up: the two edges
    edges = np.flatnonzero(edge_row)
    assert abs((edges.max() - edges.min()) - 5 * PX) <= 3  # 200 ms at 25 mm/s


def test_grid_is_1_mm_and_5_mm(page):
    top = grid_top_of(page)
    row = page[top + 6]  # inside the first 1 mm square: vertical lines only
    minor = np.flatnonzero(np.all(row == MINOR, axis=-1))
    major = np.flatnonzero(np.all(row == MAJOR, axis=-1))
    assert set(np.diff(minor)) <= {12, 24}  # 1 mm apart, a major line where one is missing
    starts = major[np.diff(major, prepend=-10) > 1]  # each 5 mm line is 2 px wide
    assert set(np.diff(starts)) == {5 * PX} and len(major) in (2 * len(starts) - 1, 2 * len(starts))  # the right edge's has 1
    assert set(minor - starts[0]) <= set(range(0, 10_000, PX))
    column = page[:, starts[-2] + 6]  # right of the traces
    assert set(np.diff(np.flatnonzero(np.all(column[top:] == MAJOR, axis=-1))[::2])) == {5 * PX}


def test_page_size(ecg, groups):
    main, _ = main_and_median(groups)
    page = ecg_page(main, waveform_header(ecg, main))
    height, width, _ = page.shape
    assert page.dtype == np.uint8
    assert width / PX <= 297 and height / PX <= 210  # prints on A4 landscape at true scale
    assert PX * 25.4 >= 300


def test_median_beat_page(ecg, groups):
    _, median = main_and_median(groups)
    page = ecg_page(median, waveform_header(ecg, median))
    top = grid_top_of(page)
    assert page.shape[0] - top <= (3 * ECG_ROW_MM + 15) * PX  # three rows: no rhythm strip
    for lead, row, column in (("II", 1, 0), ("aVR", 0, 1), ("V3", 2, 2)):
        values = median.values[:, STANDARD_LEADS.index(lead)] / 1000
        left = ecg_x0() + column * 1.2 * PAPER_SPEED * PX  # every column: the whole 1.2 s beat
        assert_trace_follows(page, values, 1000, ecg_baseline(top, row), left, 0.0, 1.2, skip=0.1)


def test_two_lead_general_ecg_is_one_strip_a_lead(tmp_path):
    ds = small_group_file(tmp_path)
    (group,) = waveform_groups(ds)
    assert is_ecg(ds, group)
    page = ecg_page(group, waveform_header(ds, group))
    top = grid_top_of(page)
    assert page.shape[0] - top <= (2 * ECG_ROW_MM + 15) * PX
    assert_trace_follows(page, group.values[:, 1] / 1000, 500, ecg_baseline(top, 1), ecg_x0(), 0.0, 0.2, skip=0.02)


# -----------------------------------------------------------------------------
# Strips
# -----------------------------------------------------------------------------

def test_hemodynamic_strips_in_mmhg(tmp_path):
    ds, _ = hemodynamic_file(tmp_path)
    (group,) = waveform_groups(ds)
    page = strips_page(group, waveform_header(ds, group))
    frame = np.all(page[:, STRIP_LEFT + 200] == (128, 128, 128), axis=-1)
    edges = np.flatnonzero(frame)
    assert len(edges) == 4  # two strips, top and bottom edge each
    for k, (top, bottom) in enumerate(zip(edges[::2], edges[1::2])):
        assert bottom - top == STRIP_HEIGHT
        low, high = value_range(group.values[:, k])
        for t in (0.5, 1.3, 2.9):
            x = round(STRIP_LEFT + t / group.duration * STRIP_WIDTH)
            expected = top + (high - group.values[round(t * 250), k]) / (high - low) * STRIP_HEIGHT
            rows = np.flatnonzero(is_dark(page[top + 1:bottom, x])) + top + 1
            assert abs(rows.mean() - expected) <= 3


def test_nice_ticks():
    assert list(nice_ticks(0, 10)) == [0, 2, 4, 6, 8, 10]
    assert list(nice_ticks(76, 124)) == [80, 90, 100, 110, 120]


# -----------------------------------------------------------------------------
# CSV and WAV
# -----------------------------------------------------------------------------

def test_csv_is_every_sample_in_physical_units(ecg, groups, tmp_path):
    path = tmp_path / "ecg.csv"
    write_waveform_csv(groups[0], path)
    data = path.read_bytes()
    assert b"\r" not in data
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time (s)"] + [f"{lead} (µV)" for lead in STANDARD_LEADS]
    table = np.array(rows[1:], dtype=np.float64)
    assert table.shape == (10000, 13)
    assert np.array_equal(table[:, 1:], ecg.waveform_array(0))
    assert np.array_equal(table[:, 0], np.arange(10000) / 1000)


def test_csv_of_pressures(tmp_path):
    ds, _ = hemodynamic_file(tmp_path)
    (group,) = waveform_groups(ds)
    write_waveform_csv(group, tmp_path / "hemo.csv")
    with open(tmp_path / "hemo.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time (s)", "ART (mmHg)", "PA (mmHg)"]
    assert np.array_equal(np.array(rows[1:], dtype=float)[:, 1:], group.values)


def test_mulaw_audio_to_wav(tmp_path):
    ds, tone, codes = mulaw_audio_file(tmp_path)
    assert is_audio(ds)
    write_audio(ds, tmp_path / "voice.wav")
    with wave.open(str(tmp_path / "voice.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, 8000, 4000)
        samples = np.frombuffer(wav.readframes(4000), "<i2")
    assert np.array_equal(samples, g711_to_linear(codes[:, 0], "MB"))
    assert np.max(np.abs(samples - tone)) <= 0.04 * 20000


def test_stereo_audio_is_interleaved(tmp_path):
    """General Audio (PS3.3 A.34.10): two 16-bit channels, a ramp up and a ramp down, 44.1 kHz."""
    stored = np.column_stack([np.arange(-500, 500), np.arange(500, -500, -1)]).astype(np.int16)
    ds = waveform_file(tmp_path / "stereo.dcm", "1.2.840.10008.5.1.4.1.1.9.4.2", stored, 44100, "SS",
                       [channel("left"), channel("right")])
    write_audio(ds, tmp_path / "stereo.wav")
    with wave.open(str(tmp_path / "stereo.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 44100)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert np.array_equal(frames, stored)


def test_pcm16_of_other_interpretations():
    assert list(pcm16(np.array([[0], [128], [255]], np.uint8), "UB")[:, 0]) == [-32768, 0, 32512]
    assert list(pcm16(np.array([[-128], [1]], np.int8), "SB")[:, 0]) == [-32768, 256]
    assert list(pcm16(np.array([[0], [65535]], np.uint16), "US")[:, 0]) == [-32768, 32767]
    assert list(pcm16(np.array([[-(2**31)], [2**31 - 1]], np.int32), "SL")[:, 0]) == [-32768, 32767]


# -----------------------------------------------------------------------------
# Through the command line
# -----------------------------------------------------------------------------

def test_an_ecg_becomes_paper_a_median_page_and_a_csv(tmp_path):
    source = get_testdata_file("waveform_ecg.dcm", download=False)
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ("12-lead ECG, 12 channels x 10 s at 1000 Hz, on ECG paper (25 mm/s, 10 mm/mV), its median beat "
            "group on a page of its own") in run.stdout
    out = tmp_path / "out"
    with Image.open(out / "waveform_ecg.png") as page, Image.open(out / "waveform_ecg_median.png") as median:
        assert page.mode == median.mode == "RGB" and page.size == (3420, 2348 + round(TEXT_PX * 1.25))  # the patient's line
    with open(out / "waveform_ecg.csv", encoding="utf-8") as f:
        head = next(csv.reader(f))
    assert head[:3] == ["time (s)", "I (µV)", "II (µV)"]
    ((item,),) = [card["items"] for card in index_cards(out / "index.html")]
    assert item["image"] == "waveform_ecg.png"
    assert {"waveform_ecg_median.png", "waveform_ecg.csv"} <= {url for _, url in item["links"]}


def test_audio_becomes_a_wav_in_the_index_and_is_withheld_under_redact(tmp_path):
    ds, _, codes = mulaw_audio_file(tmp_path)
    run = run_cli(tmp_path / "voice.dcm", "-o", tmp_path / "out")
    assert run.returncode == 0 and "Basic Voice Audio as WAV" in run.stdout, run.stdout + run.stderr
    with wave.open(str(tmp_path / "out" / "voice.wav"), "rb") as wav:
        assert np.array_equal(np.frombuffer(wav.readframes(4000), "<i2"), g711_to_linear(codes[:, 0], "MB"))
    ((item,),) = [card["items"] for card in index_cards(tmp_path / "out" / "index.html")]
    assert item["audio"] == "voice.wav"
    run = run_cli(tmp_path / "voice.dcm", "-o", tmp_path / "redacted", "--redact")
    assert run.returncode == 0 and "the Basic Voice Audio is withheld" in run.stdout, run.stdout + run.stderr
    assert not list((tmp_path / "redacted").glob("*.wav"))


def test_under_redact_the_header_holds_no_date_or_annotation_text(ecg, groups):
    """The page's header is drawn from the dataset as --redact shows it: the profile empties the
    acquisition date and removes the Waveform Annotation Sequence, whose free text can name people."""
    main, _ = main_and_median(groups)
    assert "2013-01-25" in waveform_header(ecg, main) and "RITMO SINUSALE" in waveform_header(ecg, main)
    shown = as_shown(ecg, Options(redact_salt="test"))
    header = waveform_header(shown, main)
    assert "2013" not in header and "RITMO" not in header and "1000 Hz" in header


def test_pressures_convert_to_strips_and_csv(tmp_path):
    _, stored = hemodynamic_file(tmp_path)
    run = run_cli(tmp_path / "hemo.dcm", "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Hemodynamic Waveform, 2 channels x 4 s at 250 Hz, as strips" in run.stdout
    with open(tmp_path / "out" / "hemo.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time (s)", "ART (mmHg)", "PA (mmHg)"]
    assert float(rows[1][1]) == pytest.approx(stored[0, 0] * 0.1) and float(rows[1][2]) == pytest.approx(stored[0, 1] * 0.1 + 5)
