"""Id maps: contiguous from 1, append-only across re-runs, never renumbered."""
import pandas as pd
import pytest

from kwai_assets.core.reid import extend_id_maps, first_seen


def test_first_build_is_contiguous_from_one_in_first_seen_order():
    maps = extend_id_maps(None, {"user": ["u9", "u2", "u5"], "item": ["b", "a"]})
    users = maps[maps.entity == "user"]
    assert users["raw_id"].tolist() == ["u9", "u2", "u5"] and users["idx"].tolist() == [1, 2, 3]
    assert (maps["generation"] == 1).all()


def test_rebuild_with_new_data_keeps_every_index_and_appends():
    first = extend_id_maps(None, {"user": ["u1", "u2", "u3"], "item": ["a", "b"]})
    # u2 dropped out, u4 is new and comes *before* u1 in the new data's order
    second = extend_id_maps(first, {"user": ["u4", "u1", "u3"], "item": ["c", "a", "b"]})
    merged = first.merge(second, on=["entity", "raw_id"], suffixes=("_old", "_new"))
    assert len(merged) == len(first)
    assert (merged["idx_old"] == merged["idx_new"]).all()
    new = second[second.generation == 2].set_index("raw_id")["idx"].to_dict()
    assert new == {"c": 3, "u4": 4}
    assert extend_id_maps(second, {"user": ["u4", "u1"], "item": ["c"]})["idx"].tolist() == second["idx"].tolist()


def test_unknown_entity_is_rejected():
    with pytest.raises(ValueError, match="unknown entities"):
        extend_id_maps(None, {"photo": ["x"]})


def test_first_seen_orders_by_time_then_id():
    clean = pd.DataFrame({"user_id": ["b", "a", "c", "b"],
                          "ts": pd.to_datetime(["2026-01-02", "2026-01-02", "2026-01-01", "2026-01-01"])})
    assert first_seen(clean, "user_id") == ["b", "c", "a"]
