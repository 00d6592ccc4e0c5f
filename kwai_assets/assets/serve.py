"""[serve] Vectors for online serving: user and item vectors in Redis, one atomic version at a time.

Assets: online_store. Checks: online_store_round_trip.
"""
import dagster as dg
import numpy as np
import pandas as pd

from kwai_assets.assets.common import check_result
from kwai_assets.io.online_store import round_trip_problems
from kwai_assets.resources import RedisResource


def _raw_ids(id_maps: pd.DataFrame, entity: str, idx: pd.Series) -> list[str]:
    ids = id_maps[id_maps["entity"] == entity].set_index("idx")["raw_id"]
    return ids.reindex(idx.to_numpy()).tolist()


@dg.asset(group_name="serve", kinds={"redis"})
def online_store(redis: RedisResource, user_vectors: pd.DataFrame, interest_item_vectors: pd.DataFrame,
                 id_maps: pd.DataFrame) -> dg.MaterializeResult:
    """User and item vectors in Redis under raw ids, as a new version switched to atomically (layout: README)."""
    store = redis.open()
    report = store.export(_raw_ids(id_maps, "user", user_vectors["user_idx"]), np.stack(user_vectors["vector"]),
                          _raw_ids(id_maps, "item", interest_item_vectors["item_idx"]),
                          np.stack(interest_item_vectors["vector"]))
    return dg.MaterializeResult(metadata={
        "version": report.version, "users": report.users, "items": report.items, "seconds": report.seconds,
        "vectors_per_s": (report.users + report.items) / max(report.seconds, 1e-9),
        "removed_versions": str(report.removed_versions), "redis": redis.safe_url(), "prefix": redis.prefix})


@dg.asset_check(asset=online_store, name="online_store_round_trip", blocking=True,
                additional_ins={"user_vectors": dg.AssetIn("user_vectors"), "id_maps": dg.AssetIn("id_maps")})
def online_store_round_trip(redis: RedisResource, user_vectors: pd.DataFrame,
                            id_maps: pd.DataFrame) -> dg.AssetCheckResult:
    """A sample of users read back from the live version equals user_vectors bit for bit."""
    sample = user_vectors.sample(min(len(user_vectors), 1000), random_state=0)
    version, got = redis.open().get_vectors("user", _raw_ids(id_maps, "user", sample["user_idx"]))
    return check_result(round_trip_problems(version, got, sample["vector"].tolist()),
                        f"{len(sample)} sampled users read back bit for bit from version {version}",
                        version=version or 0, sampled=len(sample))
