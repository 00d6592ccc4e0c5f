"""The HTTP API over the online store of the tiny home: what each route answers, its errors, and serving without an
error while a new online-store version is published."""
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import serving
from starlette.testclient import TestClient

from kwai_assets.core.vectors import unit_rows
from kwai_assets.io.online_store import OnlineStore
from kwai_assets.io.warehouse import Warehouse
from kwai_assets.service.app import create_app
from kwai_assets.service.lookup import NotFound, WarehouseLookup
from kwai_assets.settings import current


@pytest.fixture(scope="module")
def client(served):
    return TestClient(served.app)


@pytest.fixture(scope="module")
def tables(served):
    wh = Warehouse(served.settings.home)
    maps = wh.read("id_maps")
    raw = {e: maps[maps.entity == e].set_index("idx")["raw_id"] for e in ("user", "item")}
    return wh, raw


def _served_list(tables, user_idx: int) -> list[str]:
    wh, raw = tables
    recs = wh.read("recommendations")
    return raw["item"].loc[recs[recs.user_idx == user_idx].sort_values("rank")["item_idx"]].tolist()


def test_health_names_the_live_version_and_the_model_runs(client, served):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["version"] == served.store.current()
    event = served.instance.get_latest_materialization_event(__import__("dagster").AssetKey("recommendations"))
    assert body["runs"]["recommendations"] == event.asset_materialization.metadata["mlflow_run_id"].value
    assert set(body["runs"]) == {"user_vectors", "interest_item_vectors", "recommendations"}
    assert body["users"] == body["recommendations"] > 0


def test_recommendations_are_the_stored_list_in_raw_ids(client, tables):
    wh, raw = tables
    user_idx = int(wh.read("recommendations")["user_idx"].iloc[0])
    expected = _served_list(tables, user_idx)
    body = client.get(f"/users/{raw['user'][user_idx]}/recommendations", params={"k": 5}).json()
    assert [row["item"] for row in body["items"]] == expected[:5]
    every = client.get(f"/users/{raw['user'][user_idx]}/recommendations", params={"k": 500}).json()
    assert [row["item"] for row in every["items"]] == expected


@pytest.mark.parametrize("k", ["0", "501", "ten", "-3"])
def test_k_out_of_bounds_is_a_400_that_says_why(client, tables, k):
    user = tables[1]["user"].iloc[0]
    response = client.get(f"/users/{user}/recommendations", params={"k": k})
    assert response.status_code == 400
    assert response.json()["detail"] == f"k must be an integer from 1 to 500, got '{k}'"


@pytest.mark.parametrize("route", ["/users/nobody/recommendations", "/users/nobody/vector",
                                   "/users/nobody/profile", "/users/nobody/explorer", "/items/nothing/similar"])
def test_an_unknown_id_is_a_404_that_names_it(client, route):
    response = client.get(route)
    assert response.status_code == 404
    assert ("'nobody'" if "users" in route else "'nothing'") in response.json()["detail"]


def test_the_vector_is_the_stored_float32_vector(client, tables):
    wh, raw = tables
    row = wh.read("user_vectors").iloc[3]
    body = client.get(f"/users/{raw['user'][row['user_idx']]}/vector").json()
    assert body["dim"] == len(row["vector"])
    assert np.array_equal(np.asarray(body["vector"], np.float32), np.asarray(row["vector"], np.float32))


def test_similar_items_are_the_nearest_item2vec_vectors(client, tables):
    """Against exact cosine similarity over the stored item2vec vectors (the index is HNSW: most, not all)."""
    wh, raw = tables
    vectors = wh.read("item2vec")
    matrix = unit_rows(np.stack(vectors["vector"]).astype(np.float32))
    for row in (10, 100, 200):
        item_idx = int(vectors["item_idx"].iloc[row])
        cosine = matrix @ matrix[row]
        cosine[row] = -np.inf
        exact = set(raw["item"][vectors["item_idx"].to_numpy()[np.argsort(-cosine)[:10]]])
        body = client.get(f"/items/{raw['item'][item_idx]}/similar", params={"k": 10}).json()
        found = [r["item"] for r in body["items"]]
        scores = [r["score"] for r in body["items"]]
        assert raw["item"][item_idx] not in found and len(found) == 10 and body["channel"] == "item2vec"
        assert scores == sorted(scores, reverse=True)
        assert len(exact & set(found)) >= 9
    wrong = client.get(f"/items/{raw['item'][item_idx]}/similar", params={"channel": "nope"})
    assert wrong.status_code == 404 and "item2vec" in wrong.json()["detail"]


def test_the_profile_is_the_prompt_and_what_the_llm_wrote(client, tables):
    wh, raw = tables
    prompts = wh.read("user_prompts").iloc[0]
    profiles = wh.read("user_profiles", wh.partitions("user_profiles"))
    body = client.get(f"/users/{raw['user'][prompts['user_idx']]}/profile").json()
    assert body["prompt"] == prompts["prompt"]
    assert body["profile"] == profiles.set_index("user_idx")["profile"][prompts["user_idx"]]


