"""Clean interactions in index space: the table every model trains on."""
from __future__ import annotations

import duckdb
import pandas as pd

from kwai_assets.core.sql import frame

# clean interactions joined to their indices (tables clean, maps, item_attributes; standard SQL, both engines)
INDEX_SPACE = """
    SELECT u.idx AS user_idx, i.idx AS item_idx, coalesce(p.idx, 0) AS poi_idx,
           coalesce(c.idx, 0) AS category_idx, clean.ts, clean.lat, clean.lon, clean.event, clean.seq
    FROM clean
    LEFT JOIN maps u ON u.entity = 'user' AND u.raw_id = clean.user_id
    LEFT JOIN maps i ON i.entity = 'item' AND i.raw_id = clean.item_id
    LEFT JOIN maps p ON p.entity = 'poi' AND p.raw_id = clean.poi_id
    LEFT JOIN item_attributes a ON a.item_id = clean.item_id
    LEFT JOIN maps c ON c.entity = 'category' AND c.raw_id = a.category
    ORDER BY user_idx, ts, clean.seq, item_idx, clean.event NULLS LAST, poi_idx, clean.lat NULLS LAST,
             clean.lon NULLS LAST
"""
UNMAPPED = "{} user/item ids of clean_interactions are not in id_maps; re-materialize id_maps"


def to_index_space(clean: pd.DataFrame, id_maps: pd.DataFrame, item_attributes: pd.DataFrame) -> pd.DataFrame:
    """user_idx, item_idx, poi_idx (0 = none), category_idx (the item's), ts, lat, lon, event, seq.

    Sorted by (user_idx, ts, seq, item_idx). Every user and item of `clean` must be
    in `id_maps`; a missing one is an error, not a silently dropped row.
    """
    with duckdb.connect() as con:
        for name, df in (("clean", clean), ("maps", id_maps), ("item_attributes", item_attributes)):
            con.register(name, df)
        out = frame(con, INDEX_SPACE)
    unmapped = out["user_idx"].isna().sum() + out["item_idx"].isna().sum()
    if unmapped:
        raise ValueError(UNMAPPED.format(unmapped))
    return out.astype({"user_idx": "int64", "item_idx": "int64", "poi_idx": "int64", "category_idx": "int64"})


def index_problems(df: pd.DataFrame) -> list[str]:
    """Every user and item index >= 1, rows sorted by (user_idx, ts)."""
    problems = []
    if (unindexed := int((df["user_idx"] < 1).sum() + (df["item_idx"] < 1).sum())):
        problems.append(f"{unindexed} rows without a user or item index")
    order = df[["user_idx", "ts"]]
    if not (order.sort_values(["user_idx", "ts"], kind="stable").index == order.index).all():
        problems.append("rows are not sorted by (user_idx, ts)")
    return problems
