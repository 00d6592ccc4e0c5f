"""Per-user chronological splits: floor sizes for val and test, order, leave-one-out, the held-back history."""
import numpy as np
import pandas as pd
import pytest

from kwai_assets.core.split import held_back, split_by_user


@pytest.fixture
def interactions():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 40, 200)
    user = np.repeat(np.arange(1, 201), n)
    return pd.DataFrame({"user_idx": user, "item_idx": rng.integers(1, 500, len(user)),
                         "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, len(user)), "s")})


def test_floor_sizes_for_val_and_test_and_chronological(interactions):
    out = split_by_user(interactions)
    assert len(out) == len(interactions)
    sizes = out.pivot_table(index="user_idx", columns="split", values="item_idx", aggfunc="size", fill_value=0)
    n = sizes.sum(axis=1)
    for name, ratio in (("val", 0.1), ("test", 0.2)):       # the published convention: floor, the rest to train
        assert (sizes[name] == np.floor(n * ratio + 1e-9)).all(), name
    assert (sizes["train"] == n - sizes["val"] - sizes["test"]).all()
    last_train = out[out.split == "train"].groupby("user_idx")["ts"].max()
    first_test = out[out.split == "test"].groupby("user_idx")["ts"].min()
    both = last_train.index.intersection(first_test.index)
    assert (last_train[both] <= first_test[both]).all()


def test_leave_one_out(interactions):
    out = split_by_user(interactions, leave_one_out=True)
    counts = out.groupby(["user_idx", "split"]).size().unstack(fill_value=0)
    many = counts[counts.sum(axis=1) >= 3]
    assert (many["test"] == 1).all() and (many["val"] == 1).all()
    latest = out.sort_values(["user_idx", "ts", "item_idx"]).groupby("user_idx").tail(1)
    assert (latest["split"] == "test").all()


def test_bad_ratios_are_rejected(interactions):
    with pytest.raises(ValueError, match="sum"):
        split_by_user(interactions, (0.8, 0.1, 0.2))


def test_held_back_moves_each_users_last_train_rows_as_many_as_their_val_rows(interactions):
    out = split_by_user(interactions)
    back = held_back(out)
    assert (back.index == out.index).all() and (back.drop(columns="split") == out.drop(columns="split")).all().all()
    moved = out["split"] != back["split"]
    assert (out.loc[moved, "split"] == "train").all() and (back.loc[moved, "split"] == "held_back").all()
    counts = back.groupby(["user_idx", "split"]).size().unstack(fill_value=0)
    assert (counts["held_back"] == counts["val"]).all()
    last_kept = back[back.split == "train"].groupby("user_idx")["ts"].max()
    first_back = back[back.split == "held_back"].groupby("user_idx")["ts"].min()
    both = last_kept.index.intersection(first_back.index)
    assert len(both) > 100 and (last_kept[both] <= first_back[both]).all()     # the history's end, not its middle
