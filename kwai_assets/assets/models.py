"""[models] Trained models, each tracked in the model store: long-term user interest, CF, the LLM adapter.

Every training asset follows one recipe: derive its run config from the model's dataclass (`config_from`), open a
model-store run (params, per-epoch metrics and a progress line per epoch in the run's log), train with the model
module's function, save the weights through the run, check the vectors before they are written (`guard`), and
yield the vectors with the run id in their metadata.

Assets: interest_model, user_vectors, interest_item_vectors; cf_model, cf_user_embeddings, cf_item_embeddings;
two_tower, two_tower_user_embeddings, two_tower_item_embeddings; ranker; adapter, adapted_user_embeddings,
adapted_item_embeddings, aligned_user_embeddings, aligned_item_embeddings.
Checks: `<vectors>_valid` for each vector asset, ranker_training, adapter_reconstruction.
"""
import dagster as dg
import numpy as np
import pandas as pd

from kwai_assets.assets.common import (
    GPU,
    check_result,
    config_from,
    guard,
    latest_run_id,
    materialized_metadata,
    to_dataclass,
)
from kwai_assets.core.evaluation import EvalData, device
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.sequences import behaviour_sequences
from kwai_assets.core.vectors import vector_problems
from kwai_assets.models import adapter as adapter_model
from kwai_assets.models import cf, din, interest, two_tower
from kwai_assets.models.early_stopping import training_problems
from kwai_assets.resources import ModelStoreResource

InterestRunConfig = config_from(interest.InterestConfig, long_len=(int, 100, "behaviours in the long tower"),
                                short_len=(int, 10, "behaviours in the short tower"),
                                stride=(int, 50, "histories also trained cut every `stride` behaviours before "
                                                 "their end (prefix augmentation); 0: whole histories only"))
CFRunConfig = config_from(cf.CFConfig)
AdapterRunConfig = config_from(adapter_model.AdapterConfig)
TwoTowerRunConfig = config_from(two_tower.TwoTowerConfig)
RankerRunConfig = config_from(din.DINConfig)


def _vectors(key: str, matrix: np.ndarray, index: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({key: index, "vector": list(matrix[index])})


def _train_keys(splits: pd.DataFrame, key: str) -> np.ndarray:
    return splits.loc[splits["split"] == "train", key].unique()


def _checked_outputs(context: dg.AssetExecutionContext, splits: pd.DataFrame, run_id: str,
                     outputs: dict[str, pd.DataFrame]):
    """Check every vector output before any is written (a failed run leaves all stored ones), then yield them."""
    for name, df in outputs.items():
        key = df.columns[0]
        guard(context, name, df, vector_problems(df, key, _train_keys(splits, key)))
    for name, df in outputs.items():
        yield dg.Output(df, output_name=name, metadata={"rows": len(df), "dim": len(df["vector"].iloc[0]),
                                                         "mlflow_run_id": run_id})


def _history_metadata(history: list[dict], run_id: str, params: dict) -> dict:
    """The summary of a training history that the UI shows: epochs, best validation epoch, speed."""
    validated = [h for h in history if "val_ndcg_at_20" in h]
    best = max(validated, key=lambda h: h["val_ndcg_at_20"]) if validated else {}
    last = history[-1] if history else {}
    return {"mlflow_run_id": run_id, "epochs_run": len(history), "best_epoch": int(best.get("epoch", 0)),
            "best_val_ndcg_at_20": float(best.get("val_ndcg_at_20", 0.0)),
            "final_loss": float(last.get("loss", float("nan"))), "device": device().type,
            **{k: v for k, v in params.items() if v is not None}}


@dg.multi_asset(
    group_name="models", **GPU,
    outs={
        "interest_model": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch training history (loss, samples/s, expert load) of the long-term interest model; "
            "weights and config are in the model store under the run id in the metadata.")),
        "user_vectors": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the long tower's [CLS] output through the MoE head after the user's train history.")),
        "interest_item_vectors": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the model's item embeddings, to score items by dot product with user_vectors.")),
    },
)
def interest_model(context: dg.AssetExecutionContext, config: InterestRunConfig, models: ModelStoreResource,
                   splits: pd.DataFrame, id_maps: pd.DataFrame):
    """Causal long-term Transformer with a [CLS] user vector and a DeepSeek-style MoE head, trained on train-split
    sequences (a next-item softmax at every position), early stopping on validation NDCG@20."""
    sizes = index_sizes(id_maps)
    sequences = behaviour_sequences(splits, sizes["item"], sizes["category"], config.long_len, config.short_len,
                                    stride=config.stride)
    params = config.model_dump()
    with models.run(context, {**params, "users": len(sequences.users), "device": device().type}) as run:
        model, history = interest.train_interest(sequences, to_dataclass(config, interest.InterestConfig),
                                                 log=run.log_epoch, val=_eval_data(splits, id_maps))
        run.save("interest_model", model)
    last = history[-1] if history else {}
    yield dg.Output(pd.DataFrame(history), output_name="interest_model", metadata={
        **_history_metadata(history, run.run_id, params), "parameters": interest.parameters(model),
        "users": len(sequences.users), "samples_per_s": float(last.get("samples_per_s", 0.0)),
        "load_max_over_mean": float(last.get("load_max_over_mean", 0.0)),
        "load_entropy": float(last.get("load_entropy", 0.0))})
    items = interest.item_vectors(model)
    yield from _checked_outputs(context, splits, run.run_id, {
        "user_vectors": pd.DataFrame({"user_idx": sequences.users,
                                      "vector": list(interest.user_vectors(model, sequences))}),
        "interest_item_vectors": _vectors("item_idx", items, np.arange(1, len(items)))})


