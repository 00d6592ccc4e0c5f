"""Shared pieces of the asset layer: partitions and check helpers."""

import dagster as dg
import pandas as pd

from kwai_assets.settings import Settings

DAILY = dg.DailyPartitionsDefinition(start_date=Settings.from_env().start_date)


def materialized_metadata(context: dg.AssetCheckExecutionContext, asset: str) -> dict[str, object]:
    """Metadata of the asset's latest materialization: the parameters it was built with."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def missing_columns(df: pd.DataFrame, required: list[str]) -> list[str]:
    return [c for c in required if c not in df.columns]


def result(passed: bool, description: str, **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=bool(passed), description=description,
                               metadata={k: _plain(v) for k, v in metadata.items()})


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars, for Dagster metadata."""
    return value.item() if hasattr(value, "item") else value
