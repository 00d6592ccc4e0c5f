"""[recall] The ANN indexes over the item vectors, and each user's candidate set from every recall channel.

Assets: item_index, candidates, training_candidates. Checks: item_index_recall, candidates_merged_recall.
"""

from dataclasses import dataclass

import dagster as dg
import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from kwai_assets.assets.common import check_result, config_from, materialized_metadata, to_dataclass
from kwai_assets.core.ann import (
    HNSWParams,
    build_and_measure,
    index_inputs,
    quality_problems,
    recall_against_exact,
    store_index,
    stored_index,
)
from kwai_assets.core.candidates import build_candidates, merged_recall_problems
from kwai_assets.core.evaluation import EvalData
from kwai_assets.core.knn import RECENT_ITEMS, recent_items, recent_query
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.vectors import vector_matrix
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.resources import WarehouseResource


@dataclass(frozen=True)
class Channel:
    items: str                   # the item-vector asset the index holds
    users: str | None            # u2i: the user-vector asset that queries it; None: i2i, unit vectors (cosine)


INDEXED = {
    "two_tower": Channel("two_tower_item_embeddings", "two_tower_user_embeddings"),
    "interest": Channel("interest_item_vectors", "user_vectors"),
    "cf": Channel("cf_item_embeddings", "cf_user_embeddings"),
    "item2vec": Channel("item2vec", None),
}
VECTOR_ASSETS = sorted({a for c in INDEXED.values() for a in (c.items, c.users) if a})

IndexConfig = config_from(HNSWParams, queries=(int, 1000, "sampled query vectors that measure recall@10"),
                          min_recall=(float, 0.95, "the lowest recall@10 against exact search an index may have"))