def _vectors_check(asset: str, key: str) -> dg.AssetChecksDefinition:
    """`{asset}_valid`: one finite, non-zero vector of the model's dimension per train-split index."""

    @dg.asset_check(asset=asset, name=f"{asset}_valid", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits")},
                    description=f"One finite, non-zero vector of the model's dimension per {key} of the train split.")
    def _check(context: dg.AssetCheckExecutionContext, vectors: pd.DataFrame,
               splits: pd.DataFrame) -> dg.AssetCheckResult:
        dim = materialized_metadata(context, asset).get("dim")
        problems = vector_problems(vectors, key, _train_keys(splits, key), int(dim) if dim is not None else None)
        return check_result(problems, f"{len(vectors)} finite non-zero vectors of dim {dim}, every {key} of the "
                                      f"train split covered", rows=len(vectors))

    return _check


user_vectors_valid = _vectors_check("user_vectors", "user_idx")
interest_item_vectors_valid = _vectors_check("interest_item_vectors", "item_idx")


def _eval_data(splits: pd.DataFrame, id_maps: pd.DataFrame) -> EvalData:
    sizes = index_sizes(id_maps)
    return EvalData.from_splits(splits, n_users=sizes["user"], n_items=sizes["item"])


def _cf_vectors(model: cf.LightGCN, prefix: str) -> dict[str, pd.DataFrame]:
    users, items = cf.embeddings(model)
    return {f"{prefix}_user_embeddings": _vectors("user_idx", users, np.arange(1, len(users))),
            f"{prefix}_item_embeddings": _vectors("item_idx", items, np.arange(1, len(items)))}


@dg.multi_asset(
    group_name="models", **GPU,
    outs={
        "cf_model": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch history (BPR loss, validation NDCG@20) of the ID-based CF model (LightGCN or MF) alone; "
            "weights in the model store under the run id in the metadata.")),
        "cf_user_embeddings": dg.AssetOut(kinds={"parquet"}, description="(user_idx, vector): the CF model's users."),
        "cf_item_embeddings": dg.AssetOut(kinds={"parquet"}, description="(item_idx, vector): the CF model's items."),
    },
)
def cf_model(context: dg.AssetExecutionContext, config: CFRunConfig, models: ModelStoreResource,
             splits: pd.DataFrame, id_maps: pd.DataFrame):
    """LightGCN (or MF) with BPR on the train split, early stopping on validation NDCG@20."""
    with models.run(context, config.model_dump()) as run:
        model, history = cf.train_cf(_eval_data(splits, id_maps), to_dataclass(config, cf.CFConfig),
                                     log=run.log_epoch)
        run.save("cf_model", model)
    yield dg.Output(pd.DataFrame(history), output_name="cf_model",
                    metadata=_history_metadata(history, run.run_id, config.model_dump()))
    yield from _checked_outputs(context, splits, run.run_id, _cf_vectors(model, "cf"))


