"""User helpers: Go durations, Go-style timestamps, metadata merge."""

import pytest

from emulator.users import merge, parse_go_duration, timestamp


@pytest.mark.parametrize(("text", "seconds"), [
    ("24h", 86400), ("1h30m", 5400), ("876000h", 876000 * 3600), ("0", 0), ("1.5s", 1.5),
    ("-5s", -5), ("300ms", 0.3),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("10", 'time: missing unit in duration "10"'),
    ("", 'time: invalid duration ""'),
    ("h", 'time: invalid duration "h"'),
])
def test_bad_go_durations(text, message):
    with pytest.raises(ValueError, match=message):
        parse_go_duration(text)


def test_timestamps_trim_fraction_like_go():
    assert timestamp(1_800_000_000.0) == "2027-01-15T08:00:00Z"
    assert timestamp(1_800_000_000.25) == "2027-01-15T08:00:00.25Z"
    assert timestamp(None) is None


def test_merge_deletes_null_keys():
    assert merge({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}
