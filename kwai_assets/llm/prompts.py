"""One JSON document and one prompt per user and per item, from the train split only.

A user's document: who (delivered attributes), where (home cell, travel
radius, the most visited POIs with category and cell), when (parts of the
day, top hours, weekend share) and what (the photo categories watched). An
item's: what and where it is, who interacts (the audience's attribute mix)
and when.

Aggregation is DuckDB SQL returning one row per user / item with ranked
lists; Python only assembles the JSON. Length is bounded by summarising,
never by cutting text: lists are top-N and N shrinks until the prompt's
estimated token count fits ``max_tokens``.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd

from kwai_assets.core.sql import KM_MACRO
from kwai_assets.llm.text import count_tokens, render

USER_TASK = "Summarise the spatio-temporal preferences of this user."
ITEM_TASK = "Summarise who watches this photo, where and when."
DAY_PART = ("CASE WHEN hour(ts) < 6 THEN 'night' WHEN hour(ts) < 12 THEN 'morning' "
            "WHEN hour(ts) < 18 THEN 'afternoon' ELSE 'evening' END")
WEEKEND = "(dayofweek(ts) IN (0, 6))::INT"


@dataclass(frozen=True)
class PromptConfig:
    max_tokens: int = 512        # estimated tokens per prompt; lists shrink to fit
    top_places: int = 10         # most visited POIs listed, at most
    top_categories: int = 8      # most watched categories listed, at most


def _bounded(task: str, build: Callable[[int, int], dict], config: PromptConfig) -> tuple[dict, str, int]:
    """Halve the top-N lists (down to none) until the prompt fits, keeping whole records.

    What is left when both lists are empty (profile, home, day parts, hours) is
    the floor: about 100 tokens, returned even if `max_tokens` is lower.
    """
    places, categories = config.top_places, config.top_categories
    while True:
        document = build(places, categories)
        prompt = render(task, document)
        tokens = count_tokens(prompt)
        if tokens <= config.max_tokens or (places == 0 and categories == 0):
            return document, prompt, tokens
        places, categories = places // 2, categories // 2


def _cell(lat: float | None, lon: float | None) -> str | None:
    """A ~1 km grid cell: coordinates rounded to 0.01 degree."""
    return None if lat is None or lon is None or lat != lat or lon != lon else f"{lat:.2f},{lon:.2f}"


def _shares(pairs: list[dict] | None, limit: int | None = None) -> dict[str, float]:
    return {p["k"]: round(p["v"], 2) for p in (pairs or [])[:limit]}


def _connect(splits: pd.DataFrame, id_maps: pd.DataFrame, user_attributes: pd.DataFrame,
             poi_attributes: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    """Train rows plus lookups from index space to readable names."""
    con = duckdb.connect()
    con.execute(KM_MACRO)
    con.register("splits", splits)
    con.register("maps", id_maps)
    con.register("poi_attributes", poi_attributes)
    con.register("user_attributes", user_attributes)
    poi_name = "coalesce(a.name, a.category, 'poi ' || m.raw_id)" if "name" in poi_attributes.columns \
        else "coalesce(a.category, 'poi ' || m.raw_id)"
    con.execute(f"""
        CREATE TEMP TABLE train AS SELECT * FROM splits WHERE split = 'train';
        CREATE TEMP TABLE category_name AS SELECT idx, raw_id AS name FROM maps WHERE entity = 'category';
        CREATE TEMP TABLE poi AS
            SELECT m.idx, {poi_name} AS name, a.category, a.lat, a.lon
            FROM maps m JOIN poi_attributes a ON a.poi_id = m.raw_id WHERE m.entity = 'poi';
        CREATE TEMP TABLE person AS
            SELECT m.idx, a.* EXCLUDE (user_id, n_interactions, has_attributes)
            FROM maps m JOIN user_attributes a ON a.user_id = m.raw_id WHERE m.entity = 'user';
    """)
    return con


def _text_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [name for name, kind in con.sql(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
            if kind == "VARCHAR"]


def _ranked(key: str, value: str, source: str, limit: int) -> str:
    """SQL: per `key`, a list of {k, v} with v the share of `value` among the key's rows, descending."""
    return f"""
        SELECT {key}, list({{'k': k, 'v': v}} ORDER BY v DESC, k)[:{limit}] AS ranked FROM (
            SELECT {key}, CAST({value} AS VARCHAR) AS k, count(*) / sum(count(*)) OVER (PARTITION BY {key}) AS v
            FROM {source} GROUP BY 1, 2) GROUP BY 1"""


