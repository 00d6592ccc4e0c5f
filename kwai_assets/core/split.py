"""Per-user chronological train / val / test split (RecBole's 'TO' ordering).

For a user with n interactions sorted by time (ties in delivery order, `seq`:
MovieLens's file order, as the published splits keep them; then by item): the
last floor(n * test) go to test, the floor(n * val) before them to val, the
rest to train, the convention of the published MovieLens figures (ml-100k:
70,771 / 9,596 / 19,633 rows), so each part is within one interaction of its
ratio.
Leave-one-out puts the last interaction in test and the one before it in val.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from kwai_assets.core.sql import frame

SPLITS = ("train", "val", "test")


HISTORY = ("ts", "seq", "item_idx")   # a user's history order: time, then delivery order (file order), then item
TIES = ("event NULLS LAST", "poi_idx", "lat NULLS LAST", "lon NULLS LAST")   # after HISTORY, when present


def history_order(columns) -> list[str]:
    """The columns of HISTORY a table has (`seq` may be missing from a hand-made one): what every step that reads
    a user's history in order sorts on after `user_idx`, so all agree with the split."""
    return [c for c in HISTORY if c in columns]


def history_rows(splits: pd.DataFrame, parts=("train",)) -> pd.DataFrame:
    """The rows of the `parts` splits, each user's in history order."""
    rows = splits[splits["split"].isin(parts)]
    return rows.sort_values(["user_idx", *history_order(rows.columns)], kind="stable")


def held_back(splits: pd.DataFrame) -> pd.DataFrame:
    """`splits` with each user's last train rows, as many as the user has val rows, moved to split "held_back": a
    train history that ends as far before the val rows as the whole train history ends before the test rows
    (a validation that mirrors the test's horizon)."""
    train = history_rows(splits)
    n_val = splits[splits["split"] == "val"].groupby("user_idx").size()
    last = train.groupby("user_idx").cumcount(ascending=False) < train["user_idx"].map(n_val).fillna(0)
    out = splits.copy()
    out.loc[train.index[last.to_numpy()], "split"] = "held_back"
    return out


def positions(columns: list[str]) -> str:
    """Each row of table `interactions` with its position in its user's history (a total order: HISTORY, then
    the columns of TIES it has) and the history's length (standard SQL, both engines)."""
    order = ", ".join([*history_order(columns), *[t for t in TIES if t.split()[0] in columns]])
    return f"""SELECT *, row_number() OVER (PARTITION BY user_idx ORDER BY {order}) AS pos,
                  count(*) OVER (PARTITION BY user_idx) AS n
           FROM interactions"""


def split_rule(ratios: tuple[float, float, float] = (0.7, 0.1, 0.2), leave_one_out: bool = False) -> str:
    """The SQL CASE that names a row's split from `pos` and `n` (see POSITIONS)."""
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    _, val, test = ratios
    if leave_one_out:
        return "CASE WHEN pos = n THEN 'test' WHEN pos = n - 1 THEN 'val' ELSE 'train' END"
    n_test, n_val = f"floor(n * {test} + 1e-9)", f"floor(n * {val} + 1e-9)"
    return (f"CASE WHEN pos > n - {n_test} THEN 'test' "
            f"WHEN pos > n - {n_test} - {n_val} THEN 'val' ELSE 'train' END")


def split_by_user(interactions: pd.DataFrame, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  leave_one_out: bool = False) -> pd.DataFrame:
    """`interactions` (user_idx, item_idx, ts, ...) plus a `split` column."""
    rule = split_rule(ratios, leave_one_out)
    with duckdb.connect() as con:
        con.register("interactions", interactions)
        return frame(con, f"""
            SELECT * EXCLUDE (pos, n), {rule} AS split FROM ({positions(list(interactions.columns))})
            ORDER BY user_idx, pos
        """)


def split_problems(df: pd.DataFrame, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                   leave_one_out: bool = False) -> list[str]:
    """Per user: train before val before test, every user has train rows, val and test exactly
    floor(n * ratio) rows."""
    rank = df["split"].map({s: i for i, s in enumerate(SPLITS)})
    problems = []
    if (unknown := int(rank.isna().sum())):
        problems.append(f"{unknown} rows with a split outside {SPLITS}")
    ranked = df.assign(rank=rank).sort_values(["user_idx", "ts", "rank"], kind="stable")
    same_user = ranked["user_idx"].to_numpy()[1:] == ranked["user_idx"].to_numpy()[:-1]
    if (back := int((same_user & (ranked["rank"].to_numpy()[1:] < ranked["rank"].to_numpy()[:-1])).sum())):
        problems.append(f"{back} out-of-order rows (a later split before an earlier one in time)")
    sizes = pd.crosstab(df["user_idx"], df["split"]).reindex(columns=list(SPLITS), fill_value=0)
    if (no_train := int((sizes["train"] == 0).sum())):
        problems.append(f"{no_train} users without train rows")
    if not leave_one_out:
        n = sizes.sum(axis=1)
        off = int(sum((sizes[s] != np.floor(n * r + 1e-9)).sum() for s, r in zip(SPLITS[1:], ratios[1:], strict=True)))
        if off:
            problems.append(f"{off} user-splits whose val or test size is not floor(n * ratio)")
    return problems
