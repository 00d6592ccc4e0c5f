"""[serve] The ranked lists, and what online serving reads: vectors and recommendations in Redis, one atomic version
at a time.

Assets: recommendations, online_store. Checks: recommendations_valid, online_store_round_trip.
"""
import time

import dagster as dg
import numpy as np
import pandas as pd

from kwai_assets.assets.common import GPU, check_result, guard, latest_run_id, materialized_metadata
from kwai_assets.core.evaluation import EvalData
from kwai_assets.core.recommendations import recommendation_problems
from kwai_assets.core.reid import index_sizes
from kwai_assets.io.online_store import Recommendations, lists_problems, round_trip_problems
from kwai_assets.models import din
from kwai_assets.resources import ModelStoreResource, RedisResource
from kwai_assets.settings import current

SERVED_FROM = ("user_vectors", "interest_item_vectors", "recommendations")    # whose model runs /health reports


def _raw_ids(id_maps: pd.DataFrame, entity: str, idx: pd.Series) -> list[str]:
    ids = id_maps[id_maps["entity"] == entity].set_index("idx")["raw_id"]
    return ids.reindex(idx.to_numpy()).tolist()


def _seen(splits: pd.DataFrame, id_maps: pd.DataFrame):
    sizes = index_sizes(id_maps)
    return EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"]).seen


class RecommendationsConfig(dg.Config):
    k: int = 50                  # items per user


@dg.asset(group_name="serve", **GPU, kinds={"pytorch", "parquet"}, ins={"ranker": dg.AssetIn()})
def recommendations(context: dg.AssetExecutionContext, config: RecommendationsConfig, models: ModelStoreResource,
                    ranker: pd.DataFrame, candidates: pd.DataFrame, splits: pd.DataFrame, id_maps: pd.DataFrame,
                    user_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """(user_idx, item_idx, score, rank): each user's candidates reranked by the ranker's stored model, the top k,
    history = train and val (everything before the test period)."""
    run_id = latest_run_id(context, "ranker")
    model = models.load(run_id, "ranker")
    catalog = din.Catalog.from_frames(splits, id_maps, user_attributes)
    if problems := din.catalog_problems(model, catalog):
        raise dg.Failure(f"recommendations: {'; '.join(problems)}")
    try:
        data = din.RankingData.build(catalog, candidates, splits, ("train", "val"), None, model.config.history_len,
                                     model.channels)
    except ValueError as err:
        raise dg.Failure(f"recommendations cannot read candidates: {err}") from err
    start = time.perf_counter()
    scores = din.score(model, data)
    seconds = time.perf_counter() - start
    top = din.top_k(data, scores, config.k)
    guard(context, "recommendations", top, recommendation_problems(top, data.seen, config.k))   # train + val
    return dg.Output(top, metadata={"users": int(top["user_idx"].nunique()), "rows": len(top), "k": config.k,
                                    "candidates_scored": len(scores), "score_seconds": seconds,
                                    "candidates_per_s": len(scores) / max(seconds, 1e-9), "mlflow_run_id": run_id,
                                    "explorer": dg.MetadataValue.url(f"{current().service_url}/explorer")})


@dg.asset_check(asset=recommendations, name="recommendations_valid", blocking=True,
                additional_ins={"splits": dg.AssetIn("splits"), "id_maps": dg.AssetIn("id_maps")},
                description="Finite scores, at most k items per user, none the user saw in train or val, no repeat, "
                            "ranks in score order.")
def recommendations_valid(context: dg.AssetCheckExecutionContext, top: pd.DataFrame, splits: pd.DataFrame,
                          id_maps: pd.DataFrame) -> dg.AssetCheckResult:
    k = int(top.groupby("user_idx").size().max()) if len(top) else 0
    k = int(_materialized_k(context) or k)
    return check_result(recommendation_problems(top, _seen(splits, id_maps), k),
                        f"{top['user_idx'].nunique()} users, at most {k} unseen items each, finite scores",
                        users=int(top["user_idx"].nunique()))


def _materialized_k(context: dg.AssetCheckExecutionContext) -> int | None:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("recommendations"))
    meta = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
    return int(meta["k"].value) if "k" in meta else None


def _raw_lists(top: pd.DataFrame, id_maps: pd.DataFrame) -> Recommendations:
    """{raw user id: [(raw item id, score)]} in rank order."""
    ordered = top.sort_values(["user_idx", "rank"], kind="stable")
    users = _raw_ids(id_maps, "user", ordered["user_idx"])
    items = _raw_ids(id_maps, "item", ordered["item_idx"])
    scores = ordered["score"].to_numpy(np.float32).tolist()
    lists: Recommendations = {}
    for user, item, score in zip(users, items, scores, strict=True):
        lists.setdefault(user, []).append((item, score))
    return lists


@dg.asset(group_name="serve", kinds={"redis"})
def online_store(context: dg.AssetExecutionContext, redis: RedisResource, user_vectors: pd.DataFrame,
                 interest_item_vectors: pd.DataFrame, recommendations: pd.DataFrame,
                 id_maps: pd.DataFrame) -> dg.MaterializeResult:
    """User and item vectors and each user's recommendations in Redis under raw ids, as a new version switched to
    atomically (layout: README); the version's meta names the model runs they came from (`run:<asset>`)."""
    runs = {f"run:{asset}": str(materialized_metadata(context, asset).get("mlflow_run_id", ""))
            for asset in SERVED_FROM}
    store = redis.open()
    report = store.export(_raw_ids(id_maps, "user", user_vectors["user_idx"]), np.stack(user_vectors["vector"]),
                          _raw_ids(id_maps, "item", interest_item_vectors["item_idx"]),
                          np.stack(interest_item_vectors["vector"]), _raw_lists(recommendations, id_maps),
                          meta=runs)
    return dg.MaterializeResult(metadata={
        "version": report.version, "users": report.users, "items": report.items,
        "recommendation_lists": report.recommendations, "seconds": report.seconds,
        "keys_per_s": (report.users + report.items + report.recommendations) / max(report.seconds, 1e-9),
        "removed_versions": str(report.removed_versions), "redis": redis.safe_url(), "prefix": redis.prefix})


@dg.asset_check(asset=online_store, name="online_store_round_trip", blocking=True,
                additional_ins={"user_vectors": dg.AssetIn("user_vectors"), "id_maps": dg.AssetIn("id_maps"),
                                "recommendations": dg.AssetIn("recommendations")})
def online_store_round_trip(redis: RedisResource, user_vectors: pd.DataFrame, id_maps: pd.DataFrame,
                            recommendations: pd.DataFrame) -> dg.AssetCheckResult:
    """A sample of users read back from the live version: vectors equal to user_vectors bit for bit, lists equal
    to recommendations (ids, order and scores)."""
    store = redis.open()
    sample = user_vectors.sample(min(len(user_vectors), 1000), random_state=0)
    version, got = store.get_vectors("user", _raw_ids(id_maps, "user", sample["user_idx"]))
    problems = round_trip_problems(version, got, sample["vector"].tolist())
    expected = _raw_lists(recommendations[recommendations["user_idx"].isin(sample["user_idx"])], id_maps)
    users = sorted(expected)
    list_version, lists = store.get_lists(users)
    problems += lists_problems(list_version, lists, [expected[u] for u in users])
    return check_result(problems, f"{len(sample)} sampled users' vectors and {len(users)} of their recommendation "
                                  f"lists read back exactly from version {version}",
                        version=version or 0, sampled=len(sample), lists=len(users))
