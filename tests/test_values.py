"""Values as people read them (`_dicom_converter.values`): names from PN components, dates,
times, ages and modalities; a value that does not parse is shown as it is, never a crash."""

from __future__ import annotations

import pytest
from pydicom.valuerep import PersonName

from _dicom_converter.values import (
    age_text,
    date_text,
    modality_text,
    person_name_listed,
    sex_text,
    time_of_day,
)


@pytest.mark.parametrize("stored, shown", [
    ("PHANTOM^Sample", "PHANTOM, Sample"),                  # family, then given
    ("Doe^John^Quincy^Dr.^Jr.", "Doe, Dr. John Quincy, Jr."),  # all five components
    ("Doe", "Doe"),                                         # family name only
    ("^John", "John"),                                      # given name only
    ("", ""),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou (山田, 太郎; やまだ, たろう)"),  # PS3.5 H.3
    ("=山田^太郎", "山田, 太郎"),                            # ideographic group only
    ("Wang^XiaoDong=王^小東=", "Wang, XiaoDong (王, 小東)"),  # an empty phonetic group left out
    ("A^B^C^D^E^F", "A B C D E F"),                         # six components: not a PN, nothing dropped
])
def test_person_names_are_listed_family_name_first(stored, shown):
    assert person_name_listed(stored) == shown
    assert person_name_listed(PersonName(stored)) == shown


def test_a_multi_valued_name_lists_each():
    assert person_name_listed(["Doe^Jane", "Roe^Richard"]) == "Doe, Jane; Roe, Richard"


@pytest.mark.parametrize("stored, shown", [
    ("20240115", "2024-01-15"), ("2024.01.15", "2024-01-15"),  # ACR-NEMA's dotted form
    ("2024-1-5", "2024-1-5"), ("garbage", "garbage"), ("", ""), (None, ""),
])
def test_dates_are_iso_8601_or_shown_as_stored(stored, shown):
    assert date_text(stored) == shown


@pytest.mark.parametrize("stored, shown", [
    ("140312.123", "14:03"), ("1403", "14:03"), ("14:03:12", "14:03"), ("14", "14"), ("noon", "noon"), ("", ""),
])
def test_times_of_day_are_hours_and_minutes(stored, shown):
    assert time_of_day(stored) == shown


@pytest.mark.parametrize("stored, shown", [
    ("045Y", "45 years"), ("001Y", "1 year"), ("003M", "3 months"), ("002W", "2 weeks"), ("010D", "10 days"),
    ("45", "45"), ("", ""),
])
def test_ages_in_words(stored, shown):
    assert age_text(stored) == shown


def test_modalities_are_spelled_out_with_their_code():
    assert modality_text("XA") == "XA · X-ray angiography"
    assert modality_text("ct") == "CT · computed tomography"
    assert modality_text("RTDOSE") == "RTDOSE · RT dose"
    assert modality_text("NEWTHING") == "NEWTHING"  # an unknown code as it is
    assert sex_text("F") == "female" and sex_text("") == ""
