"""Dagster resources: the Parquet IO manager, the warehouse, the source, MLflow, the LLM."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from kwai_assets.io.online_store import OnlineStore
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.sources import Source, open_source

if TYPE_CHECKING:
    from kwai_assets.llm.backends import Backend
    from kwai_assets.llm.cache import GenerationCache


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

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.home)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}, expected a DataFrame")
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
                path = None
                for key in keys:
                    path = self.warehouse.write(groups.get(key, obj.iloc[:0]), name, key)
                path = path.parent if path is not None else self.warehouse.root / name
        context.add_output_metadata({"path": str(path), "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        name = _asset_name(context.asset_key)
        if context.has_asset_partitions:
            return self.warehouse.read(name, partitions=list(context.asset_partition_keys))
        return self.warehouse.read(name)


class WarehouseResource(dg.ConfigurableResource):
    """Direct warehouse access, for assets that read their own previous version."""

    home: str

    def get(self) -> Warehouse:
        return Warehouse(self.home)


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


class MLflowTracking(dg.ConfigurableResource):
    """Opens one MLflow run per asset materialization; the run id goes in the metadata.

    A local SQLite store under KWAI_HOME by default; point `tracking_uri` at an
    MLflow server to share runs across machines.
    """

    tracking_uri: str
    artifact_location: str
    experiment: str = "kwai_assets"

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator[object]:
        import mlflow  # slow to import: only when a run is opened

        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment)
        if experiment is None:
            Path(self.artifact_location).mkdir(parents=True, exist_ok=True)
            experiment_id = mlflow.create_experiment(self.experiment, artifact_location=Path(self.artifact_location).as_uri())
        else:
            experiment_id = experiment.experiment_id
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags or {}) as run:
            yield run

    def download(self, run_id: str, artifact_path: str) -> str:
        """A local copy of a run's artifact folder (models logged by the training assets)."""
        import mlflow

        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                   tracking_uri=self.tracking_uri)


@functools.lru_cache(maxsize=1)
def _backend(kind: str, model: str, batch_size: int, max_new_tokens: int, seed: int, embedding_dim: int) -> Backend:
    from kwai_assets.llm.backends import open_backend

    return open_backend(kind, model, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
                        embedding_dim=embedding_dim)


class LLMResource(dg.ConfigurableResource):
    """Which LLM writes the profiles and embeds them (see kwai_assets/llm/backends.py)."""

    backend: str = "template"
    model: str = ""
    batch_size: int = 64
    max_new_tokens: int = 256
    seed: int = 0
    embedding_dim: int = 128          # template encoder only; model backends use the hidden size
    cache_dir: str

    def open(self) -> Backend:
        """The backend, loaded once per process: a run's profile and embedding steps share the weights."""
        return _backend(self.backend, self.model, self.batch_size, self.max_new_tokens, self.seed, self.embedding_dim)

    def cache(self) -> GenerationCache:
        from kwai_assets.llm.cache import GenerationCache

        return GenerationCache(self.cache_dir)


class RedisResource(dg.ConfigurableResource):
    """Where the online store lives: KWAI_REDIS_URL, KWAI_REDIS_PASSWORD (kept out of URLs and metadata)."""

    url: str = "redis://127.0.0.1:6379/0"
    password: str = ""
    prefix: str = "kwai"

    def open(self) -> OnlineStore:
        return OnlineStore.connect(self.url, self.password or None, self.prefix)

    def safe_url(self) -> str:
        """The URL without any password it carries, for metadata and logs."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
