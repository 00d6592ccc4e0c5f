"""[models] Trained models, each tracked in MLflow: long-term user interest, CF, the LLM adapter."""
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import torch

from kwai_assets.assets.common import materialized_metadata, result
from kwai_assets.core.evaluation import EvalData
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import behaviour_sequences
from kwai_assets.core.vectors import vector_problems
from kwai_assets.io.resources import MLflowTracking
from kwai_assets.models.adapter import (
    AdapterConfig,
    AdapterInputs,
    encode,
    held_out,
    reconstruction_error,
    train_aligned,
)
from kwai_assets.models.adapter import load as load_adapter
from kwai_assets.models.adapter import save as save_adapter
from kwai_assets.models.cf import CFConfig, train_cf
from kwai_assets.models.cf import embeddings as cf_embeddings
from kwai_assets.models.interest import (
    InterestConfig,
    device,
    item_vectors,
    parameters,
    save,
    train_interest,
    user_vectors,
)

DEFAULT, CF_DEFAULT, ADAPTER_DEFAULT = InterestConfig(), CFConfig(), AdapterConfig()


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


class CFTrainingConfig(dg.Config):
    """Every field of `models.cf.CFConfig` (same defaults): the ID-based model, alone or aligned."""
    model: str = CF_DEFAULT.model
    dim: int = CF_DEFAULT.dim
    layers: int = CF_DEFAULT.layers
    lr: float = CF_DEFAULT.lr
    weight_decay: float = CF_DEFAULT.weight_decay
    batch_size: int = CF_DEFAULT.batch_size
    epochs: int = CF_DEFAULT.epochs
    eval_every: int = CF_DEFAULT.eval_every
    patience: int = CF_DEFAULT.patience
    seed: int = CF_DEFAULT.seed


class AdapterTrainingConfig(dg.Config):
    """Every field of `models.adapter.AdapterConfig`, and the CF model trained with it (keep it equal to
    `cf_model`'s for a fair ablation; both default to the same)."""
    cf: CFTrainingConfig = CFTrainingConfig()
    hidden: int = ADAPTER_DEFAULT.hidden
    dropout: float = ADAPTER_DEFAULT.dropout
    temperature: float = ADAPTER_DEFAULT.temperature
    align_weight: float = ADAPTER_DEFAULT.align_weight
    pair_weight: float = ADAPTER_DEFAULT.pair_weight
    reconstruction_weight: float = ADAPTER_DEFAULT.reconstruction_weight
    pair_batch: int = ADAPTER_DEFAULT.pair_batch
    held_out: float = ADAPTER_DEFAULT.held_out