def _records(con: duckdb.DuckDBPyConnection, query: str) -> list[dict]:
    return con.sql(query).arrow().read_all().to_pylist()


def user_prompts(splits: pd.DataFrame, id_maps: pd.DataFrame, user_attributes: pd.DataFrame,
                 poi_attributes: pd.DataFrame, config: PromptConfig = PromptConfig()) -> pd.DataFrame:
    """user_idx, document (JSON), prompt, prompt_tokens: one row per user with train interactions."""
    with _connect(splits, id_maps, user_attributes, poi_attributes) as con:
        profile = ", ".join(f"'{c}': p.\"{c}\"" for c in _text_columns(con, "person"))
        rows = _records(con, f"""
            WITH home AS (
                SELECT user_idx, count(*) AS n, median(lat) AS lat, median(lon) AS lon, avg({WEEKEND}) AS weekend
                FROM train GROUP BY 1),
            radius AS (
                SELECT t.user_idx, quantile_cont(km(h.lat, h.lon, t.lat, t.lon), 0.9) AS km
                FROM train t JOIN home h USING (user_idx) GROUP BY 1),
            parts AS ({_ranked("user_idx", DAY_PART, "train", 4)}),
            hours AS ({_ranked("user_idx", "hour(ts)", "train", 3)}),
            categories AS ({_ranked("user_idx", "c.name", "train t JOIN category_name c ON c.idx = t.category_idx",
                                    config.top_categories)}),
            places AS (
                SELECT user_idx, list({{'name': name, 'category': category, 'lat': lat, 'lon': lon, 'visits': visits}}
                                      ORDER BY visits DESC, name)[:{config.top_places}] AS places
                FROM (SELECT t.user_idx, p.name, p.category, p.lat, p.lon, count(*) AS visits
                      FROM train t JOIN poi p ON p.idx = t.poi_idx GROUP BY ALL) GROUP BY 1)
            SELECT h.user_idx, h.n, h.lat, h.lon, h.weekend, r.km, parts.ranked AS parts, hours.ranked AS hours,
                   categories.ranked AS categories, places.places, {{{profile or "'none': NULL"}}} AS profile
            FROM home h LEFT JOIN radius r USING (user_idx) LEFT JOIN parts USING (user_idx)
            LEFT JOIN hours USING (user_idx) LEFT JOIN categories USING (user_idx) LEFT JOIN places USING (user_idx)
            LEFT JOIN person p ON p.idx = h.user_idx ORDER BY h.user_idx""")

    def build(row: dict) -> Callable[[int, int], dict]:
        def document(n_places: int, n_categories: int) -> dict:
            doc: dict = {"profile": {k: v for k, v in (row["profile"] or {}).items() if v not in (None, "unknown")},
                         "interactions": row["n"]}
            if (home := _cell(row["lat"], row["lon"])) is not None:
                doc["home_cell"], doc["travel_radius_km"] = home, round(row["km"], 1)
            doc["day_parts"] = _shares(row["parts"])
            doc["top_hours"] = [int(p["k"]) for p in row["hours"] or []]
            doc["weekend_share"] = round(row["weekend"], 2)
            if n_categories:
                doc["categories"] = _shares(row["categories"], n_categories)
            if row["places"] and n_places:
                doc["places"] = [{"name": p["name"], "category": p["category"], "cell": _cell(p["lat"], p["lon"]),
                                  "visits": p["visits"]} for p in row["places"][:n_places]]
            return doc
        return document

    return _frame("user_idx", rows, USER_TASK, build, config)


