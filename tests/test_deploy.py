"""deploy/: the Kubernetes executor, the GPU steps' pod request, and the files that deploy the graph."""
import dataclasses
import json
import re
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from kwai_assets.definitions import build_definitions
from kwai_assets.settings import Settings, current

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PACKAGE = Path(__file__).resolve().parents[1] / "kwai_assets"


def _nodes(defs: dg.Definitions) -> dict[str, dg.OpDefinition]:
    return {a.node_def.name: a.node_def for a in defs.assets if isinstance(a, dg.AssetsDefinition)}


def _gpu_request(node: dg.OpDefinition) -> str | None:
    """The GPUs a step's pod asks for, read from its tags the way dagster-k8s reads them."""
    from dagster_k8s.job import get_user_defined_k8s_config

    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in node.tags.items()}
    limits = get_user_defined_k8s_config(tags).container_config.get("resources", {}).get("limits", {})
    return limits.get("nvidia.com/gpu")


def test_every_gpu_pool_step_asks_kubernetes_for_one_gpu_and_no_other_step_does():
    pytest.importorskip("dagster_k8s")
    nodes = _nodes(build_definitions(current()))
    gpu = {name for name, node in nodes.items() if node.pool == "gpu"}
    assert {"interest_model", "cf_model", "ranker", "next_poi", "recommendations"} <= gpu
    assert {name for name, node in nodes.items() if _gpu_request(node) == "1"} == gpu


def test_the_k8s_executor_runs_every_job_and_the_run_config_passes_dagsters_validation():
    pytest.importorskip("dagster_k8s")
    defs = build_definitions(dataclasses.replace(current(), executor="k8s"))
    run_config = yaml.safe_load((DEPLOY / "run_config.yaml").read_text())
    for job in defs.jobs:
        resolved = defs.resolve_job_def(job.name)
        assert resolved.executor_def.name == "k8s"
        dg.validate_run_config(resolved, run_config)
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurrent"):
        dg.validate_run_config(defs.resolve_job_def("daily_refresh"),
                               {"execution": {"config": {"max_concurrent": "eight"}}})


def test_the_run_configs_kubernetes_objects_parse_as_dagster_k8s_parses_them():
    """Dagster's validation checks the executor's own fields; the pod specs inside are checked here."""
    kubernetes = pytest.importorskip("kubernetes")
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

    def parse(model, value):
        return k8s_model_from_dict(model, k8s_snake_case_dict(model, value))

    config = yaml.safe_load((DEPLOY / "run_config.yaml").read_text())["execution"]["config"]
    (volume,) = [parse(kubernetes.client.V1Volume, v) for v in config["volumes"]]
    (mount,) = [parse(kubernetes.client.V1VolumeMount, m) for m in config["volume_mounts"]]
    assert volume.persistent_volume_claim.claim_name == "kwai-data" and mount.name == volume.name
    container = parse(kubernetes.client.V1Container,
                      {"name": "step", **config["step_k8s_config"]["container_config"]})
    assert container.resources.requests["memory"] == "8Gi"
    with pytest.raises(Exception, match="persistentVolumeClam"):
        parse(kubernetes.client.V1Volume, {"name": "x", "persistentVolumeClam": {"claimName": "kwai-data"}})


def test_without_dagster_k8s_the_k8s_executor_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[k8s\]'"):
        build_definitions(dataclasses.replace(current(), executor="k8s"))


def test_an_unknown_executor_is_refused_by_name():
    with pytest.raises(ValueError, match="KWAI_EXECUTOR must be one of .*'celery'"):
        dataclasses.replace(current(), executor="celery")
    assert Settings.from_env().executor == "multiprocess"


def test_the_helm_values_and_the_image_serve_these_definitions_with_settings_the_code_reads():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "kwai_assets.definitions"]
    read = set(re.findall(r"KWAI_[A-Z_]+", "".join(p.read_text() for p in PACKAGE.rglob("*.py"))))
    named = {e["name"] for e in deployment["env"]}
    assert named <= read, f"values.yaml sets variables the code never reads: {sorted(named - read)}"
    assert {"name": "KWAI_EXECUTOR", "value": "k8s"} in deployment["env"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    extras = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("dagster-postgres") for d in extras["k8s"])     # the chart's instance is Postgres
    assert "job_namespace" not in (DEPLOY / "run_config.yaml").read_text()   # step pods beside the release
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '"--module-name", "kwai_assets.definitions"' in dockerfile and "KWAI_EXECUTOR=k8s" in dockerfile
    urls = {e["name"]: e["value"] for e in deployment["env"] if str(e.get("value", "")).startswith("s3://")}
    assert set(urls) == {"KWAI_WAREHOUSE", "KWAI_MLFLOW_ARTIFACTS"}          # the image can open them:
    assert 'EXTRAS="spark,k8s,s3"' in dockerfile and {d.split(">")[0] for d in extras["s3"]} == {"s3fs", "boto3"}
    mount = yaml.safe_load((DEPLOY / "run_config.yaml").read_text())["execution"]["config"]["volume_mounts"]
    assert [m["mountPath"] for m in mount] == [m["mountPath"] for m in deployment["volumeMounts"]]
