"""DuckDB helpers shared by the pure modules."""
from __future__ import annotations

import duckdb
import pandas as pd


def frame(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Run `query` and return a DataFrame through Arrow (several times faster than .df() on text)."""
    return con.sql(query).arrow().read_all().to_pandas()
