"""Per-user chronological train / val / test split (RecBole's 'TO' ordering).

For a user with n interactions sorted by (ts, item): the first round(n * train)
go to train, up to round(n * (train + val)) to val, the rest to test, so each
part is within one interaction of its ratio. Leave-one-out puts the last
interaction in test and the one before it in val.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from kwai_assets.core.sql import frame

SPLITS = ("train", "val", "test")


def split_by_user(interactions: pd.DataFrame, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  leave_one_out: bool = False) -> pd.DataFrame:
    """`interactions` (user_idx, item_idx, ts, ...) plus a `split` column."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    train, val, _ = ratios
    if leave_one_out:
        rule = "CASE WHEN pos = n THEN 'test' WHEN pos = n - 1 THEN 'val' ELSE 'train' END"
    else:
        rule = (f"CASE WHEN pos <= round(n * {train}) THEN 'train' "
                f"WHEN pos <= round(n * {train + val}) THEN 'val' ELSE 'test' END")
    with duckdb.connect() as con:
        con.register("interactions", interactions)
        return frame(con, f"""
            SELECT * EXCLUDE (pos, n), {rule} AS split FROM (
                SELECT *,
                       row_number() OVER (PARTITION BY user_idx ORDER BY ts, item_idx) AS pos,
                       count(*) OVER (PARTITION BY user_idx) AS n
                FROM interactions)
            ORDER BY user_idx, ts, item_idx
        """)