@dg.multi_asset(
    name="two_tower", group_name="models", **GPU,
    outs={
        "two_tower": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch history (loss, validation loss, validation NDCG@20) of the two-tower recall model; "
            "weights in the model store under the run id in the metadata.")),
        "two_tower_user_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the user tower over each user's last history_len train items (unit length).")),
        "two_tower_item_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the item tower over id, category, POI and location cell (unit length).")),
    },
)
def two_tower_model(context: dg.AssetExecutionContext, config: TwoTowerRunConfig, models: ModelStoreResource,
                    splits: pd.DataFrame, id_maps: pd.DataFrame, user_attributes: pd.DataFrame):
    """Two-tower recall model: in-batch softmax with log-Q correction, optional popularity and hard negatives
    (`models/two_tower.py`), early stopping on validation NDCG@20."""
    data = two_tower.TwoTowerData.from_frames(splits, id_maps, user_attributes)
    with models.run(context, config.model_dump()) as run:
        model, history = two_tower.train_two_tower(data, _eval_data(splits, id_maps),
                                                   to_dataclass(config, two_tower.TwoTowerConfig), log=run.log_epoch)
        run.save("two_tower", model)
    yield dg.Output(pd.DataFrame(history), output_name="two_tower", metadata={
        **_history_metadata(history, run.run_id, config.model_dump()),
        "first_val_loss": float(history[0]["val_loss"]) if history else float("nan"),
        "best_val_loss": float(min(h["val_loss"] for h in history)) if history else float("nan")})
    users, user_matrix, items = two_tower.vectors(model, data)
    yield from _checked_outputs(context, splits, run.run_id, {
        "two_tower_user_embeddings": pd.DataFrame({"user_idx": users, "vector": list(user_matrix)}),
        "two_tower_item_embeddings": _vectors("item_idx", items, np.arange(1, len(items)))})


two_tower_user_embeddings_valid = _vectors_check("two_tower_user_embeddings", "user_idx")
two_tower_item_embeddings_valid = _vectors_check("two_tower_item_embeddings", "item_idx")


@dg.asset(group_name="models", **GPU, kinds={"pytorch", "mlflow"})
def ranker(context: dg.AssetExecutionContext, config: RankerRunConfig, models: ModelStoreResource,
           training_candidates: pd.DataFrame, splits: pd.DataFrame, id_maps: pd.DataFrame,
           user_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Per-epoch history (loss, gradient norm, and on the holdout users AUC, GAUC, log-loss, NDCG@20) of the DIN
    ranker, trained on training_candidates labelled by the val split (`models/din.py`); weights in the model store
    under the run id in the metadata, next to the same metrics of the candidates' own order."""
    settings = to_dataclass(config, din.DINConfig)
    catalog = din.Catalog.from_frames(splits, id_maps, user_attributes)
    try:
        data = din.RankingData.build(catalog, training_candidates, splits, ("train",), "val", settings.history_len)
    except ValueError as err:
        raise dg.Failure(f"ranker cannot read training_candidates: {err}") from err
    params = config.model_dump()
    with models.run(context, {**params, "channels": ",".join(data.channels), "rows": len(data.users)}) as run:
        model, history, baseline = din.train_din(data, catalog, settings, log=run.log_epoch)
        run.log_metrics({f"candidates_order_{k}": v for k, v in baseline.items()})
        run.save("ranker", model)
    table = pd.DataFrame(history)
    best = table.loc[table["val_ndcg_at_20"].idxmax()] if len(table) else {}
    curve = table[["epoch", "loss", "grad_norm", "val_auc", "val_gauc", "val_logloss", "val_ndcg_at_20"]]
    return dg.Output(table, metadata={
        **_history_metadata(history, run.run_id, params), "channels": ",".join(data.channels),
        "training_rows": len(data.users), "positives": int(data.labels.sum()),
        "loss_curve": dg.MetadataValue.md(curve.to_markdown(index=False, floatfmt=".4f")),
        **{f"best_val_{k}": float(best[f"val_{k}"]) for k in ("auc", "gauc", "logloss")},
        **{f"candidates_order_val_{k}": float(v) for k, v in baseline.items()},
        "samples_per_s": float(table["samples_per_s"].mean()) if len(table) else 0.0})


@dg.asset_check(asset="ranker", name="ranker_training", blocking=True,
                description="Every epoch's loss and gradient norm finite, and the loss fell from the first epoch "
                            "by the best one (the notebook's DIN diverged).")
def ranker_training(history: pd.DataFrame) -> dg.AssetCheckResult:
    records = history.to_dict("records")
    return check_result(training_problems(records), f"{len(records)} epochs, loss "
                        f"{records[0]['loss']:.4f} -> {records[-1]['loss']:.4f}" if records else "",
                        epochs=len(records))


@dg.multi_asset(
    group_name="models", **GPU,
    ins={"cf_model": dg.AssetIn()},
    outs={
        "adapter": dg.AssetOut(kinds={"pytorch", "mlflow"}, description=(
            "Per-epoch history of cf_model's CF model fine-tuned jointly with the adapter (BPR + alignment + "
            "Swing-pair InfoNCE + reconstruction); adapter weights in the model store under the run id.")),
        "adapted_user_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the adapter's encoding of each user's LLM embedding.")),
        "adapted_item_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the adapter's encoding of each item's LLM embedding.")),
        "aligned_user_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(user_idx, vector): the jointly fine-tuned CF model's users, aligned with the LLM embeddings.")),
        "aligned_item_embeddings": dg.AssetOut(kinds={"parquet"}, description=(
            "(item_idx, vector): the jointly fine-tuned CF model's items, aligned with the LLM embeddings.")),
    },
)
def adapter(context: dg.AssetExecutionContext, config: AdapterRunConfig, models: ModelStoreResource,
            cf_model: pd.DataFrame, splits: pd.DataFrame, id_maps: pd.DataFrame,
            user_llm_embeddings: pd.DataFrame, item_llm_embeddings: pd.DataFrame,
            user_positive_pairs: pd.DataFrame, item_positive_pairs: pd.DataFrame):
    """RLMRec-style alignment of LLM embeddings with cf_model's CF model, fine-tuned jointly (`models/adapter.py`)."""
    sizes = index_sizes(id_maps)
    inputs = adapter_model.AdapterInputs.from_frames(sizes["user"], sizes["item"], user_llm_embeddings,
                                                     item_llm_embeddings, user_positive_pairs, item_positive_pairs)
    base_run = latest_run_id(context, "cf_model")
    base = models.load(base_run, "cf_model")
    params = {**config.model_dump(), "base_run_id": base_run, "llm_dim": inputs.user_llm.shape[1],
              "llm_encoder": _encoders(user_llm_embeddings, item_llm_embeddings)}
    with models.run(context, params) as run:
        model, net, history = adapter_model.train_aligned(_eval_data(splits, id_maps), inputs, base,
                                                          to_dataclass(config, adapter_model.AdapterConfig),
                                                          log=run.log_epoch)
        run.save("adapter", net)
    yield dg.Output(pd.DataFrame(history), output_name="adapter", metadata=_history_metadata(
        history, run.run_id, params))
    profiled_users = np.sort(user_llm_embeddings["user_idx"].to_numpy())
    profiled_items = np.sort(item_llm_embeddings["item_idx"].to_numpy())
    outputs = {"adapted_user_embeddings": _vectors("user_idx", adapter_model.encode(net, inputs.user_llm),
                                                   profiled_users),
               "adapted_item_embeddings": _vectors("item_idx", adapter_model.encode(net, inputs.item_llm),
                                                   profiled_items),
               **_cf_vectors(model, "aligned")}
    yield from _checked_outputs(context, splits, run.run_id, outputs)


