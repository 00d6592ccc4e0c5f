"""[prepare] Raw logs -> clean interactions -> attributes -> id maps -> index space -> splits.

Assets: clean_interactions, user_attributes, item_attributes, poi_attributes, id_maps, interactions, splits.
Checks: clean_interactions_kcore, {user,item,poi}_attributes_join_loss, id_maps_bijective, interactions_indexed,
splits_chronological.
"""

import dagster as dg
import pandas as pd

from kwai_assets.assets.common import check_result, engines_agree, guard, materialized_metadata
from kwai_assets.core.attributes import join_loss_problems
from kwai_assets.core.clean import kcore_problems, newest_days
from kwai_assets.core.index_space import index_problems
from kwai_assets.core.reid import extend_id_maps, id_map_problems
from kwai_assets.core.split import split_problems
from kwai_assets.core.steps import digest
from kwai_assets.resources import EngineResource, WarehouseResource
from kwai_assets.sources.contract import ITEMS, POIS, USERS, TableSpec


class CleanConfig(dg.Config):
    k: int = 10                       # iterative k-core on users and items
    window_days: int | None = None    # keep only the newest N stored days; None = all


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def clean_interactions(context: dg.AssetExecutionContext, config: CleanConfig, engine: EngineResource,
                       raw_interactions: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Valid, deduplicated clicks in which every user and item has at least k rows."""
    raw = newest_days(raw_interactions, config.window_days)
    df, report = engine.steps().clean_interactions(raw, k=config.k)
    guard(context, "clean_interactions", df, kcore_problems(df, config.k))
    days = sorted(raw["pdate"].unique())
    return dg.Output(df, metadata={**report.as_metadata(), "k": config.k, "days": len(days), "engine": engine.kind,
                                   "first_day": days[0] if days else "", "last_day": days[-1] if days else ""})


@dg.asset_check(asset=clean_interactions, blocking=True)
def clean_interactions_kcore(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
    """No null keys, and every user and item has at least k interactions."""
    k = int(materialized_metadata(context, "clean_interactions").get("k", 1))
    return check_result(kcore_problems(df, k), f"{len(df)} rows, every user and item with at least k={k}", k=k)


class AttributeConfig(dg.Config):
    max_missing_fraction: float = 0.05   # the check fails when more ids than this lack attributes


def _attributes(entity: str, raw: str, spec: TableSpec) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """`{entity}_attributes` and its check `{entity}_attributes_join_loss`."""
    name = f"{entity}_attributes"

    @dg.asset(name=name, group_name="prepare", kinds={"duckdb", "parquet"},
              ins={"clean": dg.AssetIn("clean_interactions"), "table": dg.AssetIn(raw)},
              description=f"Every {entity} of clean_interactions with its {raw} attributes; none dropped, "
                          f"missing text attributes are 'unknown' and has_attributes is false.")
    def _asset(context: dg.AssetExecutionContext, config: AttributeConfig, engine: EngineResource,
               clean: pd.DataFrame, table: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        df, report = engine.steps().attributes(clean, table, spec)
        guard(context, name, df, join_loss_problems(df, config.max_missing_fraction, entity, raw))
        return dg.Output(df, metadata={**report.as_metadata(), "max_missing_fraction": config.max_missing_fraction,
                                       "engine": engine.kind})

    @dg.asset_check(asset=name, name=f"{name}_join_loss", blocking=True,
                    description=f"At most max_missing_fraction of the {entity}s lack a row in {raw}.")
    def _check(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
        limit = float(materialized_metadata(context, name).get("max_missing_fraction", 0.05))
        return check_result(join_loss_problems(df, limit, entity, raw),
                            f"{int((~df['has_attributes']).sum())} of {len(df)} {entity}s lack attributes; "
                            f"limit {limit:.1%}", limit=limit)

    return _asset, _check


user_attributes, user_attributes_join_loss = _attributes("user", "raw_users", USERS)
item_attributes, item_attributes_join_loss = _attributes("item", "raw_items", ITEMS)
poi_attributes, poi_attributes_join_loss = _attributes("poi", "raw_pois", POIS)


@dg.asset(group_name="prepare", kinds={"parquet"})
def id_maps(context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource,
            clean_interactions: pd.DataFrame, item_attributes: pd.DataFrame,
            poi_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """(entity, raw_id, idx, generation) for user, item, poi, category; 0 is padding.

    Reads its own previous version and only appends, so indices never move.
    """
    previous = warehouse.get().read_if_exists("id_maps")
    categories = sorted(set(item_attributes["category"].dropna()) | set(poi_attributes["category"].dropna()))
    first_seen = engine.steps().first_seen
    maps = extend_id_maps(previous, {
        "user": first_seen(clean_interactions, "user_id"),
        "item": first_seen(clean_interactions, "item_id"),
        "poi": first_seen(clean_interactions, "poi_id"),
        "category": categories,
    })
    guard(context, "id_maps", maps, id_map_problems(maps))
    generation = int(maps["generation"].max()) if len(maps) else 0
    added = maps[maps["generation"] == generation].groupby("entity").size()
    counts = maps.groupby("entity").size()
    entities = ("user", "item", "poi", "category")
    return dg.Output(maps, metadata={"generation": generation, "engine": engine.kind,
                                     **{f"{e}s": int(counts.get(e, 0)) for e in entities},
                                     **{f"{e}s_added": int(added.get(e, 0)) for e in entities}})


@dg.asset_check(asset=id_maps, blocking=True)
def id_maps_bijective(df: pd.DataFrame) -> dg.AssetCheckResult:
    """Per entity: raw ids and indices unique, indices exactly 1..n, later generations above earlier ones."""
    return check_result(id_map_problems(df), "bijective, contiguous from 1, append-only",
                        entities=df["entity"].nunique())


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def interactions(engine: EngineResource, clean_interactions: pd.DataFrame, id_maps: pd.DataFrame,
                 item_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Clean interactions in index space, sorted by (user_idx, ts, item_idx)."""
    df = engine.steps().to_index_space(clean_interactions, id_maps, item_attributes)
    return dg.Output(df, metadata={"rows": len(df), "users": df["user_idx"].nunique(), "engine": engine.kind,
                                   "items": df["item_idx"].nunique()})


@dg.asset_check(asset=interactions, blocking=True)
def interactions_indexed(df: pd.DataFrame) -> dg.AssetCheckResult:
    """Every user and item index >= 1, rows sorted by (user_idx, ts)."""
    return check_result(index_problems(df), f"{len(df)} rows indexed and sorted")


class SplitConfig(dg.Config):
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2
    leave_one_out: bool = False    # last interaction -> test, the one before -> val


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def splits(context: dg.AssetExecutionContext, config: SplitConfig, engine: EngineResource,
           interactions: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """`interactions` plus `split` in {train, val, test}: per user, chronological."""
    ratios = (config.train, config.val, config.test)
    df = engine.steps().split_by_user(interactions, ratios, config.leave_one_out)
    guard(context, "splits", df, split_problems(df, ratios, config.leave_one_out))
    sizes = df["split"].value_counts()
    return dg.Output(df, metadata={**{s: int(sizes.get(s, 0)) for s in ("train", "val", "test")},
                                   **{f"{s}_ratio": r for s, r in zip(("train", "val", "test"), ratios, strict=True)},
                                   "leave_one_out": config.leave_one_out, "engine": engine.kind,
                                   "input_digest": digest(interactions, **config.model_dump()),
                                   "output_rows": len(df), "output_digest": digest(df)})


@dg.asset_check(asset=splits, blocking=True)
def splits_chronological(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
    """Per user: train before val before test, every user has train rows, sizes within one of the ratios."""
    meta = materialized_metadata(context, "splits")
    ratios = tuple(float(meta.get(f"{s}_ratio", d)) for s, d in (("train", 0.7), ("val", 0.1), ("test", 0.2)))
    return check_result(split_problems(df, ratios, bool(meta.get("leave_one_out", False))),
                        f"{df['user_idx'].nunique()} users split chronologically", users=df["user_idx"].nunique())


splits_engines_agree = engines_agree("splits")
