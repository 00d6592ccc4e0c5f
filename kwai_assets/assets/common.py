"""Shared pieces of the asset layer: partitions, configs derived from dataclasses, checks, guarded writes."""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

import dagster as dg
import pandas as pd
import pydantic

from kwai_assets.core.steps import agreement_problems
from kwai_assets.settings import current

DAILY = dg.DailyPartitionsDefinition(start_date=current().start_date)
SHARDS = dg.StaticPartitionsDefinition([str(s) for s in range(current().llm_shards)])

# Where a step needs the GPU: the `gpu` concurrency pool (one step per GPU on one machine, dagster.yaml), and on
# Kubernetes (KWAI_EXECUTOR=k8s) a pod that requests one GPU; other executors ignore the tag.
GPU = {"pool": "gpu", "op_tags": {"dagster-k8s/config": {"container_config": {
    "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}}}}}

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", re.MULTILINE)


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass field's trailing comment is its documentation: `dim: int = 64   # hidden size`."""
    return dict(_COMMENT.findall(inspect.getsource(cls)))


def config_from(cls: type, doc: str | None = None, **extra: tuple[type, object, str]) -> type[dg.Config]:
    """The Dagster run config of a model, derived from its dataclass: same fields, defaults and comments.

    `extra` adds fields the asset needs beside the model's own: name=(type, default, description).
    """
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    fields = {f.name: (hints[f.name], pydantic.Field(f.default, description=docs.get(f.name)))
              for f in dataclasses.fields(cls)}
    fields |= {name: (kind, pydantic.Field(default, description=text)) for name, (kind, default, text) in extra.items()}
    config = pydantic.create_model(f"{cls.__name__}Run", __base__=dg.Config, **fields)
    config.__doc__ = doc or f"Run config of `{cls.__module__}.{cls.__name__}` (same fields and defaults)."
    return config


def to_dataclass(config: dg.Config, cls: type):
    """The model's dataclass from its derived run config (extra fields dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in config.model_dump().items() if k in names})


def materialized_metadata(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
                          asset: str) -> dict[str, object]:
    """Metadata of the asset's latest materialization: the parameters it was built with."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def latest_run_id(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, asset: str) -> str:
    """The model-store run of `asset`'s stored version: its latest materialization's metadata says which."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or "mlflow_run_id" not in event.asset_materialization.metadata:
        raise dg.Failure(f"{asset} has no materialization with a model-store run; materialize {asset} first")
    return str(event.asset_materialization.metadata["mlflow_run_id"].value)


def check_result(problems: list[str], ok: str, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                 **metadata: object) -> dg.AssetCheckResult:
    """A check's result from its pure function's problems: passed when there are none."""
    return dg.AssetCheckResult(passed=not problems, description="; ".join(problems[:5]) or ok, severity=severity,
                               metadata={"problems": len(problems), **{k: _plain(v) for k, v in metadata.items()}})


def guard(context: dg.AssetExecutionContext, asset: str, df: pd.DataFrame, problems: list[str]) -> None:
    """Run a blocking check's logic before the write: a failing version never replaces the stored one.

    The rejected frame is kept aside in the warehouse's `_rejected/` for inspection and named in the error.
    """
    if not problems:
        return
    path = context.resources.io_manager.warehouse.reject(df, asset, context.run_id)
    raise dg.Failure(description=f"{asset} failed its check, so the stored version is unchanged: "
                                 f"{'; '.join(problems[:5])}. The rejected version is kept at {path}",
                     metadata={"rejected": str(path), "problems": len(problems)})


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars, for Dagster metadata."""
    return value.item() if hasattr(value, "item") else value


def engines_agree(asset: str) -> dg.AssetChecksDefinition:
    """A check on `asset`: the latest DuckDB and Spark materializations made from the same input as its latest
    one (metadata `engine`, `input_digest`, `output_rows`, `output_digest`) wrote the same rows."""

    @dg.asset_check(asset=asset, name=f"{asset}_engines_agree",
                    description="When both engines have materialized it from the same input (and config), they "
                                "wrote as many rows, and the same rows where the asset records a digest.")
    def _check(context) -> dg.AssetCheckResult:     # unannotated: this module's annotations are strings
        records = context.instance.fetch_materializations(dg.AssetKey(asset), limit=500).records
        metas = [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]
        metas = [m for m in metas if {"engine", "input_digest", "output_rows"} <= set(m)]
        if not metas:
            return check_result([], f"no materialization of {asset} records its engine")
        outputs: dict[str, tuple[int, str | None]] = {}
        for meta in metas:                                  # newest first: the latest per engine, same input
            if meta["input_digest"] == metas[0]["input_digest"]:
                outputs.setdefault(str(meta["engine"]), (int(meta["output_rows"]), meta.get("output_digest")))
        ok = (f"from the same input both engines wrote {next(iter(outputs.values()))[0]:,} rows"
              if len(outputs) > 1 else f"only {next(iter(outputs))} has materialized {asset} from this input")
        return check_result(agreement_problems(asset, outputs), ok, engines=len(outputs))

    return _check
