"""[prepare] Raw logs -> clean interactions -> attributes -> id maps -> index space -> splits."""

import dagster as dg
import pandas as pd

from kwai_assets.assets.common import materialized_metadata, missing_columns, result
from kwai_assets.core.attributes import interaction_counts, join_attributes
from kwai_assets.core.clean import clean_interactions as clean
from kwai_assets.core.clean import newest_days
from kwai_assets.core.index_space import to_index_space
from kwai_assets.core.reid import extend_id_maps, first_seen
from kwai_assets.core.split import split_by_user
from kwai_assets.io.resources import WarehouseResource
from kwai_assets.sources.contract import ITEMS, POIS, USERS, TableSpec

KEYS = ["user_id", "item_id"]


class CleanConfig(dg.Config):
    k: int = 10                       # iterative k-core on users and items
    window_days: int | None = None    # keep only the newest N stored days; None = all


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def clean_interactions(config: CleanConfig, raw_interactions: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Valid, deduplicated clicks in which every user and item has at least k rows."""
    raw = newest_days(raw_interactions, config.window_days)
    df, report = clean(raw, k=config.k)
    days = sorted(raw["pdate"].unique())
    return dg.Output(df, metadata={**report.as_metadata(), "k": config.k, "days": len(days),
                                   "first_day": days[0] if days else "", "last_day": days[-1] if days else ""})


@dg.asset_check(asset=clean_interactions, blocking=True)
def clean_interactions_kcore(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
    """No null keys, and every user and item has at least k interactions."""
    if missing := missing_columns(df, KEYS + ["ts"]):
        return result(False, f"missing columns {missing}")
    k = int(materialized_metadata(context, "clean_interactions").get("k", 1))
    nulls = int(df[KEYS].isna().sum().sum())
    min_user = int(df.groupby("user_id").size().min()) if len(df) else 0
    min_item = int(df.groupby("item_id").size().min()) if len(df) else 0
    passed = len(df) > 0 and nulls == 0 and min(min_user, min_item) >= k
    return result(passed, f"{len(df)} rows, {nulls} null keys, fewest rows per user {min_user} / item {min_item}, k={k}",
                  null_keys=nulls, min_rows_per_user=min_user, min_rows_per_item=min_item, k=k)


class AttributeConfig(dg.Config):
    max_missing_fraction: float = 0.05   # the check fails when more ids than this lack attributes


def _attributes(entity: str, raw: str, spec: TableSpec) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    name, key = f"{entity}_attributes", spec.key

    @dg.asset(name=name, group_name="prepare", kinds={"duckdb", "parquet"},
              ins={"clean": dg.AssetIn("clean_interactions"), "table": dg.AssetIn(raw)})
    def _asset(config: AttributeConfig, clean: pd.DataFrame, table: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        df, report = join_attributes(interaction_counts(clean, key), table, spec)
        return dg.Output(df, metadata={**report.as_metadata(), "max_missing_fraction": config.max_missing_fraction})

    @dg.asset_check(asset=name, name=f"{name}_join_loss", blocking=True)
    def _check(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
        limit = float(materialized_metadata(context, name).get("max_missing_fraction", 0.05))
        missing = int((~df["has_attributes"]).sum())
        fraction = missing / max(len(df), 1)
        return result(fraction <= limit,
                      f"{missing} of {len(df)} {entity}s ({fraction:.1%}) have no row in {raw}; limit {limit:.1%}",
                      missing=missing, ids=len(df), missing_fraction=fraction, limit=limit)

    _asset.__doc__ = (f"Every {entity} of clean_interactions with its {raw} attributes; none dropped, "
                      f"missing text attributes are 'unknown' and has_attributes is false.")
    return _asset, _check


user_attributes, user_attributes_join_loss = _attributes("user", "raw_users", USERS)
item_attributes, item_attributes_join_loss = _attributes("item", "raw_items", ITEMS)
poi_attributes, poi_attributes_join_loss = _attributes("poi", "raw_pois", POIS)


@dg.asset(group_name="prepare", kinds={"parquet"})
def id_maps(warehouse: WarehouseResource, clean_interactions: pd.DataFrame, item_attributes: pd.DataFrame,
            poi_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """(entity, raw_id, idx, generation) for user, item, poi, category; 0 is padding.

    Reads its own previous version and only appends, so indices never move.
    """
    previous = warehouse.get().read_if_exists("id_maps")
    categories = sorted(set(item_attributes["category"].dropna()) | set(poi_attributes["category"].dropna()))
    maps = extend_id_maps(previous, {
        "user": first_seen(clean_interactions, "user_id"),
        "item": first_seen(clean_interactions, "item_id"),
        "poi": first_seen(clean_interactions, "poi_id"),
        "category": categories,
    })
    generation = int(maps["generation"].max()) if len(maps) else 0
    added = maps[maps["generation"] == generation].groupby("entity").size()
    counts = maps.groupby("entity").size()
    return dg.Output(maps, metadata={"generation": generation,
                                     **{f"{e}s": int(counts.get(e, 0)) for e in ("user", "item", "poi", "category")},
                                     **{f"{e}s_added": int(added.get(e, 0)) for e in ("user", "item", "poi", "category")}})


@dg.asset_check(asset=id_maps, blocking=True)
def id_maps_bijective(df: pd.DataFrame) -> dg.AssetCheckResult:
    """Per entity: raw ids and indices unique, indices exactly 1..n, later generations above earlier ones."""
    problems = []
    for entity, part in df.groupby("entity"):
        idx = part["idx"].sort_values().to_numpy()
        if part["raw_id"].duplicated().any() or part["idx"].duplicated().any():
            problems.append(f"{entity}: duplicate raw ids or indices")
        if len(idx) and (idx[0] != 1 or idx[-1] != len(idx)):
            problems.append(f"{entity}: indices span {idx[0]}..{idx[-1]} for {len(idx)} ids, expected 1..{len(idx)}")
        by_idx = part.sort_values("idx")["generation"].to_numpy()
        if (by_idx[1:] < by_idx[:-1]).any():
            problems.append(f"{entity}: an id of an earlier generation has a higher index than a later one")
    return result(not problems, "; ".join(problems) or "bijective, contiguous from 1, append-only",
                  entities=df["entity"].nunique(), problems=len(problems))


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def interactions(clean_interactions: pd.DataFrame, id_maps: pd.DataFrame,
                 item_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Clean interactions in index space, sorted by (user_idx, ts, item_idx)."""
    df = to_index_space(clean_interactions, id_maps, item_attributes)
    return dg.Output(df, metadata={"rows": len(df), "users": df["user_idx"].nunique(), "items": df["item_idx"].nunique()})


@dg.asset_check(asset=interactions, blocking=True)
def interactions_indexed(df: pd.DataFrame) -> dg.AssetCheckResult:
    """Every user and item index >= 1, rows sorted by (user_idx, ts)."""
    unindexed = int((df["user_idx"] < 1).sum() + (df["item_idx"] < 1).sum())
    order = df[["user_idx", "ts"]]
    is_sorted = bool((order.sort_values(["user_idx", "ts"], kind="stable").index == order.index).all())
    return result(unindexed == 0 and is_sorted, f"{unindexed} rows without index; sorted={is_sorted}",
                  unindexed=unindexed, sorted=is_sorted)


class SplitConfig(dg.Config):
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2
    leave_one_out: bool = False    # last interaction -> test, the one before -> val


@dg.asset(group_name="prepare", kinds={"duckdb", "parquet"})
def splits(config: SplitConfig, interactions: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """`interactions` plus `split` in {train, val, test}: per user, chronological."""
    df = split_by_user(interactions, (config.train, config.val, config.test), config.leave_one_out)
    sizes = df["split"].value_counts()
    return dg.Output(df, metadata={**{s: int(sizes.get(s, 0)) for s in ("train", "val", "test")},
                                   "ratios": f"{config.train}/{config.val}/{config.test}",
                                   "leave_one_out": config.leave_one_out})


@dg.asset_check(asset=splits, blocking=True)
def splits_chronological(context: dg.AssetCheckExecutionContext, df: pd.DataFrame) -> dg.AssetCheckResult:
    """Per user: train before val before test, every user has train rows, sizes within one of the ratios."""
    meta = materialized_metadata(context, "splits")
    order = {"train": 0, "val": 1, "test": 2}
    part = df.assign(rank=df["split"].map(order))
    # chronological: sorted by (user, ts), the split rank never decreases within a user
    ranked = part.sort_values(["user_idx", "ts", "rank"], kind="stable")
    same_user = ranked["user_idx"].to_numpy()[1:] == ranked["user_idx"].to_numpy()[:-1]
    going_back = int((same_user & (ranked["rank"].to_numpy()[1:] < ranked["rank"].to_numpy()[:-1])).sum())
    sizes = part.pivot_table(index="user_idx", columns="split", values="item_idx", aggfunc="size", fill_value=0)
    sizes = sizes.reindex(columns=list(order), fill_value=0)
    no_train = int((sizes["train"] == 0).sum())
    off_ratio = 0
    if not meta.get("leave_one_out", False):
        ratios = [float(r) for r in str(meta.get("ratios", "0.7/0.1/0.2")).split("/")]
        n = sizes.sum(axis=1)
        off_ratio = int(sum(((sizes[s] - n * r).abs() > 1).sum() for s, r in zip(order, ratios, strict=True)))
    passed = going_back == 0 and no_train == 0 and off_ratio == 0
    return result(passed, f"{going_back} out-of-order rows, {no_train} users without train, "
                          f"{off_ratio} user-splits off their ratio by more than one",
                  out_of_order=going_back, users_without_train=no_train, off_ratio=off_ratio, users=len(sizes))