def _vectors(key: str, matrix: np.ndarray, index: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({key: index, "vector": list(matrix[index])})


def _history_metadata(history: list[dict], run_id: str, config: dict) -> dict:
    validated = [h for h in history if "val_ndcg_at_20" in h]
    best = max(validated, key=lambda h: h["val_ndcg_at_20"]) if validated else {}
    return {"mlflow_run_id": run_id, "epochs_run": len(history), "best_epoch": int(best.get("epoch", 0)),
            "best_val_ndcg_at_20": float(best.get("val_ndcg_at_20", 0.0)),
            "final_loss": float(history[-1]["loss"]) if history else float("nan"),
            "seconds_per_epoch": float(np.mean([h["epoch_s"] for h in history])) if history else 0.0,
            "device": device().type, **{k: v for k, v in config.items() if not isinstance(v, dict)}}


def _eval_data(splits: pd.DataFrame, id_maps: pd.DataFrame) -> tuple[EvalData, dict[str, int]]:
    sizes = index_sizes(id_maps)
    return EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"]), sizes


@dg.multi_asset(
    group_name="models", pool="gpu",
    outs={
        "cf_model": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch history (BPR loss, validation NDCG@20) of the ID-based CF model (LightGCN or MF) alone.")),
        "cf_user_embeddings": dg.AssetOut(kinds={"parquet"}, description="(user_idx, vector): the CF model's users."),
        "cf_item_embeddings": dg.AssetOut(kinds={"parquet"}, description="(item_idx, vector): the CF model's items."),
    },
)
def cf_model(config: CFTrainingConfig, mlflow: MLflowTracking, splits: pd.DataFrame, id_maps: pd.DataFrame):
    """LightGCN (or MF) with BPR on the train split, early stopping on validation NDCG@20."""
    data, sizes = _eval_data(splits, id_maps)
    cf = CFConfig(**config.model_dump())
    with mlflow.start_run("cf_model", tags={"asset": "cf_model"}) as run:
        import mlflow as mlf

        mlf.log_params(config.model_dump())
        model, history = train_cf(data, cf, log=lambda epoch, metrics: mlf.log_metrics(metrics, step=epoch))
        with tempfile.TemporaryDirectory() as folder:
            torch.save(model.state_dict(), Path(folder) / "weights.pt")
            mlf.log_artifacts(folder, "cf_model")
    users, items = cf_embeddings(model)
    yield dg.Output(pd.DataFrame(history), output_name="cf_model",
                    metadata=_history_metadata(history, run.info.run_id, config.model_dump()))
    yield dg.Output(_vectors("user_idx", users, np.arange(1, sizes["user"])), output_name="cf_user_embeddings",
                    metadata={"dim": cf.dim, "mlflow_run_id": run.info.run_id})
    yield dg.Output(_vectors("item_idx", items, np.arange(1, sizes["item"])), output_name="cf_item_embeddings",
                    metadata={"dim": cf.dim, "mlflow_run_id": run.info.run_id})


@dg.multi_asset(
    group_name="models", pool="gpu",
    outs={
        "adapter": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch history of the CF model trained jointly with the adapter (BPR + alignment + Swing-pair "
            "InfoNCE + reconstruction); adapter weights are MLflow artifacts of the run in the metadata.")),
        "adapted_user_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the adapter's encoding of each user's LLM embedding.")),
        "adapted_item_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the adapter's encoding of each item's LLM embedding.")),
        "aligned_user_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the jointly trained CF model's users, aligned with the LLM embeddings.")),
        "aligned_item_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the jointly trained CF model's items, aligned with the LLM embeddings.")),
    },
)
def adapter(config: AdapterTrainingConfig, mlflow: MLflowTracking, splits: pd.DataFrame, id_maps: pd.DataFrame,
            user_llm_embeddings: pd.DataFrame, item_llm_embeddings: pd.DataFrame,
            user_positive_pairs: pd.DataFrame, item_positive_pairs: pd.DataFrame):
    """RLMRec-style alignment of LLM embeddings with a CF model trained jointly (`models/adapter.py`)."""
    data, sizes = _eval_data(splits, id_maps)
    inputs = AdapterInputs.from_frames(sizes["user"], sizes["item"], user_llm_embeddings, item_llm_embeddings,
                                       user_positive_pairs, item_positive_pairs)
    cf, settings = CFConfig(**config.cf.model_dump()), AdapterConfig(**config.model_dump(exclude={"cf"}))
    with mlflow.start_run("adapter", tags={"asset": "adapter"}) as run:
        import mlflow as mlf

        mlf.log_params({**{f"cf.{k}": v for k, v in config.cf.model_dump().items()}, **settings.__dict__,
                        "llm_dim": inputs.user_llm.shape[1]})
        model, net, history = train_aligned(data, inputs, cf, settings,
                                            log=lambda epoch, metrics: mlf.log_metrics(metrics, step=epoch))
        with tempfile.TemporaryDirectory() as folder:
            mlf.log_artifacts(str(save_adapter(net, folder, settings)), "adapter")   # models.adapter.load()
    users, items = cf_embeddings(model)
    profiled_users, profiled_items = user_llm_embeddings["user_idx"].to_numpy(), item_llm_embeddings["item_idx"].to_numpy()
    run_id = run.info.run_id
    yield dg.Output(pd.DataFrame(history), output_name="adapter", metadata={
        **_history_metadata(history, run_id, {**config.cf.model_dump(), **settings.__dict__}),
        "final_extra_loss": float(history[-1]["extra_loss"]) if history else float("nan")})
    for name, key, matrix, index in [
            ("adapted_user_embeddings", "user_idx", encode(net, inputs.user_llm), profiled_users),
            ("adapted_item_embeddings", "item_idx", encode(net, inputs.item_llm), profiled_items),
            ("aligned_user_embeddings", "user_idx", users, np.arange(1, sizes["user"])),
            ("aligned_item_embeddings", "item_idx", items, np.arange(1, sizes["item"]))]:
        yield dg.Output(_vectors(key, matrix, np.sort(index)), output_name=name,
                        metadata={"dim": cf.dim, "mlflow_run_id": run_id})


@dg.asset_check(asset="adapter", name="adapter_reconstruction", blocking=True,
                additional_ins={"user_llm_embeddings": dg.AssetIn("user_llm_embeddings"),
                                "item_llm_embeddings": dg.AssetIn("item_llm_embeddings")})
def adapter_reconstruction(context: dg.AssetCheckExecutionContext, mlflow: MLflowTracking, history: pd.DataFrame,
                           user_llm_embeddings: pd.DataFrame, item_llm_embeddings: pd.DataFrame) -> dg.AssetCheckResult:
    """On held-out users and items, the decoder (weights from MLflow) beats predicting the mean embedding."""
    net, settings = load_adapter(mlflow.download(str(materialized_metadata(context, "adapter")["mlflow_run_id"]), "adapter"))
    errors = {}
    for entity, df in (("user", user_llm_embeddings), ("item", item_llm_embeddings)):
        rows = df[held_out(df[f"{entity}_idx"].to_numpy(), settings.held_out)]
        errors[entity] = reconstruction_error(net, np.stack(rows["vector"].to_numpy())) if len(rows) else (0.0, 0.0)
    passed = all(model < mean for model, mean in errors.values())
    return result(passed, "; ".join(f"{e}s: decoder MSE {m:.5f} vs mean predictor {b:.5f}"
                                    for e, (m, b) in errors.items()),
                  **{f"{e}_mse": m for e, (m, _) in errors.items()},
                  **{f"{e}_mean_predictor_mse": b for e, (_, b) in errors.items()})


cf_user_embeddings_valid = _vectors_check("cf_user_embeddings", "user_idx")
cf_item_embeddings_valid = _vectors_check("cf_item_embeddings", "item_idx")
aligned_user_embeddings_valid = _vectors_check("aligned_user_embeddings", "user_idx")
aligned_item_embeddings_valid = _vectors_check("aligned_item_embeddings", "item_idx")
adapted_user_embeddings_valid = _vectors_check("adapted_user_embeddings", "user_idx")
adapted_item_embeddings_valid = _vectors_check("adapted_item_embeddings", "item_idx")
