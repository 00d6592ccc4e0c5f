"""[evaluate] Every registered recommender under one protocol, next to the baselines.

To register a model, add one line to RECOMMENDERS: its name, a function
``build(data, **inputs) -> Scorer`` and the upstream assets it needs, or, for
a model that is a pair of vector assets, ``vector_recommender(name, users, items)``.
"""

import dagster as dg
import pandas as pd

from kwai_assets.core.baselines import popularity
from kwai_assets.core.candidates import candidate_recall
from kwai_assets.core.evaluation import (
    KS,
    EvalData,
    Recommender,
    evaluate_all,
    markdown_table,
    ranked_lists,
    top_k_items,
)
from kwai_assets.core.knn import item_knn, recent_item_knn
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.vectors import vector_recommender
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.resources import ModelStoreResource

RECOMMENDERS: list[Recommender] = [
    Recommender("popularity", popularity),
    Recommender("swing_item_knn", item_knn, ("item_positive_pairs",)),
    vector_recommender("interest_model", "user_vectors", "interest_item_vectors"),
    vector_recommender("two_tower", "two_tower_user_embeddings", "two_tower_item_embeddings"),
    Recommender("item2vec_recent_knn", recent_item_knn, ("item2vec", "splits")),
    # the ranking stage: the candidates reranked by DIN, the rest after them by popularity
    Recommender("din_ranker", ranked_lists, ("recommendations",)),
    # the adapter ablation: CF alone, CF aligned with the LLM embeddings, the LLM side alone
    vector_recommender("cf", "cf_user_embeddings", "cf_item_embeddings"),
    vector_recommender("cf_llm_aligned", "aligned_user_embeddings", "aligned_item_embeddings"),
    vector_recommender("llm_adapted", "adapted_user_embeddings", "adapted_item_embeddings"),
    vector_recommender("llm_cosine", "user_llm_embeddings", "item_llm_embeddings", cosine=True),
]


class EvaluationConfig(dg.Config):
    ks: list[int] = list(KS)
    batch_size: int = 1024


@dg.asset(
    group_name="evaluate", kinds={"pytorch", "mlflow"},
    ins={"splits": dg.AssetIn(), "id_maps": dg.AssetIn(), "candidates": dg.AssetIn(),
         **{name: dg.AssetIn() for rec in RECOMMENDERS for name in rec.inputs}},
)
def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, models: ModelStoreResource,
               splits: pd.DataFrame, id_maps: pd.DataFrame, candidates: pd.DataFrame,
               **model_inputs: object) -> dg.Output[pd.DataFrame]:
    """(model, metric, k, value, users): full ranking on the test split, train and val items excluded; and the
    recall of the candidate set (merged, and by the channels that proposed its items)."""
    sizes = index_sizes(id_maps)
    data = EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"])
    table = evaluate_all(RECOMMENDERS, data, {**model_inputs, "splits": splits}, ks=tuple(config.ks),
                         batch_size=config.batch_size)
    markdown, recall = markdown_table(table), candidate_recall(candidates, data)
    context.log.info(f"evaluation on the test split:\n{markdown}\n\ncandidates:\n{recall.to_markdown(index=False)}")
    params = {"ks": ",".join(map(str, config.ks)), "models": ",".join(r.name for r in RECOMMENDERS)}
    with models.run(context, params) as run:
        run.log_metrics({f"{r.model}.{r.metric}_at_{r.k}": r.value for r in table.itertuples()})
        run.log_metrics({f"candidates.{r.source}.recall": r.recall for r in recall.itertuples()})
        run.log_text(markdown, "evaluation.md")
    return dg.Output(table, metadata={
        "results": dg.MetadataValue.md(markdown),
        "candidate_recall": dg.MetadataValue.md(recall.to_markdown(index=False, floatfmt=".4f")),
        "users_evaluated": int(table["users"].max()) if len(table) else 0,
        "mlflow_run_id": run.run_id,
    })


def rankings(warehouse: Warehouse, model: str, k: int, batch_size: int = 1024) -> pd.DataFrame:
    """(user_id, item_id, rank) in raw ids: the top k of a registered model for every user with train rows, ranked
    as the evaluation ranks (train and val items excluded), from the stored assets (`kwai recommend`)."""
    registered = {r.name: r for r in RECOMMENDERS}
    if model not in registered:
        raise ValueError(f"unknown model {model!r}; registered: {', '.join(registered)}")
    recommender, id_maps = registered[model], warehouse.read("id_maps")
    sizes = index_sizes(id_maps)
    data = EvalData.from_splits(warehouse.read("splits"), n_users=sizes["user"], n_items=sizes["item"])
    inputs = {name: _read_whole(warehouse, name) for name in recommender.inputs}
    top = top_k_items(recommender.build(data, **inputs), data, k, batch_size)
    raw = {e: id_maps[id_maps["entity"] == e].set_index("idx")["raw_id"] for e in ("user", "item")}
    return pd.DataFrame({"user_id": raw["user"].reindex(top["user_idx"]).to_numpy(),
                         "item_id": raw["item"].reindex(top["item_idx"]).to_numpy(), "rank": top["rank"].to_numpy()})


def _read_whole(warehouse: Warehouse, asset: str) -> pd.DataFrame:
    """An asset as one frame, whether or not it is partitioned (the LLM embeddings are in shards)."""
    shards = warehouse.partitions(asset)
    return warehouse.read(asset, shards) if shards else warehouse.read(asset)
