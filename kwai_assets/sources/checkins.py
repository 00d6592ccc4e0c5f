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

from pathlib import Path

import duckdb
import pandas as pd

from kwai_assets.sources.contract import INTERACTIONS, ITEMS, POIS, USERS, ContractError, conform

NAMES = ("checkins.txt", "checkins.txt.gz", "checkins.tsv")
FOURSQUARE_TIME = "%a %b %d %H:%M:%S +0000 %Y"
LAYOUTS = {
    8: ("Foursquare", ("user_id", "venue_id", "venue_category_id", "venue_category", "latitude", "longitude",
                       "tz_offset_min", "utc_time")),
    5: ("Gowalla", ("user_id", "utc_time", "latitude", "longitude", "venue_id")),
}


def find(directory: Path) -> Path | None:
    return next((directory / n for n in NAMES if (directory / n).exists()), None)


def _problems(con: duckdb.DuckDBPyConnection, file: str, columns: tuple[str, ...], time: str) -> list[str]:
    def column(name: str) -> str:
        return f"column {columns.index(name) + 1} ({name})"

    checks = [(f"{time} IS NULL", "utc_time", "values that are not a UTC time"
               + (" like 'Tue Apr 03 18:00:09 +0000 2012'" if "venue_category" in columns else
                  " like '2010-10-19T23:55:27Z'"))]
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
        if len(found) not in LAYOUTS:
            raise ContractError(f"{file}: {len(found)} tab-separated columns; a check-in file has 8 (Foursquare: "
                                f"{', '.join(LAYOUTS[8][1])}) or 5 (Gowalla: {', '.join(LAYOUTS[5][1])})")
        layout, columns = LAYOUTS[len(found)]
        renamed = ", ".join(f"nullif(trim(\"{old}\"), '') AS {new}" for old, new in zip(found, columns, strict=True))
        con.execute(f"CREATE TEMP VIEW raw AS SELECT {renamed} FROM delivered")
        time = (f"try_strptime(utc_time, '{FOURSQUARE_TIME}')" if layout == "Foursquare"
                else "CAST(TRY_CAST(utc_time AS TIMESTAMPTZ) AS TIMESTAMP)")
        if problems := _problems(con, file, columns, time):
            raise ContractError("\n".join(problems))
        category = "venue_category" if layout == "Foursquare" else "NULL"
        # Gowalla gives no offset: local solar time, 60 minutes per 15 degrees of longitude
        offset = ("CAST(tz_offset_min AS DOUBLE)" if layout == "Foursquare"
                  else "round(CAST(longitude AS DOUBLE) / 15) * 60")
        con.execute(f"""CREATE TEMP TABLE visits AS SELECT user_id, venue_id, {category} AS category,
                        CAST(latitude AS DOUBLE) AS lat, CAST(longitude AS DOUBLE) AS lon, {time} AS ts,
                        {offset} AS utc_offset_min FROM raw""")
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

