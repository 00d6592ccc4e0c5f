"""Dagster resources: the Parquet IO manager, the warehouse, the source, the model store, the LLM, Redis."""
from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from kwai_assets.io.model_store import ModelStore, TrackedRun
from kwai_assets.io.online_store import OnlineStore
from kwai_assets.io.redis_server import embedded_redis
from kwai_assets.io.urls import safe_url
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.settings import ENGINES, current
from kwai_assets.sources import Source, open_source

if TYPE_CHECKING:
    from kwai_assets.llm.backends import Backend
    from kwai_assets.llm.cache import GenerationCache
    from kwai_assets.llm.encoder import Encoder


def _asset_name(key: dg.AssetKey) -> str:
    return "__".join(key.path)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores every asset as Parquet in the warehouse (atomic writes).

    A run over several partitions hands over one DataFrame holding the
    column named by the asset's `partition_expr` metadata (`pdate` by default);
    it is split into one file per partition key, empty ones included, so every
    requested partition is materialized. Loading a partitioned asset
    into an unpartitioned one concatenates the stored partitions.
    """

    home: str
    url: str = ""                     # KWAI_WAREHOUSE: the warehouse's root; default <home>/warehouse

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.home, self.url)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}, "
                            "expected a DataFrame")
        name = _asset_name(context.asset_key)
        if not context.has_asset_partitions:
            path = self.warehouse.write(obj, name)
        else:
            keys = context.asset_partition_keys
            if len(keys) == 1:
                path = self.warehouse.write(obj, name, keys[0])
            else:
                column = (context.definition_metadata or {}).get("partition_expr", "pdate")
                if column not in obj.columns:
                    raise ValueError(f"{name}: a multi-partition output needs a '{column}' column to split on")
                groups = dict(tuple(obj.groupby(obj[column].astype(str), sort=False)))
                for key in keys:
                    self.warehouse.write(groups.get(key, obj.iloc[:0]), name, key)
                path = f"{self.warehouse.root}/{name}"
        context.add_output_metadata({"path": path, "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = _asset_name(context.asset_key)
        if context.has_asset_partitions:
            return self.warehouse.read(name, partitions=list(context.asset_partition_keys))
        return self.warehouse.read(name)


class WarehouseResource(dg.ConfigurableResource):
    """Direct warehouse access, for assets that read their own previous version."""

    home: str
    url: str = ""                     # KWAI_WAREHOUSE, as the IO manager's

    def get(self) -> Warehouse:
        return Warehouse(self.home, self.url)


class SourceResource(dg.ConfigurableResource):
    """Which source feeds the ingest group (see the README's data contract)."""

    kind: str = "synthetic"
    preset: str = "small"
    seed: int = 7
    start_date: str = "2026-01-01"
    data_dir: str = ""

    def get(self) -> Source:
        return open_source(self.kind, preset=self.preset, seed=self.seed,
                           start_date=self.start_date, data_dir=self.data_dir)


class ModelStoreResource(dg.ConfigurableResource):
    """The model store (MLflow; under KWAI_HOME unless told otherwise): one run per materialization, progress in
    the run's log."""

    home: str
    tracking_uri: str = ""            # KWAI_MLFLOW_TRACKING_URI; default sqlite under home
    artifacts: str = ""               # KWAI_MLFLOW_ARTIFACTS; default home/mlartifacts

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.home, self.tracking_uri, self.artifacts)

    def run(self, context: dg.AssetExecutionContext, params: dict[str, object] | None = None,
            name: str | None = None) -> AbstractContextManager[TrackedRun]:
        """Open a run named after the asset (or `name`); epochs and metrics go to MLflow and to `context.log`."""
        name = name or context.op_def.name
        if context.has_partition_key:
            name = f"{name}[{context.partition_key}]"
        return self.store.run(name, params, tags={"dagster_run_id": context.run_id}, progress=context.log.info)

    def load(self, run_id: str, name: str) -> object:
        return self.store.load(run_id, name)


