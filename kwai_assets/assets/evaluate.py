"""[evaluate] Every registered recommender under one protocol, next to the baselines.

To register a model, add one line to RECOMMENDERS: its name, a function
``build(data, **inputs) -> Scorer`` and the upstream assets it needs, or, for
a model that is a pair of vector assets, ``vector_recommender(name, users, items)``.
"""

import dagster as dg
import pandas as pd

from kwai_assets.core.baselines import popularity
from kwai_assets.core.evaluation import KS, EvalData, Recommender, evaluate_all, markdown_table
from kwai_assets.core.knn import item_knn
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.vectors import vector_recommender
from kwai_assets.io.resources import MLflowTracking

RECOMMENDERS: list[Recommender] = [
    Recommender("popularity", popularity),
    Recommender("swing_item_knn", item_knn, ("item_positive_pairs",)),
    vector_recommender("interest_model", "user_vectors", "interest_item_vectors"),
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
    group_name="evaluate", kinds={"torch", "mlflow"},
    ins={"splits": dg.AssetIn(), "id_maps": dg.AssetIn(),
         **{name: dg.AssetIn() for rec in RECOMMENDERS for name in rec.inputs}},
)
def evaluation(config: EvaluationConfig, mlflow: MLflowTracking, splits: pd.DataFrame, id_maps: pd.DataFrame,
               **model_inputs: object) -> dg.Output[pd.DataFrame]:
    """(model, metric, k, value, users): full ranking on the test split, train and val items excluded."""
    sizes = index_sizes(id_maps)
    data = EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"])
    table = evaluate_all(RECOMMENDERS, data, model_inputs, ks=tuple(config.ks), batch_size=config.batch_size)
    markdown = markdown_table(table)
    with mlflow.start_run("evaluation", tags={"asset": "evaluation"}) as run:
        import mlflow as mlf

        mlf.log_params({"ks": ",".join(map(str, config.ks)), "models": ",".join(r.name for r in RECOMMENDERS)})
        mlf.log_metrics({f"{r.model}.{r.metric}_at_{r.k}": r.value for r in table.itertuples()})
        mlf.log_text(markdown, "evaluation.md")
    return dg.Output(table, metadata={
        "results": dg.MetadataValue.md(markdown),
        "users_evaluated": int(table["users"].max()) if len(table) else 0,
        "mlflow_run_id": run.info.run_id,
    })
