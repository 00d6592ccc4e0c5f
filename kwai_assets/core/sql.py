"""DuckDB helpers shared by the pure modules."""
from __future__ import annotations

import duckdb
import pandas as pd


def frame(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Run `query` and return a DataFrame through Arrow (several times faster than .df() on text)."""
    return con.sql(query).arrow().read_all().to_pandas()


# haversine_km (core/geo.py) as a DuckDB macro: `con.execute(KM_MACRO)`, then km(lat1, lon1, lat2, lon2)
KM_MACRO = ("CREATE MACRO km(lat1, lon1, lat2, lon2) AS 2 * 6371 * asin(sqrt(pow(sin(radians(lat2 - lat1) / 2), 2) "
            "+ cos(radians(lat1)) * cos(radians(lat2)) * pow(sin(radians(lon2 - lon1) / 2), 2)))")


def ident(name: str) -> str:
    """`name` as a quoted DuckDB identifier, inner double quotes doubled.

    Column names come from delivered files; quoted this way a header can never close
    the identifier and smuggle its own SQL into a query. Paths and other values go in
    as bound parameters instead, never through this.
    """
    return '"' + name.replace('"', '""') + '"'
