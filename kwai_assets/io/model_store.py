"""The model store: every trained model's parameters, per-epoch metrics and weights, in MLflow.

One MLflow run per materialization. The asset puts the run id in its metadata;
``ModelStore.load(run_id, name)`` rebuilds the model saved under ``name`` from
that run. Weights are written by the model's own module (``save(model, folder)``
/ ``load(folder)`` in ``kwai_assets.models.*``), so every model has one format
and loading never unpickles anything (``torch.load(weights_only=True)``).

By default the tracking store is SQLite under ``KWAI_HOME`` and the artifacts
live in ``KWAI_HOME/mlartifacts``. MLflow records absolute artifact locations; a
home that was moved or copied is relocated on open, so it never writes into the
old one. On a cluster every step's pod needs the same store: a database or
tracking-server URI (``KWAI_MLFLOW_TRACKING_URI``) and an artifact root URL
(``KWAI_MLFLOW_ARTIFACTS``: ``s3://...``, ``file://...``), which MLflow's own
artifact repositories read and write.

No Dagster here: the asset layer wraps this in a resource that passes the run's
logger as ``progress``.
"""
from __future__ import annotations

import importlib
import json
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from kwai_assets.io.urls import safe_url

EXPERIMENT = "kwai_assets"
MODEL_FILE = "kwai_model.json"          # which kwai_assets.models module wrote the folder


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def artifact_url(location: str) -> str:
    """A URL as MLflow records it: a plain path made absolute (`file://`), a URL as it is."""
    return location.rstrip("/") if "://" in location else Path(location).expanduser().resolve().as_uri()


def describe(metrics: dict[str, object]) -> str:
    """'loss 1.234, val_ndcg_at_20 0.0512': one progress line of a training step."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


@dataclass
class TrackedRun:
    """An open MLflow run: what a training asset logs into."""

    client: object
    run_id: str
    progress: Callable[[str], None] | None = None

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        flat = {k: v for k, v in params.items() if not isinstance(v, dict)}
        self.client.log_batch(self.run_id, params=[Param(k, str(_plain(v))[:6000]) for k, v in flat.items()])

    def log_metrics(self, metrics: dict[str, object], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {k: float(_plain(v)) for k, v in metrics.items() if isinstance(_plain(v), int | float)}
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()
                                                    if math.isfinite(v)])

    def log_epoch(self, epoch: int, metrics: dict[str, object]) -> None:
        """The training loops' callback: metrics to MLflow at step `epoch`, one progress line to the run's log."""
        self.log_metrics(metrics, step=epoch)
        if self.progress is not None:
            self.progress(f"epoch {epoch}: {describe({k: v for k, v in metrics.items() if k != 'epoch'})}")

    def log_text(self, text: str, file: str) -> None:
        self.client.log_text(self.run_id, text, file)

    def save(self, name: str, model: object) -> None:
        """The model's weights and config as the artifact folder `name`, written by its module's `save`."""
        module = type(model).__module__
        if not module.startswith("kwai_assets.models."):
            raise TypeError(f"{type(model).__name__} is not a kwai_assets model; cannot save it as {name!r}")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            importlib.import_module(module).save(model, folder)
            (folder / MODEL_FILE).write_text(json.dumps({"module": module, "class": type(model).__name__}))
            self.client.log_artifacts(self.run_id, str(folder), name)


class ModelStore:
    def __init__(self, home: str | Path, tracking_uri: str = "", artifacts: str = "", experiment: str = EXPERIMENT):
        """`tracking_uri` and `artifacts` default to the store under `home`. A tracking server (http(s)://) with no
        artifact URL keeps its own default root; a database keeps the weights under `home`."""
        self.home = Path(home).resolve()
        self.in_home = not tracking_uri and not artifacts
        self.tracking_uri = tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        server = tracking_uri.startswith(("http://", "https://", "databricks"))
        self.artifact_root = (artifact_url(artifacts) if artifacts else
                              "" if server else (self.home / "mlartifacts").as_uri())
        self.experiment = experiment

    @cached_property
    def client(self):
        from mlflow import MlflowClient  # slow to import: only when a model is tracked or loaded

        self.home.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is not None and self.artifact_root and experiment.artifact_location != self.artifact_root:
            if not self.in_home:
                raise ValueError(f"MLflow experiment {self.experiment!r} in {safe_url(self.tracking_uri)} keeps its "
                                 f"artifacts at {experiment.artifact_location}, not at {self.artifact_root} "
                                 "(KWAI_MLFLOW_ARTIFACTS): set that back, or use a new tracking store")
            self._relocate(experiment.artifact_location, self.artifact_root)
        return client

    def _relocate(self, old: str, new: str) -> None:
        """Point a moved or copied home's experiment and runs at its own artifact folder."""
        with sqlite3.connect(self.home / "mlflow.db") as db:
            db.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (new, old))
            db.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE artifact_uri LIKE ? || '%'",
                       (new, len(old) + 1, old))

    @cached_property
    def experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(self.experiment, artifact_location=self.artifact_root or None)

    @contextmanager
    def run(self, name: str, params: dict[str, object] | None = None, tags: dict[str, str] | None = None,
            progress: Callable[[str], None] | None = None) -> Iterator[TrackedRun]:
        """One MLflow run, FINISHED when the block ends, FAILED (and never referenced) when it raises."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"asset": name, **(tags or {})})
        tracked = TrackedRun(self.client, run.info.run_id, progress)
        if params:
            tracked.log_params(params)
        try:
            yield tracked
        except BaseException:
            self.client.set_terminated(run.info.run_id, "FAILED")
            raise
        self.client.set_terminated(run.info.run_id, "FINISHED")

    def load(self, run_id: str, name: str) -> object:
        """The model saved as `name` in run `run_id`, rebuilt by the module that saved it."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(self.client.download_artifacts(run_id, name, tmp))
            module = json.loads((folder / MODEL_FILE).read_text())["module"]
            if not module.startswith("kwai_assets.models."):
                raise ValueError(f"run {run_id}: {name} names {module!r}, not a kwai_assets model module")
            return importlib.import_module(module).load(folder)

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)
