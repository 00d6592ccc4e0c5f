"""A check-in file in the layout of the public Foursquare or Gowalla data sets, as the four contract tables.

Both are tab-separated without a header; the layout is told by the number of columns:

- Foursquare (TSMC2014 NYC / TKY), 8 columns: user, venue, venue category id,
  venue category, latitude, longitude, timezone offset (minutes), UTC time
  ("Tue Apr 03 18:00:09 +0000 2012").
- Gowalla (SNAP loc-gowalla_totalCheckins), 5 columns: user, UTC time
  ("2010-10-19T23:55:27Z"), latitude, longitude, location.

A venue is both the item and the POI; the POI's coordinates are the median of
its check-ins', its category that of its first check-in, its UTC offset the
most frequent one of its check-ins (kept as the POI attribute
`utc_offset_min`, so that the hour of week of a check-in is local while `ts`
stays UTC as the contract says). One offset per venue puts the check-ins on
the other side of a daylight-saving change an hour off (TSMC2014 NYC spans
one). Gowalla gives no offset: its venues get local solar time, 60 minutes
per 15 degrees of longitude.
Coordinates out of range, times that do not parse and users with a single
check-in are refused, each problem naming the file, the column and how many
rows have it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.sources.contract import INTERACTIONS, ITEMS, POIS, USERS, ContractError, conform

NAMES = ("checkins.txt", "checkins.txt.gz", "checkins.tsv")


@dataclass(frozen=True)
class Layout:
    """One public layout: its columns in order, and SQL over them for the check-in's time, category, UTC offset."""
    name: str
    columns: tuple[str, ...]
    time: str                  # NULL where the value does not parse
    time_example: str
    category: str
    offset: str


LAYOUTS = {layout.name: layout for layout in (
    Layout("Foursquare", ("user_id", "venue_id", "venue_category_id", "venue_category", "latitude", "longitude",
                          "tz_offset_min", "utc_time"),
           time="try_strptime(utc_time, '%a %b %d %H:%M:%S +0000 %Y')", time_example="Tue Apr 03 18:00:09 +0000 2012",
           category="venue_category", offset="CAST(tz_offset_min AS DOUBLE)"),
    # Gowalla gives no offset: local solar time, 60 minutes per 15 degrees of longitude
    Layout("Gowalla", ("user_id", "utc_time", "latitude", "longitude", "venue_id"),
           time="CAST(TRY_CAST(utc_time AS TIMESTAMPTZ) AS TIMESTAMP)", time_example="2010-10-19T23:55:27Z",
           category="NULL", offset="round(CAST(longitude AS DOUBLE) / 15) * 60"),
)}
BY_WIDTH = {len(layout.columns): layout for layout in LAYOUTS.values()}


def find(directory: Path) -> Path | None:
    return next((directory / n for n in NAMES if (directory / n).exists()), None)


def _problems(con: duckdb.DuckDBPyConnection, file: str, layout: Layout) -> list[str]:
    columns = layout.columns

    def column(name: str) -> str:
        return f"column {columns.index(name) + 1} ({name})"

    checks = [(f"{layout.time} IS NULL", "utc_time", f"values that are not a UTC time like '{layout.time_example}'")]
    for name, bound in (("latitude", 90), ("longitude", 180)):
        checks.append((f"TRY_CAST({name} AS DOUBLE) IS NULL OR abs(TRY_CAST({name} AS DOUBLE)) > {bound}", name,
                       f"values that are not a number in [-{bound}, {bound}]"))
    if "tz_offset_min" in columns:
        checks.append(("TRY_CAST(tz_offset_min AS DOUBLE) IS NULL", "tz_offset_min", "values that are not minutes"))
    problems = []
    for condition, name, what in checks:
        n, example = con.execute(f"SELECT count(*), any_value({name}) FROM raw WHERE {condition}").fetchall()[0]
        if n:
            problems.append(f"{file}: {column(name)} has {n} {what}, e.g. {example!r}")
    n, example = con.execute("SELECT count(*), any_value(user_id) FROM (SELECT user_id FROM raw GROUP BY user_id "
                             "HAVING count(*) = 1)").fetchall()[0]
    if n:
        problems.append(f"{file}: {column('user_id')} has {n} users with a single check-in, e.g. {example!r}; "
                        f"a sequence needs two (drop them, or deliver more days)")
    return problems


def _read(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The file as the table `delivered`, all text; UTF-8, else Latin-1 (some public exports are)."""
    for encoding in ("utf-8", "latin-1"):
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE delivered AS SELECT * FROM read_csv($path, header = false, "
                        "delim = '\t', all_varchar = true, quote = '', escape = '', encoding = $encoding)",
                        {"path": str(path), "encoding": encoding})
            return
        except duckdb.Error as err:
            error = err
    raise ContractError(f"{path.name}: cannot be read as a tab-separated check-in file: {error}") from error


def read_checkins(path: Path) -> dict[str, pd.DataFrame]:
    """The interactions, users, items and pois tables of a Foursquare or Gowalla check-in file."""
    file = path.name
    if path.stat().st_size == 0:
        raise ContractError(f"{file}: the file is empty (0 check-ins)")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        _read(con, path)
        found = [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE delivered)").fetchall()]
        if len(found) not in BY_WIDTH:
            raise ContractError(f"{file}: {len(found)} tab-separated columns; a check-in file has " + " or ".join(
                f"{len(layout.columns)} ({layout.name}: {', '.join(layout.columns)})" for layout in LAYOUTS.values()))
        layout = BY_WIDTH[len(found)]
        renamed = ", ".join(f"nullif(trim(\"{old}\"), '') AS {new}"
                            for old, new in zip(found, layout.columns, strict=True))
        con.execute(f"CREATE TEMP VIEW raw AS SELECT {renamed} FROM delivered")
        if problems := _problems(con, file, layout):
            raise ContractError("\n".join(problems))
        con.execute(f"""CREATE TEMP TABLE visits AS SELECT user_id, venue_id, {layout.category} AS category,
                        CAST(latitude AS DOUBLE) AS lat, CAST(longitude AS DOUBLE) AS lon, {layout.time} AS ts,
                        {layout.offset} AS utc_offset_min FROM raw""")
        views = {
            "interactions": "SELECT user_id, venue_id AS item_id, venue_id AS poi_id, lat, lon, ts, "
                            "'checkin' AS event FROM visits ORDER BY user_id, ts, venue_id",
            "users": "SELECT DISTINCT user_id FROM visits ORDER BY user_id",
            "items": "SELECT venue_id AS item_id, venue_id AS poi_id, arg_min(category, ts) AS category "
                     "FROM visits GROUP BY venue_id ORDER BY venue_id",
            "pois": "SELECT venue_id AS poi_id, median(lat) AS lat, median(lon) AS lon, arg_min(category, ts) AS "
                    "category, CAST(mode(utc_offset_min) AS BIGINT) AS utc_offset_min "
                    "FROM visits GROUP BY venue_id ORDER BY venue_id",
        }
        out = {}
        for (name, sql), spec in zip(views.items(), (INTERACTIONS, USERS, ITEMS, POIS), strict=True):
            con.execute(f"CREATE TEMP VIEW {name}_view AS {sql}")
            out[name] = conform(con, f"{name}_view", spec, file)
        return out

