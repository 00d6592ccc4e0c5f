"""The warehouse and MLflow's artifacts in a bucket of a local S3 server, the tracking store elsewhere (the layout
of deploy/): every asset, check and model of `make demo`'s stages lands there, nothing in the home, and another
home (a second pod) loads the trained model."""
import fsspec
from conftest import RUN_CONFIG, graph, instance_for, tiny_settings

from kwai_assets.cli import summary
from kwai_assets.definitions import defs
from kwai_assets.io.model_store import ModelStore
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.jobs import STAGES
from kwai_assets.runner import run_stages


def test_the_demo_stages_read_and_write_only_the_configured_urls(tmp_path, s3):
    settings = tiny_settings(tmp_path / "home", warehouse=f"{s3}/demo/warehouse",
                             mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                             mlflow_artifacts=f"{s3}/demo/mlflow")
    results = run_stages(graph(settings), instance_for(settings), settings, stages=STAGES,
                         days=("2026-01-01", "2026-01-14"), run_config=RUN_CONFIG)
    assert all(r.success for r in results)
    assert [e.check_name for r in results for e in r.get_asset_check_evaluations() if not e.passed] == []

    wh = Warehouse(settings.home, settings.warehouse)
    stored = {key.path[-1] for key in defs.resolve_asset_graph().get_all_asset_keys()} - {"online_store"}  # Redis
    assert set(wh.assets()) == stored
    assert wh.asset_files("item_index", ".faiss") == [f"{c}.faiss" for c in ("cf", "interest", "item2vec",
                                                                           "two_tower")]
    assert {"popularity", "swing_item_knn", "cf"} <= set(wh.read("evaluation")["model"])
    assert not (settings.home / "warehouse").exists() and not (settings.home / "mlartifacts").exists()

    run_id = next(m.metadata["mlflow_run_id"].value for r in results
                  for m in r.asset_materializations_for_node("interest_model"))
    store = ModelStore(tmp_path / "another-home", settings.mlflow_tracking_uri, settings.mlflow_artifacts)
    assert store.load(run_id, "interest_model") is not None
    fs, root = fsspec.core.url_to_fs(settings.mlflow_artifacts)
    assert any(path.endswith("interest_model/kwai_model.json") for path in fs.find(root))
    assert f"warehouse   {s3}/demo/warehouse" in summary(settings)