def _encoders(*frames: pd.DataFrame) -> str:
    """Which encoder(s) produced the LLM embeddings (their `encoder` column), for the adapter's params."""
    names = sorted({str(e) for f in frames for e in (f["encoder"].unique() if "encoder" in f.columns
                                                      else ["unrecorded"])})
    return " | ".join(names)


@dg.asset_check(asset="adapter", name="adapter_reconstruction", blocking=True,
                additional_ins={"user_llm_embeddings": dg.AssetIn("user_llm_embeddings"),
                                "item_llm_embeddings": dg.AssetIn("item_llm_embeddings")})
def adapter_reconstruction(context: dg.AssetCheckExecutionContext, models: ModelStoreResource,
                           history: pd.DataFrame, user_llm_embeddings: pd.DataFrame,
                           item_llm_embeddings: pd.DataFrame) -> dg.AssetCheckResult:
    """On held-out users and items, the decoder (weights from the model store) beats predicting the mean."""
    net = models.load(str(materialized_metadata(context, "adapter")["mlflow_run_id"]), "adapter")
    frames = {"user": user_llm_embeddings, "item": item_llm_embeddings}
    problems, errors = adapter_model.reconstruction_problems(net, frames)
    return check_result(problems, "; ".join(f"{e}s: decoder MSE {m:.5f} vs mean predictor {b:.5f}"
                                            for e, (m, b) in errors.items()),
                        **{f"{e}_mse": m for e, (m, _) in errors.items()},
                        **{f"{e}_mean_predictor_mse": b for e, (_, b) in errors.items()})


cf_user_embeddings_valid = _vectors_check("cf_user_embeddings", "user_idx")
cf_item_embeddings_valid = _vectors_check("cf_item_embeddings", "item_idx")
aligned_user_embeddings_valid = _vectors_check("aligned_user_embeddings", "user_idx")
aligned_item_embeddings_valid = _vectors_check("aligned_item_embeddings", "item_idx")
adapted_user_embeddings_valid = _vectors_check("adapted_user_embeddings", "user_idx")
adapted_item_embeddings_valid = _vectors_check("adapted_item_embeddings", "item_idx")
