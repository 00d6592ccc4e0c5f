"""The model store: one MLflow run per training, weights saved and loaded by the model's own module,
failed runs marked FAILED, and a moved home that keeps working in its new place."""
import shutil

import fsspec
import numpy as np
import pytest
import torch

from kwai_assets.io.model_store import MODEL_FILE, ModelStore
from kwai_assets.models.moe import MoE


def tiny_interest_model():
    from kwai_assets.models.interest import InterestConfig, InterestModel

    vocab = {"item": 20, "category": 5, "hour": 25, "weekday": 8, "weekend": 3, "event": 3}
    config = InterestConfig(dim=16, depth=1, heads=2, head_dim=8, n_experts=4)
    torch.manual_seed(0)
    return InterestModel(vocab, 8, 3, config, np.zeros(20, np.int64)).eval()


def test_save_load_round_trip_with_params_and_metrics(tmp_path):
    store, model = ModelStore(tmp_path / "home"), tiny_interest_model()
    with store.run("interest_model", {"dim": 16, "nested": {"ignored": 1}}) as run:
        run.log_epoch(1, {"epoch": 1, "loss": 2.5})
        run.save("interest_model", model)
    again = store.load(run.run_id, "interest_model")
    assert type(again) is type(model)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b.cpu()), name
    assert store.params(run.run_id) == {"dim": "16"} and store.metrics(run.run_id)["loss"] == 2.5


def test_progress_lines_and_failed_runs(tmp_path):
    store, lines = ModelStore(tmp_path), []
    with pytest.raises(RuntimeError), store.run("cf_model", progress=lines.append) as run:
        run.log_epoch(3, {"epoch": 3, "loss": 0.5, "val_ndcg_at_20": 0.0512})
        raise RuntimeError("diverged")
    assert lines == ["epoch 3: loss 0.5, val_ndcg_at_20 0.0512"]
    assert store.client.get_run(run.run_id).info.status == "FAILED"


def test_only_kwai_models_are_saved(tmp_path):
    with ModelStore(tmp_path).run("x") as run, pytest.raises(TypeError, match="not a kwai_assets model"):
        run.save("x", torch.nn.Linear(2, 2))
    assert MoE.__module__.startswith("kwai_assets.models.")


def test_a_moved_home_reads_and_writes_its_own_artifacts(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    with ModelStore(old).run("interest_model") as run:
        run.save("interest_model", tiny_interest_model())
    shutil.copytree(old, new)
    shutil.rmtree(old)                          # the old home is gone: nothing may depend on it
    store = ModelStore(new)
    assert isinstance(store.load(run.run_id, "interest_model"), torch.nn.Module)
    with store.run("interest_model") as again:
        again.save("interest_model", tiny_interest_model())
    assert not old.exists()
    assert (new / "mlartifacts").is_dir() and store.client.get_run(again.run_id).info.artifact_uri.startswith(
        (new / "mlartifacts").as_uri())


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_pods_with_their_own_homes_share_a_tracking_store_and_an_artifact_url(tmp_path, request, scheme):
    """As on a cluster: each step's pod has its own KWAI_HOME, the store and the artifacts are shared URLs."""
    artifacts = (tmp_path / "bucket" / "mlflow").as_uri() if scheme == "file" else (
        f"{request.getfixturevalue('s3')}/mlflow-{tmp_path.name}")
    shared = {"tracking_uri": f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}", "artifacts": artifacts}
    (tmp_path / "db").mkdir()
    trainer = ModelStore(tmp_path / "pod-1", **shared)
    with trainer.run("interest_model") as run:
        run.save("interest_model", tiny_interest_model())
    assert trainer.client.get_run(run.run_id).info.artifact_uri.startswith(artifacts)
    fs, root = fsspec.core.url_to_fs(artifacts)
    assert any(path.endswith(MODEL_FILE) for path in fs.find(root))
    reader = ModelStore(tmp_path / "pod-2", **shared)
    assert isinstance(reader.load(run.run_id, "interest_model"), torch.nn.Module)
    assert not list(tmp_path.glob("pod-*/mlartifacts")) and not list(tmp_path.glob("pod-*/mlflow.db"))


def test_an_artifact_url_the_experiment_does_not_use_is_refused(tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with ModelStore(tmp_path, tracking, (tmp_path / "a").as_uri()).run("x"):
        pass
    with pytest.raises(ValueError, match=r"keeps its artifacts at file://.*/a, not at file://.*/b "
                                         r"\(KWAI_MLFLOW_ARTIFACTS\)"), \
            ModelStore(tmp_path, tracking, (tmp_path / "b").as_uri()).run("y"):
        pass


def test_a_plain_artifact_path_is_recorded_as_mlflow_does_and_reopens(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):                  # the second open compares with what the first recorded
        with ModelStore(tmp_path / "home", tracking, "relative/artifacts").run("x") as run:
            run.save("interest_model", tiny_interest_model())
    assert list((tmp_path / "relative" / "artifacts").rglob(MODEL_FILE))


def test_a_tracking_database_keeps_the_weights_in_the_home_and_its_password_out_of_the_definitions(tmp_path,
                                                                                                   monkeypatch):
    store = ModelStore(tmp_path, f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert store.artifact_root == (tmp_path / "mlartifacts").as_uri()         # not MLflow's ./mlruns
    assert ModelStore(tmp_path, "https://mlflow.internal").artifact_root == ""   # a server keeps its own root
    monkeypatch.setenv("KWAI_MLFLOW_TRACKING_URI", "postgresql://mlflow:secret@db/mlflow")
    from kwai_assets.definitions import build_resources
    from kwai_assets.settings import Settings

    config = build_resources(Settings.from_env())["models"].model_dump()
    assert config["tracking_uri"] == "KWAI_MLFLOW_TRACKING_URI" and "secret" not in str(config)
