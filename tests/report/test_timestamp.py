"""Log lines' time stamps: what datetime's isoformat says, computed without datetime (issue 13)."""

from __future__ import annotations

import datetime
import os
import random
import time
from collections.abc import Iterator

import pytest

from pymgmt.report.textline import timestamp


@pytest.fixture
def zone() -> Iterator[None]:
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize(
    "tz", ["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata", "Europe/Amsterdam"]
)
def test_the_time_stamp_is_datetimes_isoformat_to_the_millisecond(tz: str, zone: None) -> None:
    os.environ["TZ"] = tz  # St John's: -03:30; Amsterdam before 1937: +00:19:32
    time.tzset()
    rng = random.Random(13)
    now = time.time()
    moments = [rng.uniform(-1.5e9, 2.5e9) for _ in range(2000)]
    moments += [now + rng.random() for _ in range(2000)]
    moments += [round(now, 3) + 0.0005, 0.0, -0.5, 1e9 + 0.9999995]  # halves and carries
    for t in moments:
        want = datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")
        assert timestamp(t) == want, t