def test_the_explorer_data_marks_the_test_items(client, tables):
    wh, raw = tables
    splits, checkins = wh.read("splits"), wh.read("checkins")
    user_idx = int(wh.read("recommendations")["user_idx"].iloc[0])
    body = client.get(f"/users/{raw['user'][user_idx]}/explorer").json()
    test = set(raw["item"][splits[(splits.user_idx == user_idx) & (splits.split == "test")]["item_idx"]])
    assert {row["item"] for row in body["test"]} == test
    assert [row["item"] for row in body["recommendations"]] == _served_list(tables, user_idx)
    assert all(row["in_test"] == (row["item"] in test) for row in body["recommendations"])
    mine = checkins[(checkins.user_idx == user_idx) & (checkins.split == "train")]
    assert len(body["places"]) == mine["poi_idx"].nunique()
    assert sum(p["visits"] for p in body["places"]) == len(mine)
    assert set(body["channels"]) >= {"swing", "item2vec", "popularity"}


def test_search_lists_users_by_id_prefix(client, tables):
    user = tables[1]["user"].iloc[0]
    assert user in client.get("/users", params={"q": user[:3], "limit": 500}).json()["users"]
    assert client.get("/users", params={"q": "no such prefix"}).json()["users"] == []


def test_before_any_publish_the_service_says_what_to_materialize(served, redis_url):
    empty = OnlineStore.connect(redis_url, prefix=f"empty{time.monotonic_ns()}")
    client = TestClient(create_app(WarehouseLookup(Warehouse(served.settings.home)), empty, redis_url))
    response = client.get("/health")
    assert response.status_code == 503 and "materialize online_store" in response.json()["detail"]


def test_it_serves_without_an_error_while_a_new_version_is_published(served, tables):
    users = tables[1]["user"].iloc[:50].tolist()
    before = served.store.current()
    statuses, versions, stop = [], set(), threading.Event()

    def load(base: str) -> None:
        with httpx.Client(base_url=base) as http:
            while not stop.is_set():
                for user in users:
                    response = http.get(f"/users/{user}/recommendations", params={"k": 10})
                    statuses.append(response.status_code)
                    versions.add(response.json().get("version"))

    with serving(served.app) as base:
        reader = threading.Thread(target=load, args=(base,))
        reader.start()
        time.sleep(0.3)
        for _ in range(2):
            assert served.publish().success
        time.sleep(0.3)
        stop.set()
        reader.join()
    assert served.store.current() == before + 2
    assert len(statuses) > 100 and set(statuses) == {200}
    assert {before, before + 2} <= versions


def test_the_recommendations_asset_links_the_explorer(served):
    import dagster as dg

    event = served.instance.get_latest_materialization_event(dg.AssetKey("recommendations"))
    assert event.asset_materialization.metadata["explorer"].value == f"{current().service_url}/explorer"


def test_kwai_serve_answers_on_the_port_it_is_given(served, redis_url):
    import os
    import socket
    import subprocess
    import sys

    from kwai_assets.io.redis_server import free_port

    port = free_port()
    env = {**os.environ, "KWAI_HOME": str(served.settings.home), "KWAI_REDIS_URL": redis_url}
    server = subprocess.Popen([sys.executable, "-m", "kwai_assets.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert f"on http://127.0.0.1:{port}" in server.stdout.readline()
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.1)
        response = httpx.get(f"http://127.0.0.1:{port}/users/nobody/recommendations")
        assert response.status_code in (404, 503) and "detail" in response.json()
        assert httpx.get(f"http://127.0.0.1:{port}/explorer").text.startswith("<!doctype html>")
    finally:
        server.terminate()
        server.wait(10)


def test_a_served_item_the_warehouse_lacks_keeps_its_raw_id(served, tables):
    from kwai_assets.service.app import explore

    user = tables[1]["user"].iloc[0]
    lookup = WarehouseLookup(Warehouse(served.settings.home))
    body = explore(lookup, lambda u: (7, [("ghost", 2.0), ("ghost2", 1.0)]), user)
    assert [r["item"] for r in body["recommendations"]] == ["ghost", "ghost2"] and body["version"] == 7
    assert body["recommendations"][0]["category"] is None


def test_on_an_object_store_listings_and_versions_are_asked_again_after_recheck_s(tmp_path):
    wh = Warehouse(tmp_path, f"memory://lookup-{tmp_path.name}")

    def id_maps(users: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"entity": "user", "raw_id": users, "idx": range(1, len(users) + 1), "generation": 0})

    wh.write(id_maps(["u1"]), "id_maps")
    lookup = WarehouseLookup(wh)
    assert lookup.recheck_s == 5.0 and lookup.user_idx("u1") == 1
    wh.write(id_maps(["u1", "u2"]), "id_maps")
    with pytest.raises(NotFound, match="unknown user 'u2'"):      # the version read a moment ago is trusted
        lookup.user_idx("u2")
    lookup.recheck_s = 0.0                                         # as on a local disk: asked on every request
    assert lookup.user_idx("u2") == 2
