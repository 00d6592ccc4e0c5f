"""GroupLens MovieLens from a local directory: ml-100k or ml-1m layout.

Every rating is an interaction (event ``rating_<r>``, ``seq`` its line in the
file, so ratings with the same timestamp keep the file's order, as the
published splits do); there are no POIs or coordinates. The primary (first
listed) genre is the item's category.
"""
from __future__ import annotations

from datetime import date
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.sources.base import days_of, slice_days
from kwai_assets.sources.contract import INTERACTIONS, ITEMS, USERS, TableSpec, conform

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


def _columns(names: list[str]) -> str:
    """read_csv's `columns` struct literal, all text; `names` are this module's fixed layout names, never read."""
    return "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"


class MovieLensSource:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if (self.directory / "u.data").exists():
            self.layout = "ml-100k"
        elif (self.directory / "ratings.dat").exists():
            self.layout = "ml-1m"
        else:
            raise FileNotFoundError(
                f"movielens source: {self.directory} holds neither u.data (ml-100k) nor ratings.dat (ml-1m); "
                "fetch ml-100k with shared/data/fetch_ml100k.sh DIR and set KWAI_DATA_DIR=DIR"
            )

    def _read(self, name: str, names: list[str], delim: str, spec: TableSpec, select: str) -> pd.DataFrame:
        path = self.directory / name
        if not path.exists():
            raise FileNotFoundError(f"movielens source: {path} is missing ({self.layout} layout)")
        with duckdb.connect() as con:
            # the path is a bound parameter, never SQL text: a directory name may hold a quote
            con.execute(
                f"CREATE TEMP TABLE file AS SELECT * FROM read_csv($path, delim = $delim, header = false, "
                f"quote = '', encoding = 'latin-1', columns = {_columns(names)})",
                {"path": str(path), "delim": delim},
            )   # insertion order is kept, so a row's rowid is its line in the file (0-based)
            con.execute(f"CREATE TEMP TABLE delivered AS SELECT {select} FROM file")
            return conform(con, "delivered", spec, name)

    @cached_property
    def _interactions(self) -> pd.DataFrame:
        name, delim = ("u.data", "\t") if self.layout == "ml-100k" else ("ratings.dat", "::")
        select = ("user_id, item_id, NULL AS poi_id, NULL AS lat, NULL AS lon, ts, "
                  "'rating_' || rating AS event, rowid AS seq")
        return self._read(name, ["user_id", "item_id", "rating", "ts"], delim, INTERACTIONS, select)

    def interactions(self, start: date, end: date) -> pd.DataFrame:
        return slice_days(self._interactions, start, end)

    def users(self) -> pd.DataFrame:
        if self.layout == "ml-100k":
            return self._read("u.user", ["user_id", "age", "gender", "occupation", "zip"], "|", USERS, "*")
        return self._read("users.dat", ["user_id", "gender", "age", "occupation", "zip"], "::", USERS, "*")

    def items(self) -> pd.DataFrame:
        if self.layout == "ml-1m":
            return self._read(
                "movies.dat", ["item_id", "title", "genres"], "::", ITEMS,
                "item_id, title, split_part(genres, '|', 1) AS category, genres",
            )
        flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
        genres = "list_filter([" + ", ".join(
            f"CASE WHEN g{i} = '1' THEN '{g.replace(chr(39), chr(39) * 2)}' END" for i, g in enumerate(ML100K_GENRES)
        ) + "], lambda x: x IS NOT NULL)"
        return self._read(
            "u.item", ["item_id", "title", "release", "video_release", "url", *flags], "|", ITEMS,
            f"item_id, title, release, coalesce({genres}[1], 'unknown') AS category, "
            f"array_to_string({genres}, '|') AS genres",
        )

    def pois(self) -> pd.DataFrame:
        return pd.DataFrame({"poi_id": pd.Series([], dtype="str")})

    def date_range(self) -> tuple[date, date]:
        return days_of(self._interactions)
