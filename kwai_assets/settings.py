"""Environment-level settings: the one place that reads the environment.

Everything that shapes the *graph* (where data lives, which source feeds it,
when daily partitions start, how many LLM shards) comes from the environment,
so that `dagster dev`, `dagster asset materialize`, `kwai` and the tests see the
same values. Tunables of a single asset (k of the k-core, a model's learning
rate, ...) are Dagster run config, derived from the dataclass that defines them.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("duckdb", "spark")
EXECUTORS = ("multiprocess", "k8s")


@dataclass(frozen=True)
class Settings:
    home: Path                 # KWAI_HOME: warehouse, catalog, MLflow store, Dagster instance, embedded Redis
    source: str                # KWAI_SOURCE: synthetic | files | movielens
    preset: str                # KWAI_PRESET: synthetic size (tiny | small | medium | large | xlarge)
    data_dir: str              # KWAI_DATA_DIR: directory of the files / movielens source
    start_date: str            # KWAI_START_DATE: first daily partition of raw_interactions
    seed: int                  # KWAI_SEED: synthetic generator seed
    llm_backend: str = "template"   # KWAI_LLM_BACKEND: template | transformers | vllm
    llm_model: str = ""             # KWAI_LLM_MODEL: local Hugging Face model directory
    llm_shards: int = 4             # KWAI_LLM_SHARDS: static partitions of the LLM assets
    redis_url: str = ""             # KWAI_REDIS_URL: the online store; empty = an embedded server under home
    encoder: str = "auto"           # KWAI_ENCODER: auto | sentence | hashed | llm (what embeds the profiles)
    encoder_model: str = ""         # KWAI_ENCODER_MODEL: local encoder folder; empty = the packaged all-MiniLM-L6-v2
    service_url: str = "http://127.0.0.1:8000"   # KWAI_SERVICE_URL: where `make serve` answers (the UI links to it)
    engine: str = "duckdb"          # KWAI_ENGINE: duckdb | spark, for the prepare and graph steps
    executor: str = "multiprocess"  # KWAI_EXECUTOR: multiprocess (one machine) | k8s (a pod per step; deploy/)
    warehouse: str = ""             # KWAI_WAREHOUSE: the warehouse's path or URL (s3://...); empty = home/warehouse
    mlflow_tracking_uri: str = ""   # KWAI_MLFLOW_TRACKING_URI: a database or server; empty = home/mlflow.db
    mlflow_artifacts: str = ""      # KWAI_MLFLOW_ARTIFACTS: MLflow's artifact root URL; empty = home/mlartifacts

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"KWAI_ENGINE must be one of {ENGINES}, got {self.engine!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"KWAI_EXECUTOR must be one of {EXECUTORS}, got {self.executor!r}")

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            home=Path(env.get("KWAI_HOME", ".kwai")).resolve(),
            source=env.get("KWAI_SOURCE", "synthetic"),
            preset=env.get("KWAI_PRESET", "small"),
            data_dir=env.get("KWAI_DATA_DIR", ""),
            start_date=env.get("KWAI_START_DATE", "2026-01-01"),
            seed=int(env.get("KWAI_SEED", "7")),
            llm_backend=env.get("KWAI_LLM_BACKEND", "template"),
            llm_model=env.get("KWAI_LLM_MODEL", ""),
            llm_shards=int(env.get("KWAI_LLM_SHARDS", "4")),
            redis_url=env.get("KWAI_REDIS_URL", ""),
            encoder=env.get("KWAI_ENCODER", "auto"),
            encoder_model=env.get("KWAI_ENCODER_MODEL", ""),
            service_url=env.get("KWAI_SERVICE_URL", "http://127.0.0.1:8000"),
            engine=env.get("KWAI_ENGINE", "duckdb"),
            executor=env.get("KWAI_EXECUTOR", "multiprocess"),
            warehouse=env.get("KWAI_WAREHOUSE", ""),
            mlflow_tracking_uri=env.get("KWAI_MLFLOW_TRACKING_URI", ""),
            mlflow_artifacts=env.get("KWAI_MLFLOW_ARTIFACTS", ""),
        )

    @property
    def llm_cache(self) -> Path:
        return self.home / "cache" / "llm"

    @property
    def encoder_cache(self) -> Path:
        return self.home / "cache" / "encoders"


@functools.cache
def current() -> Settings:
    """The settings of this process, read once."""
    return Settings.from_env()
