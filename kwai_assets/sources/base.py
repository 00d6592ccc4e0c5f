"""What every source provides: the four contract tables, interactions by day."""
from __future__ import annotations

from datetime import date
from typing import Protocol

import pandas as pd


class Source(Protocol):
    def interactions(self, start: date, end: date) -> pd.DataFrame:
        """Contract interactions with start <= ts < end, plus `pdate` (YYYY-MM-DD of ts)."""

    def users(self) -> pd.DataFrame: ...

    def items(self) -> pd.DataFrame: ...

    def pois(self) -> pd.DataFrame: ...

    def date_range(self) -> tuple[date, date]:
        """First and last day that hold interactions."""


def slice_days(interactions: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """Rows of a whole-history table whose ts falls in [start, end), with `pdate` added."""
    ts = interactions["ts"]
    out = interactions[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))].copy()
    out["pdate"] = out["ts"].dt.strftime("%Y-%m-%d")
    return out.reset_index(drop=True)


def days_of(interactions: pd.DataFrame) -> tuple[date, date]:
    ts = interactions["ts"]
    return ts.min().date(), ts.max().date()
