"""[llm] Prompts from the train split; LLM profiles and embeddings in static shards on the `gpu` pool.

Assets (per entity in user, item): `{entity}_prompts`, `{entity}_profiles` and `{entity}_llm_embeddings`
(both partitioned by SHARDS). Checks: `{entity}_prompts_train_only`, `{entity}_llm_embeddings_valid`.
"""
import time

import dagster as dg
import pandas as pd

from kwai_assets.assets.common import GPU, SHARDS, check_result, config_from, guard, materialized_metadata, to_dataclass
from kwai_assets.core.vectors import vector_problems
from kwai_assets.llm import prompts as builders
from kwai_assets.llm.profiles import embed_profiles, embedding_texts, generate_profiles, shard_of
from kwai_assets.llm.texts import entity_texts
from kwai_assets.resources import LLMResource, ModelStoreResource, WarehouseResource

BUILDERS = {"user": builders.user_prompts, "item": builders.item_prompts}


PromptsConfig = config_from(builders.PromptConfig)


def _llm_group(entity: str) -> list:
    """The four assets and two checks of one entity (names in the module docstring)."""
    key = f"{entity}_idx"
    prompts_name, profiles_name, embeddings_name = f"{entity}_prompts", f"{entity}_profiles", f"{entity}_llm_embeddings"

    @dg.asset(name=prompts_name, group_name="llm", kinds={"duckdb", "parquet"},
              description=f"One JSON document and prompt per {entity} of the train split (never val or test), "
                          "and the text the encoder reads when the source names its items (MovieLens titles).")
    def prompts(context: dg.AssetExecutionContext, config: PromptsConfig, splits: pd.DataFrame,
                id_maps: pd.DataFrame, user_attributes: pd.DataFrame, poi_attributes: pd.DataFrame,
                item_attributes: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        df = BUILDERS[entity](splits, id_maps, user_attributes, poi_attributes,
                              to_dataclass(config, builders.PromptConfig))
        df["text"] = entity_texts(entity, df[key], splits, id_maps, item_attributes)
        df["shard"] = shard_of(df[key], len(SHARDS.get_partition_keys()))
        guard(context, prompts_name, df, builders.prompt_problems(df, splits, key, config.max_tokens))
        example = dg.MetadataValue.md(f"```\n{df['prompt'].iloc[0]}\n```") if len(df) else ""
        return dg.Output(df, metadata={"rows": len(df), "max_tokens": config.max_tokens, "example": example,
                                       "texts": int((df["text"] != "").sum()),
                                       "mean_prompt_tokens": float(df["prompt_tokens"].mean()) if len(df) else 0.0})

    @dg.asset_check(asset=prompts_name, name=f"{prompts_name}_train_only", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits")},
                    description=f"One prompt per {entity} of the train split, within the token bound, "
                                "counting train rows only.")
    def prompts_check(context: dg.AssetCheckExecutionContext, df: pd.DataFrame,
                      splits: pd.DataFrame) -> dg.AssetCheckResult:
        limit = int(materialized_metadata(context, prompts_name).get("max_tokens", 512))
        return check_result(builders.prompt_problems(df, splits, key, limit),
                            f"{len(df)} prompts from the train split, all within {limit} tokens", limit=limit)

    @dg.asset(name=profiles_name, group_name="llm", partitions_def=SHARDS, **GPU, kinds={"pytorch", "mlflow"},
              ins={"prompts": dg.AssetIn(prompts_name)},
              description=f"LLM summary of each {entity} prompt of this shard, cached by "
                          "hash(backend, model, params, prompt).")
    def profiles(context: dg.AssetExecutionContext, llm: LLMResource, models: ModelStoreResource,
                 prompts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        part = prompts[prompts["shard"] == int(context.partition_key)].reset_index(drop=True)
        backend = llm.open()
        params = {"backend": backend.kind, "model": backend.model, "batch_size": llm.batch_size,
                  "max_new_tokens": llm.max_new_tokens, "shard": context.partition_key}
        with models.run(context, params) as run:
            out, stats = generate_profiles(part["prompt"], backend, llm.cache(), batch_size=llm.batch_size,
                                           progress=context.log.info)
            run.log_metrics(stats.as_metadata())
        out.insert(0, key, part[key].to_numpy())
        return dg.Output(out, metadata={**stats.as_metadata(), "backend": backend.identity(),
                                        "empty_profiles": int((out["profile"].str.strip() == "").sum()),
                                        "mlflow_run_id": run.run_id})

    @dg.asset(name=embeddings_name, group_name="llm", partitions_def=SHARDS, **GPU,
              kinds={"pytorch", "parquet"}, ins={"profiles": dg.AssetIn(profiles_name),
                                                 "prompts": dg.AssetIn(prompts_name)},
              description=f"One vector per {entity} of this shard: the {entity}'s text (MovieLens titles) or else "
                          "its profile, embedded by the configured encoder (packaged sentence encoder, the LLM's "
                          "hidden states, or hashing); `encoder` names it.")
    def embeddings(context: dg.AssetExecutionContext, llm: LLMResource, profiles: pd.DataFrame,
                   prompts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        encoder = llm.text_encoder(log=context.log.warning)
        texts, read = embedding_texts(profiles, prompts, key)
        start = time.perf_counter()
        vectors = embed_profiles(texts, encoder)
        seconds = time.perf_counter() - start
        df = pd.DataFrame({key: profiles[key].to_numpy(), "vector": list(vectors), "encoder": encoder.describe()})
        guard(context, embeddings_name, df, vector_problems(df, key, profiles[key].to_numpy()))
        return dg.Output(df, metadata={"rows": len(df), "dim": int(vectors.shape[1]) if len(df) else 0,
                                       "encoder": encoder.describe(), "encoder_kind": encoder.kind, "texts": read,
                                       "seconds": round(seconds, 2),
                                       "texts_per_s": round(len(df) / seconds, 1) if seconds > 0 else 0.0})

    @dg.asset_check(asset=embeddings_name, name=f"{embeddings_name}_valid", blocking=True,
                    description=f"Every stored shard: one finite, non-zero vector of one size per {entity} profile, "
                                "all shards from one encoder.")
    def embeddings_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        wh, problems, rows, dims, encoders = warehouse.get(), [], 0, set(), set()
        for shard in wh.partitions(embeddings_name):
            vectors, texts = wh.read(embeddings_name, [shard]), wh.read(profiles_name, [shard])
            problems += [f"shard {shard}: {p}" for p in vector_problems(vectors, key, texts[key].to_numpy())]
            rows, dims = rows + len(vectors), dims | ({len(vectors["vector"].iloc[0])} if len(vectors) else set())
            encoders |= set(vectors["encoder"].unique()) if "encoder" in vectors.columns else {"unrecorded"}
        if len(dims) > 1:
            problems.append(f"shards disagree on the dimension: {sorted(dims)}")
        if len(encoders) > 1:
            problems.append(f"shards were embedded by different encoders: {sorted(encoders)}; re-run every shard")
        return check_result(problems, f"{rows} vectors, dim {dims.pop() if dims else 0}", rows=rows)

    return [prompts, prompts_check, profiles, embeddings, embeddings_check]


(user_prompts, user_prompts_train_only, user_profiles, user_llm_embeddings,
 user_llm_embeddings_valid) = _llm_group("user")
(item_prompts, item_prompts_train_only, item_profiles, item_llm_embeddings,
 item_llm_embeddings_valid) = _llm_group("item")
