"""[ingest] Raw tables exactly as the source delivers them.

Assets: raw_interactions (daily partitions), raw_users, raw_items, raw_pois.
Checks: raw_interactions_schema, raw_users_keys, raw_items_keys, raw_pois_keys.
"""
import dagster as dg
import pandas as pd

from kwai_assets.assets.common import DAILY, check_result, guard
from kwai_assets.core.attributes import key_problems
from kwai_assets.resources import SourceResource, WarehouseResource
from kwai_assets.sources.contract import (
    MIN_ITEMS,
    MIN_RATIO,
    MIN_ROWS_PER_DAY,
    MIN_USERS,
    delivery_problems,
    raw_schema_problems,
)


class DeliveryConfig(dg.Config):
    """A delivery below these is refused before anything stored is replaced."""

    min_users: int = MIN_USERS
    min_items: int = MIN_ITEMS
    min_rows_per_day: int = MIN_ROWS_PER_DAY
    min_ratio: float = MIN_RATIO      # of the stored days' mean rows per day


@dg.asset(
    group_name="ingest", partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "pdate"}, kinds={"parquet"},
)
def raw_interactions(context: dg.AssetExecutionContext, config: DeliveryConfig, source: SourceResource,
                     warehouse: WarehouseResource) -> dg.Output[pd.DataFrame]:
    """One row per click, one file per day (`pdate`); a range of days runs as one read."""
    window = context.partition_time_window
    df = source.get().interactions(window.start.date(), window.end.date())
    wh = warehouse.get()
    stored = wh.partitions("raw_interactions")
    previous = wh.rows("raw_interactions") / len(stored) if stored else None
    problems = delivery_problems(df, min_users=config.min_users, min_items=config.min_items,
                                 min_rows_per_day=config.min_rows_per_day, previous_rows_per_day=previous,
                                 min_ratio=config.min_ratio)
    if problems:
        raise dg.Failure(description="delivery refused, nothing stored was replaced: " + "; ".join(problems[:5]))
    return dg.Output(df, metadata={"days": len(context.partition_keys), "users": df["user_id"].nunique(),
                                   "items": df["item_id"].nunique()})


@dg.asset_check(asset=raw_interactions, blocking=True)
def raw_interactions_schema(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every stored day has the contract's columns with the contract's types."""
    wh = warehouse.get()
    days = wh.partitions("raw_interactions")
    problems = [p for day in days for p in raw_schema_problems(wh.schema("raw_interactions", day), day)]
    return check_result(problems, f"{len(days)} days follow the contract", days=len(days))


def _raw_table(name: str, key: str, read) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """`{name}` and its check `{name}_keys`."""

    @dg.asset(name=name, group_name="ingest", kinds={"parquet"},
              description=f"The {name.removeprefix('raw_')} table as delivered (one row per {key}, "
                          "attributes as text).")
    def _asset(context: dg.AssetExecutionContext, source: SourceResource) -> dg.Output[pd.DataFrame]:
        df = read(source.get())
        guard(context, name, df, key_problems(df, key, name))
        return dg.Output(df, metadata={"rows": len(df), "columns": ", ".join(df.columns)})

    @dg.asset_check(asset=name, name=f"{name}_keys", blocking=True,
                    description=f"{name} has a '{key}' column with no null value.")
    def _check(df: pd.DataFrame) -> dg.AssetCheckResult:
        return check_result(key_problems(df, key, name), f"{df[key].nunique()} distinct {key}s, none null")

    return _asset, _check


raw_users, raw_users_keys = _raw_table("raw_users", "user_id", lambda s: s.users())
raw_items, raw_items_keys = _raw_table("raw_items", "item_id", lambda s: s.items())
raw_pois, raw_pois_keys = _raw_table("raw_pois", "poi_id", lambda s: s.pois())
