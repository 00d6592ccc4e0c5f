"""[llm] Prompts from the train split; LLM profiles and embeddings in static shards on the `gpu` pool."""
import json

import dagster as dg
import numpy as np
import pandas as pd

from kwai_assets.assets.common import materialized_metadata, result
from kwai_assets.io.resources import LLMResource, MLflowTracking, WarehouseResource
from kwai_assets.llm.profiles import embed_profiles, generate_profiles, shard_of
from kwai_assets.llm.prompts import PromptConfig, count_tokens, item_prompts, user_prompts
from kwai_assets.settings import Settings

SHARDS = dg.StaticPartitionsDefinition([str(s) for s in range(Settings.from_env().llm_shards)])
BUILDERS = {"user": user_prompts, "item": item_prompts}


class PromptsConfig(dg.Config):
    max_tokens: int = 512        # estimated tokens per prompt; lists shrink to fit
    top_places: int = 10
    top_categories: int = 8


def _llm_group(entity: str) -> list:
    key = f"{entity}_idx"
    prompts_name, profiles_name, embeddings_name = f"{entity}_prompts", f"{entity}_profiles", f"{entity}_llm_embeddings"

    @dg.asset(name=prompts_name, group_name="llm", kinds={"duckdb", "parquet"})
    def prompts(config: PromptsConfig, splits: pd.DataFrame, id_maps: pd.DataFrame, user_attributes: pd.DataFrame,
                poi_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        df = BUILDERS[entity](splits, id_maps, user_attributes, poi_attributes,
                              PromptConfig(config.max_tokens, config.top_places, config.top_categories))
        df["shard"] = shard_of(df[key], len(SHARDS.get_partition_keys()))
        return dg.Output(df, metadata={"rows": len(df), "max_tokens": config.max_tokens,
                                       "mean_prompt_tokens": float(df["prompt_tokens"].mean()) if len(df) else 0.0,
                                       "example": dg.MetadataValue.md(f"```\n{df['prompt'].iloc[0]}\n```") if len(df) else ""})

    @dg.asset_check(asset=prompts_name, name=f"{prompts_name}_train_only", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits")})
    def prompts_check(context: dg.AssetCheckExecutionContext, df: pd.DataFrame, splits: pd.DataFrame) -> dg.AssetCheckResult:
        """One prompt per entity of the train split, within the token bound, counting train rows only."""
        limit = int(materialized_metadata(context, prompts_name).get("max_tokens", 512))
        train = splits[splits["split"] == "train"].groupby(key).size()
        counted = pd.Series([json.loads(d)["interactions"] for d in df["document"]], index=df[key])
        over = int((df["prompt_tokens"] > limit).sum())
        miscount = int((counted != train.reindex(counted.index)).sum())
        missing = len(set(train.index) - set(df[key]))
        recount = int((df["prompt"].map(count_tokens) != df["prompt_tokens"]).sum())
        passed = not (over or miscount or missing or recount)
        return result(passed, f"{missing} {entity}s without a prompt, {over} over {limit} tokens, "
                              f"{miscount} counting other than their train interactions",
                      missing=missing, over_limit=over, not_train_counts=miscount, limit=limit)

    @dg.asset(name=profiles_name, group_name="llm", partitions_def=SHARDS, pool="gpu", kinds={"pytorch", "mlflow"},
              ins={"prompts": dg.AssetIn(prompts_name)})
    def profiles(context: dg.AssetExecutionContext, llm: LLMResource, mlflow: MLflowTracking,
                 prompts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        """LLM summary of each prompt of this shard, cached by hash(backend, model, params, prompt)."""
        part = prompts[prompts["shard"] == int(context.partition_key)].reset_index(drop=True)
        backend = llm.open()
        out, stats = generate_profiles(part["prompt"], backend, llm.cache(), batch_size=llm.batch_size)
        out.insert(0, key, part[key].to_numpy())
        with mlflow.start_run(f"{profiles_name}[{context.partition_key}]", tags={"asset": profiles_name}) as run:
            import mlflow as mlf

            mlf.log_params({"backend": backend.kind, "model": backend.model, "batch_size": llm.batch_size,
                            "max_new_tokens": llm.max_new_tokens, "shard": context.partition_key})
            mlf.log_metrics(stats.as_metadata())
        return dg.Output(out, metadata={**stats.as_metadata(), "backend": backend.identity(),
                                        "empty_profiles": int((out["profile"].str.strip() == "").sum()),
                                        "mlflow_run_id": run.info.run_id})

    @dg.asset(name=embeddings_name, group_name="llm", partitions_def=SHARDS, pool="gpu", kinds={"pytorch", "parquet"},
              ins={"profiles": dg.AssetIn(profiles_name)})
    def embeddings(llm: LLMResource, profiles: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        """One vector per profile: mean-pooled last hidden state, or the template encoder."""
        backend = llm.open()
        vectors = embed_profiles(profiles["profile"].tolist(), backend)
        df = pd.DataFrame({key: profiles[key].to_numpy(), "vector": list(vectors)})
        return dg.Output(df, metadata={"rows": len(df), "dim": int(vectors.shape[1]) if len(df) else 0,
                                       "encoder": backend.describe_embedding()})

    @dg.asset_check(asset=embeddings_name, name=f"{embeddings_name}_valid", blocking=True)
    def embeddings_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        """Every stored shard: one finite, non-zero vector of the same size per profile."""
        wh, problems, rows, dims = warehouse.get(), [], 0, set()
        for shard in wh.partitions(embeddings_name):
            vectors, texts = wh.read(embeddings_name, [shard]), wh.read(profiles_name, [shard])
            matrix = np.stack(vectors["vector"].to_numpy()) if len(vectors) else np.zeros((0, 0))
            rows, dims = rows + len(vectors), dims | {matrix.shape[1]}
            if not vectors[key].equals(texts[key]):
                problems.append(f"shard {shard}: {entity}s differ from {profiles_name}")
            if not np.isfinite(matrix).all() or (np.abs(matrix).sum(axis=1) == 0).any():
                problems.append(f"shard {shard}: non-finite or all-zero vectors")
        if len(dims) > 1:
            problems.append(f"shards disagree on the dimension: {sorted(dims)}")
        return result(not problems, "; ".join(problems) or f"{rows} vectors, dim {dims.pop() if dims else 0}",
                      rows=rows, problems=len(problems))

    return [prompts, prompts_check, profiles, embeddings, embeddings_check]


(user_prompts_asset, user_prompts_train_only, user_profiles, user_llm_embeddings,
 user_llm_embeddings_valid) = _llm_group("user")
(item_prompts_asset, item_prompts_train_only, item_profiles, item_llm_embeddings,
 item_llm_embeddings_valid) = _llm_group("item")