@functools.lru_cache(maxsize=1)
def _backend(kind: str, model: str, batch_size: int, max_new_tokens: int, seed: int, embedding_dim: int) -> Backend:
    from kwai_assets.llm.backends import open_backend

    return open_backend(kind, model, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
                        embedding_dim=embedding_dim)


@functools.lru_cache(maxsize=1)
def _text_encoder(kind: str, model_dir: str, cache_dir: str, batch_size: int, precision: str, seed: int,
                  dim: int) -> Encoder:
    """A sentence or hashed encoder, loaded once per process (every shard's embedding step shares it)."""
    from kwai_assets.llm.encoder import open_encoder

    return open_encoder(kind, None, model_dir=model_dir, cache_dir=cache_dir, batch_size=batch_size,
                        precision=precision, seed=seed, dim=dim, log=lambda _: None)


class LLMResource(dg.ConfigurableResource):
    """Which LLM writes the profiles and embeds them (see kwai_assets/llm/backends.py)."""

    backend: str = "template"
    model: str = ""
    batch_size: int = 64
    max_new_tokens: int = 256
    seed: int = 0
    embedding_dim: int = 128          # hashed encoder only; the others have their model's size
    cache_dir: str = ""               # default: KWAI_HOME/cache/llm
    encoder: str = "auto"             # auto | sentence | hashed | llm: what embeds the profiles (llm/encoder.py)
    encoder_model: str = ""           # local encoder folder; default: the packaged all-MiniLM-L6-v2
    encoder_cache_dir: str = ""       # where the packaged model is extracted; default: KWAI_HOME/cache/encoders
    encoder_precision: str = "auto"   # auto (bf16 on CUDA and CPUs with native bf16) | float32 | bfloat16

    def open(self) -> Backend:
        """The backend, loaded once per process: a run's profile and embedding steps share the weights."""
        return _backend(self.backend, self.model, self.batch_size, self.max_new_tokens, self.seed, self.embedding_dim)

    def text_encoder(self, log: Callable[[str], None] | None = None) -> Encoder:
        """What embeds the profiles (`encoder`); `log` hears when `auto` falls back to hashing."""
        from kwai_assets.llm.encoder import fallback_message, open_encoder

        if self.encoder == "llm" or (self.encoder == "auto" and self.backend != "template"):
            return open_encoder(self.encoder, self.open())
        encoder = _text_encoder(self.encoder, self.encoder_model, self.encoder_cache_dir or
                                str(current().encoder_cache), self.batch_size, self.encoder_precision, self.seed,
                                self.embedding_dim)
        if self.encoder == "auto" and encoder.kind == "hashed" and log is not None:
            log(fallback_message())
        return encoder

    def cache(self) -> GenerationCache:
        from kwai_assets.llm.cache import GenerationCache

        return GenerationCache(self.cache_dir or str(current().llm_cache))


class EngineResource(dg.ConfigurableResource):
    """Which engine runs the prepare and graph steps (KWAI_ENGINE): `duckdb` (DuckDB, numpy, scipy) or `spark`
    (PySpark on KWAI_SPARK_MASTER, `local[2]` by default). Both write the same rows."""

    kind: str = "duckdb"

    def steps(self) -> ModuleType:
        """The engine's step functions (`kwai_assets.core.steps` or `kwai_assets.spark.steps`)."""
        if self.kind == "spark":
            from kwai_assets.spark import steps
            return steps
        if self.kind not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.kind!r}")
        from kwai_assets.core import steps
        return steps


class RedisResource(dg.ConfigurableResource):
    """Where the online store lives: KWAI_REDIS_URL and KWAI_REDIS_PASSWORD (kept out of metadata and logs),
    or, when no URL is set, an embedded server started under KWAI_HOME."""

    url: str = ""
    password: str = ""
    prefix: str = "kwai"
    home: str = ""                    # where the embedded server keeps its pid file; default KWAI_HOME

    def resolved_url(self) -> str:
        return self.url or embedded_redis(Path(self.home or current().home))

    def open(self) -> OnlineStore:
        return OnlineStore.connect(self.resolved_url(), self.password or None, self.prefix)

    def safe_url(self) -> str:
        """The URL without any password it carries, for metadata and logs."""
        return safe_url(self.resolved_url())
