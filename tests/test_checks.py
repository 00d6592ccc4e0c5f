"""The logic of every asset check, on small frames: the passing case and each failing one.

The asset checks beside the assets are thin calls of these functions, and the assets run them before they write.
"""
import numpy as np
import pandas as pd

from kwai_assets.core.attributes import join_loss_problems, key_problems
from kwai_assets.core.clean import kcore_problems
from kwai_assets.core.index_space import index_problems
from kwai_assets.core.reid import id_map_problems
from kwai_assets.core.split import split_by_user, split_problems
from kwai_assets.core.swing import pair_problems
from kwai_assets.core.vectors import vector_problems
from kwai_assets.llm.prompts import prompt_problems
from kwai_assets.llm.text import count_tokens

TS = pd.Timestamp("2026-01-01")


def clicks(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs],
                         "ts": [TS + pd.Timedelta(seconds=s) for s in range(len(pairs))]})


def test_kcore_problems():
    square = clicks([(u, i) for u in "ab" for i in "xy"])
    assert kcore_problems(square, 2) == []
    assert kcore_problems(square, 3) == ["2 users with fewer than k=3 rows (fewest 2)",
                                         "2 items with fewer than k=3 rows (fewest 2)"]
    assert kcore_problems(square.iloc[:0], 10) == [
        "no rows left (k=10): every user or item had fewer than k interactions"]
    assert kcore_problems(square.drop(columns="ts"), 1) == ["missing columns ['ts']"]
    assert kcore_problems(square.assign(user_id=[None, "a", "b", "b"]), 1) == ["1 null keys"]


def test_join_loss_and_key_problems():
    df = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "has_attributes": [True, True, True, False]})
    assert join_loss_problems(df, 0.25, "user", "raw_users") == []
    assert join_loss_problems(df, 0.1, "user", "raw_users") == [
        "1 of 4 users (25.0%) have no row in raw_users; limit 10.0%"]
    assert key_problems(df, "user_id", "raw_users") == []
    assert key_problems(df.assign(user_id=["a", None, None, "d"]), "user_id", "raw_users") == [
        "2 rows of raw_users have no user_id"]
    assert key_problems(df, "item_id", "raw_items") == ["raw_items has no 'item_id' column"]


def test_id_map_problems():
    good = pd.DataFrame({"entity": ["user"] * 3, "raw_id": ["a", "b", "c"], "idx": [1, 2, 3],
                         "generation": [1, 1, 2]})
    assert id_map_problems(good) == []
    assert id_map_problems(good.assign(raw_id=["a", "a", "c"])) == ["user: duplicate raw ids or indices"]
    assert id_map_problems(good.assign(idx=[1, 2, 5])) == ["user: indices span 1..5 for 3 ids, expected 1..3"]
    assert id_map_problems(good.assign(generation=[1, 2, 1])) == [
        "user: an id of an earlier generation has a higher index than a later one"]


def test_index_problems():
    df = pd.DataFrame({"user_idx": [1, 1, 2], "item_idx": [3, 4, 3], "ts": [TS, TS + pd.Timedelta(1, "s"), TS]})
    assert index_problems(df) == []
    assert index_problems(df.assign(item_idx=[0, 4, 3])) == ["1 rows without a user or item index"]
    assert index_problems(df.iloc[[1, 0, 2]].reset_index(drop=True)) == ["rows are not sorted by (user_idx, ts)"]


def test_split_problems():
    rng = np.random.default_rng(0)
    n = rng.integers(3, 30, 50)
    df = pd.DataFrame({"user_idx": np.repeat(np.arange(1, 51), n), "item_idx": rng.integers(1, 99, n.sum()),
                       "ts": TS + pd.to_timedelta(rng.integers(0, 10**6, n.sum()), "s")})
    good = split_by_user(df)
    assert split_problems(good) == []
    late_train = good.copy()
    late_train.loc[late_train.index[-1], "split"] = "train"     # the last row of the last user back in train
    assert split_problems(late_train) == ["1 out-of-order rows (a later split before an earlier one in time)",
                                          "1 user-splits whose val or test size is not floor(n * ratio)"]
    no_train = good[~((good.user_idx == 1) & (good.split == "train"))]
    assert "1 users without train rows" in split_problems(no_train)
    assert split_problems(good, (0.5, 0.2, 0.3))[0].endswith("user-splits whose val or test size is not "
                                                             "floor(n * ratio)")
    assert split_problems(split_by_user(df, leave_one_out=True), leave_one_out=True) == []


def test_pair_problems():
    pairs = pd.DataFrame({"src": [1, 2, 1, 3], "dst": [2, 1, 3, 1], "score": [0.5, 0.5, 0.2, 0.2]})
    assert pair_problems(pairs, 2, np.array([1, 2, 3])) == []
    assert pair_problems(pairs, 1, np.array([1, 2, 3])) == ["1 srcs with more than top_k=1 pairs"]
    bad = pairs.assign(score=[0.5, 0.4, 0.2, 0.0], dst=[2, 1, 1, 1])
    assert pair_problems(bad, 2, np.array([1, 2, 3, 4])) == [
        "1 self pairs", "1 scores <= 0", "2 of 3 two-way pairs with sim(i,j) != sim(j,i)",
        "1 of 4 srcs with co-occurring neighbours have no pairs (e.g. [4])"]


def test_vector_problems():
    df = pd.DataFrame({"item_idx": [1, 2, 3], "vector": list(np.eye(3, dtype=np.float32))})
    assert vector_problems(df, "item_idx", np.array([1, 2, 3]), 3) == []
    broken = df.assign(vector=[np.array([np.nan, 0, 1], np.float32), np.zeros(3, np.float32), np.ones(3)])
    assert vector_problems(broken, "item_idx", np.array([1, 2, 3, 4]), 3) == [
        "1 item_idx values without a vector (e.g. [4])", "1 rows with non-finite values", "1 all-zero rows"]
    assert vector_problems(df, "item_idx", np.array([1]), 8) == ["vector lengths [3], expected 8"]


def test_prompt_problems():
    splits = pd.DataFrame({"user_idx": [1, 1, 1, 2, 2], "split": ["train", "train", "test", "train", "val"]})
    prompt = "a short prompt"
    df = pd.DataFrame({"user_idx": [1, 2], "document": ['{"interactions": 2}', '{"interactions": 1}'],
                       "prompt": [prompt, prompt], "prompt_tokens": [count_tokens(prompt)] * 2})
    assert prompt_problems(df, splits, "user_idx", 512) == []
    leaky = df.assign(document=['{"interactions": 3}', '{"interactions": 1}'])       # counted the test row
    assert prompt_problems(leaky, splits, "user_idx", 512) == [
        "1 prompts counting other than their train interactions"]
    assert prompt_problems(df.iloc[:1], splits, "user_idx", 1) == [
        "1 user_idx values of the train split without a prompt", "1 prompts over 1 tokens"]


def test_round_trip_problems():
    from kwai_assets.io.online_store import round_trip_problems

    stored = [np.ones(2, np.float32), np.zeros(2, np.float32)]
    assert round_trip_problems(3, stored, stored) == []
    assert round_trip_problems(None, [], []) == ["no live version in Redis"]
    assert round_trip_problems(3, [None, np.ones(2, np.float32)], stored) == [
        "1 of 2 ids missing from version 3", "1 of 2 vectors differ from the Parquet in version 3"]
