"""Raw ids -> contiguous int indices, stable across re-materializations.

Index 0 is reserved for padding. An id keeps its index forever: a new build
copies every earlier (entity, raw_id, idx) row verbatim and appends ids it has
not seen, in first-seen order, after the current maximum. Ids that later drop
out of the data keep their index (it is never reused), so vectors and models
trained on an earlier map stay valid.
"""
from __future__ import annotations

import duckdb
import pandas as pd

ENTITIES = ("user", "item", "poi", "category")
COLUMNS = ["entity", "raw_id", "idx", "generation"]


def first_seen_sql(key: str) -> str:
    """Distinct non-null ids of `key` in table `clean`, ordered by first timestamp, then id (both engines)."""
    if key not in ("user_id", "item_id", "poi_id"):
        raise ValueError(f"not an id column of clean_interactions: {key!r}")
    return f"SELECT {key} FROM clean WHERE {key} IS NOT NULL GROUP BY 1 ORDER BY min(ts), 1"


def first_seen(clean: pd.DataFrame, key: str) -> list[str]:
    """Distinct non-null ids of `key` ordered by first timestamp, then id."""
    with duckdb.connect() as con:
        con.register("clean", clean)
        rows = con.sql(first_seen_sql(key)).fetchall()
    return [r[0] for r in rows]


def extend_id_maps(previous: pd.DataFrame | None, ids: dict[str, list[str]]) -> pd.DataFrame:
    """Return `previous` plus every id of `ids` it lacks, appended per entity.

    `generation` numbers the builds: rows added by build g have generation g and
    indices above every row of earlier builds.
    """
    unknown = set(ids) - set(ENTITIES)
    if unknown:
        raise ValueError(f"unknown entities {sorted(unknown)}; expected a subset of {ENTITIES}")
    if previous is None or previous.empty:
        previous = pd.DataFrame({"entity": pd.Series(dtype="str"), "raw_id": pd.Series(dtype="str"),
                                 "idx": pd.Series(dtype="int64"), "generation": pd.Series(dtype="int64")})
    generation = int(previous["generation"].max()) + 1 if len(previous) else 1
    parts = [previous[COLUMNS]]
    for entity, raw_ids in ids.items():
        known = previous.loc[previous["entity"] == entity]
        seen = set(known["raw_id"])
        new = [r for r in dict.fromkeys(raw_ids) if r not in seen]
        start = int(known["idx"].max()) + 1 if len(known) else 1
        parts.append(pd.DataFrame({
            "entity": entity, "raw_id": pd.Series(new, dtype="str"),
            "idx": pd.Series(range(start, start + len(new)), dtype="int64"), "generation": generation,
        }))
    out = pd.concat(parts, ignore_index=True)
    out["generation"] = out["generation"].astype("int64")
    return out.sort_values(["entity", "idx"], kind="stable").reset_index(drop=True)


def index_sizes(id_maps: pd.DataFrame) -> dict[str, int]:
    """entity -> size of its index space (max idx + 1, padding included)."""
    top = id_maps.groupby("entity")["idx"].max()
    return {entity: int(top.get(entity, 0)) + 1 for entity in ENTITIES}


def id_map_problems(df: pd.DataFrame) -> list[str]:
    """Per entity: raw ids and indices unique, indices exactly 1..n, later generations above earlier ones."""
    problems = []
    for entity, part in df.groupby("entity"):
        idx = part["idx"].sort_values().to_numpy()
        if part["raw_id"].duplicated().any() or part["idx"].duplicated().any():
            problems.append(f"{entity}: duplicate raw ids or indices")
        if len(idx) and (idx[0] != 1 or idx[-1] != len(idx)):
            problems.append(f"{entity}: indices span {idx[0]}..{idx[-1]} for {len(idx)} ids, expected 1..{len(idx)}")
        by_idx = part.sort_values("idx")["generation"].to_numpy()
        if (by_idx[1:] < by_idx[:-1]).any():
            problems.append(f"{entity}: an id of an earlier generation has a higher index than a later one")
    return problems
