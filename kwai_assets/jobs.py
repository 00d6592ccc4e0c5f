"""The graph's selections and jobs: the one place that slices the graph.

`make demo` (`kwai demo`), the tests (`tests/conftest.py`) and the schedule all run these jobs; `STAGES` is the
order in which a fresh home is built: the days, what needs no LLM shard, the shards, what needs the shards.
"""
from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

RAW = dg.AssetSelection.assets("raw_interactions")
SHARDED = dg.AssetSelection.assets("user_profiles", "item_profiles", "user_llm_embeddings", "item_llm_embeddings")
# everything the daily schedule refreshes: all but the LLM group, which is partitioned by shard, not by day
DAILY = dg.AssetSelection.groups("ingest", "prepare", "graph", "models", "recall", "serve", "evaluate")

ingest = dg.define_asset_job("ingest", selection=RAW,
                             description="raw_interactions for a range of days, in one run.")
prepare_and_train = dg.define_asset_job(
    "prepare_and_train", selection=dg.AssetSelection.all() - RAW - SHARDED.downstream(),
    description="Everything from the stored days that does not need the LLM shards (prompts included).")
llm_profiles = dg.define_asset_job(
    "llm_profiles", selection=SHARDED,
    description="LLM profiles and embeddings of one shard; a backfill of every shard queues on the gpu pool.")
after_llm = dg.define_asset_job(
    "after_llm", selection=SHARDED.downstream() - SHARDED,
    description="What needs the LLM embeddings: the adapter and the evaluation.")
daily_refresh = dg.define_asset_job(
    "daily_refresh", selection=DAILY,
    description="Yesterday's raw_interactions and everything downstream of it (the LLM shards as last built).")

JOBS = [ingest, prepare_and_train, llm_profiles, after_llm, daily_refresh]
SCHEDULES = [dg.build_schedule_from_partitioned_job(daily_refresh, hour_of_day=2, minute_of_hour=0)]


@dataclass(frozen=True)
class Stage:
    job: str
    partitions: str | None = None      # "days": one run over every day of the source; "shards": a run per shard


STAGES = (Stage("ingest", "days"), Stage("prepare_and_train"), Stage("llm_profiles", "shards"), Stage("after_llm"))
