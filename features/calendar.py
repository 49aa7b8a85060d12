"""The exchange holiday calendar of the time features: NYSE holidays from the ``holidays`` package.

The calendar is published years ahead, so flagging a bar's date, or the next day, as a holiday
uses no market data after the bar (it is known at any bar's close).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CALENDAR = "NYSE"
_EPOCH = np.datetime64("1970-01-01", "D")


@lru_cache(maxsize=64)
def _holiday_days(first_year: int, last_year: int) -> np.ndarray:
    """Sorted epoch-day numbers of the calendar's holidays from ``first_year`` to ``last_year``."""
    import holidays

    dates = holidays.financial_holidays(CALENDAR, years=range(first_year, last_year + 1))
    days = np.array(sorted(dates), dtype="datetime64[D]")
    return (days - _EPOCH).astype(np.int64)


def holiday_flags(epoch_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(holiday, holiday_next_day)`` as float64 0/1 for UTC epoch-day numbers (days since 1970-01-01)."""
    epoch_day = np.asarray(epoch_day, dtype=np.int64)
    if not len(epoch_day):
        return np.zeros(0), np.zeros(0)
    years = (_EPOCH + np.array([epoch_day.min(), epoch_day.max() + 1], dtype="timedelta64[D]")).astype(
        "datetime64[Y]").astype(int) + 1970
    days = _holiday_days(int(years[0]), int(years[1]))
    return np.isin(epoch_day, days).astype(np.float64), np.isin(epoch_day + 1, days).astype(np.float64)
