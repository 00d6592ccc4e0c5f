"""[models] Trained models, each tracked in MLflow: the long-term user-interest Transformer."""
import tempfile

import dagster as dg
import numpy as np
import pandas as pd

from kwai_assets.assets.common import materialized_metadata, result
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import behaviour_sequences
from kwai_assets.core.vectors import vector_problems
from kwai_assets.io.resources import MLflowTracking
from kwai_assets.models.interest import (
    InterestConfig,
    device,
    item_vectors,
    parameters,
    save,
    train_interest,
    user_vectors,
)

DEFAULT = InterestConfig()


class InterestTrainingConfig(dg.Config):
    """Sequence lengths and every field of `models.interest.InterestConfig` (same defaults)."""
    long_len: int = 100
    short_len: int = 10
    dim: int = DEFAULT.dim
    depth: int = DEFAULT.depth
    heads: int = DEFAULT.heads
    head_dim: int = DEFAULT.head_dim
    n_experts: int = DEFAULT.n_experts
    top_k: int = DEFAULT.top_k
    balance: str = DEFAULT.balance
    bias_rate: float = DEFAULT.bias_rate
    dropout: float = DEFAULT.dropout
    retrieval_weight: float = DEFAULT.retrieval_weight
    negatives: int = DEFAULT.negatives
    epochs: int = DEFAULT.epochs
    batch_size: int = DEFAULT.batch_size
    lr: float = DEFAULT.lr
    weight_decay: float = DEFAULT.weight_decay
    seed: int = DEFAULT.seed


@dg.multi_asset(
    group_name="models", pool="gpu",
    outs={
        "interest_model": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch training history (loss, samples/s, expert load) of the long-term interest model; "
            "weights and config are MLflow artifacts of the run in the metadata.")),
        "user_vectors": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the long tower's [CLS] output through the MoE over the user's whole train history.")),
        "interest_item_vectors": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the model's item embeddings, to score items by dot product with user_vectors.")),
    },
)
def interest_model(config: InterestTrainingConfig, mlflow: MLflowTracking, splits: pd.DataFrame,
                   id_maps: pd.DataFrame):
    """Long/short Transformer towers with [CLS] and a DeepSeek-style MoE, trained on train-split sequences."""
    sizes = index_sizes(id_maps)
    sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], config.long_len, config.short_len)
    model_config = InterestConfig(**config.model_dump(exclude={"long_len", "short_len"}))
    with mlflow.start_run("interest_model", tags={"asset": "interest_model"}) as run:
        import mlflow as mlf

        mlf.log_params({**config.model_dump(), "users": len(sequences.users), "device": device().type})
        model, history = train_interest(sequences, model_config,
                                        log=lambda epoch, metrics: mlf.log_metrics(metrics, step=epoch))
        with tempfile.TemporaryDirectory() as folder:
            mlf.log_artifacts(str(save(model, folder)), "interest_model")      # models.interest.load() reads it back
    users = user_vectors(model, sequences)
    items = item_vectors(model)[1:]
    last = history[-1] if history else {}
    yield dg.Output(pd.DataFrame(history), output_name="interest_model", metadata={
        "mlflow_run_id": run.info.run_id, "parameters": parameters(model), "users": len(sequences.users),
        "device": device().type, "final_loss": float(last.get("loss", float("nan"))),
        "samples_per_s": float(last.get("samples_per_s", 0.0)),
        "load_max_over_mean": float(last.get("load_max_over_mean", 0.0)),
        "load_entropy": float(last.get("load_entropy", 0.0)), **config.model_dump()})
    yield dg.Output(pd.DataFrame({"user_idx": sequences.users, "vector": list(users)}), output_name="user_vectors",
                    metadata={"rows": len(users), "dim": model_config.dim, "mlflow_run_id": run.info.run_id})
    yield dg.Output(pd.DataFrame({"item_idx": np.arange(1, len(items) + 1), "vector": list(items)}),
                    output_name="interest_item_vectors",
                    metadata={"rows": len(items), "dim": model_config.dim, "mlflow_run_id": run.info.run_id})


def _vectors_check(asset: str, key: str):
    @dg.asset_check(asset=asset, name=f"{asset}_valid", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits")})
    def _check(context: dg.AssetCheckExecutionContext, vectors: pd.DataFrame,
               splits: pd.DataFrame) -> dg.AssetCheckResult:
        dim = materialized_metadata(context, asset).get("dim")
        expected = splits.loc[splits["split"] == "train", key].unique()
        problems = vector_problems(vectors, key, expected, int(dim) if dim is not None else None)
        return result(not problems, "; ".join(problems) or f"{len(vectors)} finite non-zero vectors of dim {dim}, "
                                                           f"every {key} of the train split covered",
                      rows=len(vectors), problems=len(problems))
    _check.__doc__ = f"One finite, non-zero vector of the model's dimension per {key} of the train split."
    return _check


user_vectors_valid = _vectors_check("user_vectors", "user_idx")
interest_item_vectors_valid = _vectors_check("interest_item_vectors", "item_idx")
