"""Run the graph's jobs in stage order on a Dagster instance: `kwai demo`, `kwai run JOB`, and the tests.

Runs are in-process (each multiprocess step would pay seconds to import the stack) and recorded in the instance,
so the Dagster UI shows them. Run config is given once for the whole graph; each job gets the ops it contains.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import dagster as dg
import pandas as pd
import psutil

from kwai_assets.jobs import STAGES, Stage
from kwai_assets.settings import Settings
from kwai_assets.sources import open_source

PID_TAG, HOST_TAG = "kwai/pid", "kwai/host"
LIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Free what dead runs hold, so a killed run never blocks the `gpu` pool.

    A run started by `kwai` on this host whose process is gone is marked failed; every finished run that still
    holds a pool slot (killed, or marked failed by hand) gets its slots freed. Returns the runs it changed.
    """
    changed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=LIVE, tags={HOST_TAG: socket.gethostname()})):
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and not psutil.pid_exists(pid):
            instance.report_run_failed(run, f"the process running it (pid {pid}) is gone")
            changed.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                changed.append(run_id)
    return sorted(set(changed))


def job_config(job: dg.JobDefinition, run_config: dict | None) -> dict:
    """The part of a whole-graph run config that concerns `job`'s ops."""
    ops = (run_config or {}).get("ops", {})
    nodes = {node.name for node in job.graph.nodes}
    return {"ops": {name: cfg for name, cfg in ops.items() if name in nodes}} if ops else {}


def source_days(settings: Settings) -> tuple[str, str]:
    first, last = open_source(settings.source, preset=settings.preset, seed=settings.seed,
                              start_date=settings.start_date, data_dir=settings.data_dir).date_range()
    if first.isoformat() < settings.start_date:
        raise ValueError(f"the source starts on {first}, before KWAI_START_DATE={settings.start_date}; "
                         f"set KWAI_START_DATE={first}")
    return first.isoformat(), last.isoformat()


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, *, partition: str | None = None,
            days: tuple[str, str] | None = None, run_config: dict | None = None,
            raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """One run of job `name`: for one partition, a range of days (one run), or unpartitioned."""
    job = defs.resolve_job_def(name)
    fail_dead_runs(instance)
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    if days:
        tags |= {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]}
    return job.execute_in_process(run_config=job_config(job, run_config), instance=instance, partition_key=partition,
                                  tags=tags, raise_on_error=raise_on_error)


def run_stages(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, *,
               stages: tuple[Stage, ...] = STAGES, days: tuple[str, str] | None = None,
               run_config: dict | None = None,
               announce: Callable[[str], None] = lambda _: None) -> list[dg.ExecuteInProcessResult]:
    """Every stage in order (the whole graph on a fresh home); stops at the first failed run."""
    results = []
    for stage in stages:
        if stage.partitions == "days":
            span = days or source_days(settings)
            announce(f"{stage.job}: days {span[0]}...{span[1]}")
            results.append(run_job(defs, instance, stage.job, days=span, run_config=run_config))
        elif stage.partitions == "shards":
            for shard in [str(s) for s in range(settings.llm_shards)]:
                announce(f"{stage.job}: shard {shard}")
                results.append(run_job(defs, instance, stage.job, partition=shard, run_config=run_config))
        else:
            announce(stage.job)
            results.append(run_job(defs, instance, stage.job, run_config=run_config))
    return results


def step_times(instance: dg.DagsterInstance, results: list[dg.ExecuteInProcessResult]) -> pd.DataFrame:
    """Wall seconds of every step of the runs, in run order: where a run's time went."""
    rows = []
    for result in results:
        run = instance.get_run_by_id(result.run_id)
        partition = run.tags.get("dagster/partition", "") if run else ""
        for stat in instance.get_run_step_stats(result.run_id):
            seconds = (stat.end_time or time.time()) - (stat.start_time or time.time())
            rows.append({"job": result.job_def.name, "partition": partition, "step": stat.step_key,
                         "seconds": round(seconds, 1)})
    return pd.DataFrame(rows, columns=["job", "partition", "step", "seconds"])