def item_prompts(splits: pd.DataFrame, id_maps: pd.DataFrame, user_attributes: pd.DataFrame,
                 poi_attributes: pd.DataFrame, config: PromptConfig = PromptConfig()) -> pd.DataFrame:
    """item_idx, document (JSON), prompt, prompt_tokens: one row per item with train interactions."""
    with _connect(splits, id_maps, user_attributes, poi_attributes) as con:
        audience = _text_columns(con, "person")
        mixes = "".join(f", {c} AS ({_ranked('item_idx', f'p.{c}', audience_source, config.top_categories)})"
                        for c, audience_source in ((c, "train t JOIN person p ON p.idx = t.user_idx")
                                                   for c in audience))
        rows = _records(con, f"""
            WITH items AS (
                SELECT t.item_idx, count(*) AS n, count(DISTINCT t.user_idx) AS users, any_value(c.name) AS category,
                       any_value(p.name) AS poi, any_value(p.lat) AS lat, any_value(p.lon) AS lon,
                       avg({WEEKEND.replace('ts', 't.ts')}) AS weekend
                FROM train t LEFT JOIN category_name c ON c.idx = t.category_idx LEFT JOIN poi p ON p.idx = t.poi_idx
                GROUP BY 1),
            parts AS ({_ranked("item_idx", DAY_PART, "train", 4)}){mixes}
            SELECT items.*, parts.ranked AS parts{"".join(f", {c}.ranked AS {c}" for c in audience)}
            FROM items LEFT JOIN parts USING (item_idx){"".join(f" LEFT JOIN {c} USING (item_idx)" for c in audience)}
            ORDER BY item_idx""")

    def build(row: dict) -> Callable[[int, int], dict]:
        def document(n_places: int, n_categories: int) -> dict:
            doc: dict = {"category": row["category"] or "unknown", "interactions": row["n"], "users": row["users"]}
            if row["poi"] is not None:
                doc["poi"] = row["poi"]
                if (cell := _cell(row["lat"], row["lon"])) is not None:
                    doc["cell"] = cell
            doc["day_parts"] = _shares(row["parts"])
            doc["weekend_share"] = round(row["weekend"], 2)
            doc["audience"] = {c: {k: v for k, v in _shares(row[c], n_categories).items() if k != "unknown"}
                               for c in audience}
            return doc
        return document

    return _frame("item_idx", rows, ITEM_TASK, build, config)


def _frame(key: str, rows: list[dict], task: str, build: Callable[[dict], Callable[[int, int], dict]],
           config: PromptConfig) -> pd.DataFrame:
    out = []
    for row in rows:
        document, prompt, tokens = _bounded(task, build(row), config)
        out.append((row[key], json.dumps(document, ensure_ascii=False), prompt, tokens))
    return pd.DataFrame(out, columns=[key, "document", "prompt", "prompt_tokens"])


def prompt_problems(df: pd.DataFrame, splits: pd.DataFrame, key: str, limit: int) -> list[str]:
    """One prompt per `key` of the train split, within `limit` tokens, counting that entity's train rows only."""
    train = splits[splits["split"] == "train"].groupby(key).size()
    counted = pd.Series([json.loads(d)["interactions"] for d in df["document"]], index=df[key])
    problems = []
    if (missing := len(set(train.index) - set(df[key]))):
        problems.append(f"{missing} {key} values of the train split without a prompt")
    if (over := int((df["prompt_tokens"] > limit).sum())):
        problems.append(f"{over} prompts over {limit} tokens")
    if (miscount := int((counted != train.reindex(counted.index)).sum())):
        problems.append(f"{miscount} prompts counting other than their train interactions")
    if (recount := int((df["prompt"].map(count_tokens) != df["prompt_tokens"]).sum())):
        problems.append(f"{recount} prompts whose prompt_tokens does not match the text")
    return problems