def _queries(channel: Channel, vectors: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    return vectors[channel.users] if channel.users else None


@dg.asset(group_name="recall", kinds={"faiss", "parquet"},
          ins={name: dg.AssetIn() for name in VECTOR_ASSETS},
          description="One faiss HNSW index (inner product) per recall channel's item vectors, in "
                      "warehouse/item_index/<channel>.faiss; the table says, per channel, the items, dimension, "
                      "build seconds, recall@10 against exact search and both searches' queries/s.")
def item_index(context: dg.AssetExecutionContext, config: IndexConfig, warehouse: WarehouseResource,
               **vectors: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    params, built, rows, problems = to_dataclass(config, HNSWParams), {}, [], []
    for name, channel in INDEXED.items():
        index, quality, found = build_and_measure(channel.items, vectors[channel.items], _queries(channel, vectors),
                                                  params, config.queries, config.min_recall,
                                                  cosine=channel.users is None)
        problems += found
        if quality is not None:
            rows.append({"channel": name, "vectors": channel.items, "items": len(vectors[channel.items]),
                         "dim": len(vectors[channel.items]["vector"].iloc[0]), **quality.as_metadata()})
        built[name] = index
    if problems:   # nothing is written: every stored index stays as it was (each file is then replaced atomically)
        raise dg.Failure(description=f"item_index failed its check, so the stored indexes are unchanged: "
                                     f"{'; '.join(problems[:5])}", metadata={"problems": len(problems)})
    for name, index in built.items():
        store_index(warehouse.get(), name, index)
    table = pd.DataFrame(rows)
    return dg.Output(table, metadata={"indexes": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
                                      "min_recall_at_10": float(table["recall_at_10"].min()),
                                      **config.model_dump()})


@dg.asset_check(asset="item_index", name="item_index_recall", blocking=True,
                description="Every stored index, read back with faiss' reader, still finds at least min_recall of "
                            "the exact top-10 on the sampled queries of the stored vectors (the build measured the "
                            "same before writing: this catches a file replaced or vectors re-materialized since).")
def item_index_recall(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                      table: pd.DataFrame) -> dg.AssetCheckResult:
    config = IndexConfig(**_latest_config(context))
    vectors = {name: warehouse.get().read(name) for name in VECTOR_ASSETS}
    problems, recalls = [], {}
    for name, channel in INDEXED.items():
        index = stored_index(warehouse.get(), name)
        ids, matrix, queries = index_inputs(vectors[channel.items], _queries(channel, vectors),
                                            channel.users is None, config.queries, config.seed)
        quality = recall_against_exact(index, ids, matrix, queries)
        recalls[f"{name}_recall_at_10"] = quality.recall_at_10
        problems += quality_problems(name, quality, config.min_recall)
    return check_result(problems, "every index at or above "
                        f"{config.min_recall} recall@10 against exact search", **recalls)


def _latest_config(context: dg.AssetCheckExecutionContext) -> dict[str, object]:
    meta = materialized_metadata(context, "item_index")
    return {k: meta[k] for k in IndexConfig.model_fields if k in meta}


def channel_searches(warehouse: Warehouse, vectors: dict[str, pd.DataFrame], recent: sp.csr_matrix,
                     sizes: dict[str, int]) -> dict[str, tuple[faiss.Index, np.ndarray]]:
    """Per indexed channel, its stored index and every user's query: the user's vector (u2i), or the mean unit
    vector of the user's recent items (i2i)."""
    searches = {}
    for name, channel in INDEXED.items():
        queries = (vector_matrix(vectors[channel.users], "user_idx", sizes["user"]) if channel.users else
                   recent_query(recent, vector_matrix(vectors[channel.items], "item_idx", sizes["item"])))
        searches[name] = (stored_index(warehouse, name), queries)
    return searches


class CandidatesConfig(dg.Config):
    per_channel: int = 200       # how deep each channel's list goes into the fusion
    total: int = 200             # the cap per user; popularity, the fallback, fills what the channels leave
    rrf_k: float = 60.0          # reciprocal rank fusion: score = sum over channels of 1 / (rrf_k + rank)
    recent_items: int = RECENT_ITEMS  # the user's last train items the i2i channels (Swing, item2vec) start from


def _recall_metadata(merged: pd.DataFrame, recall: pd.DataFrame, split: str, config: CandidatesConfig) -> dict:
    per_user = merged.groupby("user_idx").size()
    return {f"{split}_recall": dg.MetadataValue.md(recall.to_markdown(index=False, floatfmt=".4f")),
            "merged_recall": float(recall.loc[recall["source"] == "merged", "recall"].iloc[0]),
            "users": len(per_user), "mean_per_user": float(per_user.mean()) if len(per_user) else 0.0,
            **{f"{r.source}_recall_at_{r.size}": float(r.recall) for r in recall.itertuples()},
            **config.model_dump()}


@dg.multi_asset(
    name="candidates", group_name="recall",
    ins={"item_index": dg.AssetIn(), "item_positive_pairs": dg.AssetIn(), "splits": dg.AssetIn(),
         "id_maps": dg.AssetIn(), **{name: dg.AssetIn() for name in VECTOR_ASSETS}},
    outs={
        "candidates": dg.AssetOut(kinds={"faiss", "parquet"}, description=(
            "Per user, the recall channels' items not seen in train or val (Swing and item2vec i2i from the recent "
            "items, two-tower, interest-model and CF u2i through item_index) fused by reciprocal rank, popularity "
            "filling what is left: score, channels, n_channels, best_rank and each channel's rank per row. What "
            "the test split and the online store rank; the metadata's recall is on test.")),
        "training_candidates": dg.AssetOut(kinds={"parquet"}, description=(
            "The same channels' candidates one period earlier: only train items excluded, so the user's val items "
            "are among them where a channel found them; where the ranker learns. The metadata's recall is on val.")),
    },
)
def candidates(context: dg.AssetExecutionContext, config: CandidatesConfig, warehouse: WarehouseResource,
               item_index: pd.DataFrame, item_positive_pairs: pd.DataFrame, splits: pd.DataFrame,
               id_maps: pd.DataFrame, **vectors: pd.DataFrame):
    sizes = index_sizes(id_maps)
    data = EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"])
    recent = recent_items(splits, sizes["user"], sizes["item"], config.recent_items)
    sets = build_candidates(data, recent, item_positive_pairs,
                            channel_searches(warehouse.get(), vectors, recent, sizes),
                            config.per_channel, config.total, config.rrf_k)
    yield dg.Output(sets.serving, output_name="candidates",
                    metadata=_recall_metadata(sets.serving, sets.serving_recall, "test", config))
    yield dg.Output(sets.training, output_name="training_candidates",
                    metadata=_recall_metadata(sets.training, sets.training_recall, "val", config))


@dg.asset_check(asset="candidates", name="candidates_merged_recall",
                description="On the test split, the merged set recalls at least as much as each channel's list that "
                            "went into it (min(per_channel, total) items: with the defaults, the same budget).")
def candidates_merged_recall(context: dg.AssetCheckExecutionContext, merged: pd.DataFrame) -> dg.AssetCheckResult:
    meta = materialized_metadata(context, "candidates")
    depth = min(int(meta.get("per_channel", CandidatesConfig().per_channel)),
                int(meta.get("total", CandidatesConfig().total)))
    table = pd.DataFrame([{"source": k.removesuffix(f"_recall_at_{depth}"), "size": depth, "recall": float(v)}
                          for k, v in meta.items() if k.endswith(f"_recall_at_{depth}") and not k.startswith("merged")]
                         + [{"source": "merged", "size": depth, "recall": float(meta.get("merged_recall", 0.0))}])
    return check_result(merged_recall_problems(table, depth),
                        f"merged recall {float(meta.get('merged_recall', 0.0)):.4f} is at least every channel's",
                        severity=dg.AssetCheckSeverity.WARN, merged_recall=float(meta.get("merged_recall", 0.0)))
