"""Time windows of the external-access policy, at fixed instants (the injectable clock)."""
from datetime import datetime, timezone

import pytest

from chalicelib.policy import in_window

BUSINESS = {"timezone": "Europe/Berlin", "windows": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]}


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize("instant,inside", [
    (ms(2026, 11, 23, 7, 0), True),     # Monday 08:00 Berlin (UTC+1): window opens (inclusive)
    (ms(2026, 11, 23, 6, 59), False),   # Monday 07:59 Berlin
    (ms(2026, 11, 23, 17, 0), False),   # Monday 18:00 Berlin: window closed (exclusive end)
    (ms(2026, 11, 28, 10, 0), False),   # Saturday
    (ms(2026, 7, 6, 6, 30), True),      # Monday 08:30 Berlin in summer time (UTC+2)
    (ms(2026, 7, 6, 5, 30), False),     # Monday 07:30 Berlin in summer time
])
def test_business_hours_in_the_tenants_zone(instant, inside):
    assert in_window(BUSINESS, instant) is inside
    assert in_window({**BUSINESS, "windowMode": "outside"}, instant) is (not inside)


def test_no_windows_means_always():
    assert in_window({"timezone": "Asia/Tokyo"}, ms(2026, 1, 1, 3, 0)) is True
