"""[ingest] Raw tables exactly as the source delivers them."""

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from kwai_assets.assets.common import DAILY, result
from kwai_assets.io.resources import SourceResource, WarehouseResource

RAW_INTERACTION_TYPES = {  # column -> arrow type family
    "user_id": "string", "item_id": "string", "poi_id": "string", "lat": "double", "lon": "double",
    "ts": "timestamp[us]", "event": "string", "pdate": "string",
}


@dg.asset(
    group_name="ingest", partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "pdate"}, kinds={"parquet"},
)
def raw_interactions(context: dg.AssetExecutionContext, source: SourceResource) -> dg.Output[pd.DataFrame]:
    """One row per click, one file per day (`pdate`); a range of days runs as one read."""
    window = context.partition_time_window
    df = source.get().interactions(window.start.date(), window.end.date())
    return dg.Output(df, metadata={"days": len(context.partition_keys), "users": df["user_id"].nunique(),
                                   "items": df["item_id"].nunique()})


@dg.asset_check(asset=raw_interactions, blocking=True)
def raw_interactions_schema(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every stored day has the contract's columns with the contract's types."""
    wh = warehouse.get()
    problems = []
    days = wh.partitions("raw_interactions")
    for day in days:
        schema = pq.read_schema(wh.path("raw_interactions", day))
        types = {f.name: str(f.type).replace("large_string", "string") for f in schema}
        problems += [f"{day}: {col} is {types.get(col, 'missing')}, expected {kind}"
                     for col, kind in RAW_INTERACTION_TYPES.items() if types.get(col) != kind]
    return result(not problems, "; ".join(problems[:5]) or "all days follow the contract",
                  days=len(days), problems=len(problems))


def _raw_table(name: str, key: str, read) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(name=name, group_name="ingest", kinds={"parquet"})
    def _asset(source: SourceResource) -> dg.Output[pd.DataFrame]:
        df = read(source.get())
        return dg.Output(df, metadata={"rows": len(df), "columns": ", ".join(df.columns)})

    @dg.asset_check(asset=name, name=f"{name}_keys", blocking=True)
    def _check(df: pd.DataFrame) -> dg.AssetCheckResult:
        if key not in df.columns:
            return result(False, f"{name} has no '{key}' column")
        nulls = int(df[key].isna().sum())
        return result(nulls == 0, f"{nulls} rows of {name} have no {key}", null_keys=nulls,
                      distinct_keys=df[key].nunique())

    _asset.__doc__ = f"The {name.removeprefix('raw_')} table as delivered (one row per {key}, attributes as text)."
    return _asset, _check


raw_users, raw_users_keys = _raw_table("raw_users", "user_id", lambda s: s.users())
raw_items, raw_items_keys = _raw_table("raw_items", "item_id", lambda s: s.items())
raw_pois, raw_pois_keys = _raw_table("raw_pois", "poi_id", lambda s: s.pois())
