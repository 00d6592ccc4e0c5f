"""Behaviour sequences per user from the train split, as padded feature arrays.

Features of a behaviour: item, item category, hour, weekday, weekend flag,
event type (all integers, 0 = padding) and the timestamp scaled to [0, 1]
within the user's train window. A user's train history, in time order, is cut
into a long-term part (the first 90%) and a short-term part (the last 10%, at
least one); each keeps its most recent `long_len` / `short_len` behaviours,
right-aligned, left-padded with 0. `full` is the whole train history the same
way, the input for the vector of record.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES = ("item", "category", "hour", "weekday", "weekend", "event")


@dataclass
class Sequences:
    users: np.ndarray                  # user_idx per row
    long: np.ndarray                   # [U, long_len, 6] int64
    long_time: np.ndarray              # [U, long_len] float32
    short: np.ndarray                  # [U, short_len, 6]
    short_time: np.ndarray
    full: np.ndarray                   # [U, long_len, 6], the whole train history
    full_time: np.ndarray
    vocab: dict[str, int]              # feature -> embedding table size (padding included)
    events: list[str]
    item_category: np.ndarray          # [n_items] category index of every item (0 = unknown / padding)


def _place(values: np.ndarray, user_row: np.ndarray, dest: np.ndarray, keep: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape, dtype=values.dtype)
    out[user_row[keep], dest[keep]] = values[keep]
    return out


def _item_category(splits: pd.DataFrame, n_items: int) -> np.ndarray:
    """An item attribute, so every split may inform it (no interaction leaks through it)."""
    out = np.zeros(n_items, dtype=np.int64)
    pairs = splits[["item_idx", "category_idx"]].drop_duplicates("item_idx")
    out[pairs["item_idx"].to_numpy()] = pairs["category_idx"].to_numpy()
    return out


def behaviour_sequences(splits: pd.DataFrame, n_items: int, n_categories: int, long_len: int = 100,
                        short_len: int = 10, short_share: float = 0.1) -> Sequences:
    train = splits[splits["split"] == "train"].sort_values(["user_idx", "ts", "item_idx"], kind="stable")
    users, user_row = np.unique(train["user_idx"].to_numpy(), return_inverse=True)
    n = np.bincount(user_row)
    rank = np.arange(len(train)) - np.repeat(np.cumsum(n) - n, n)
    n_row = n[user_row]
    n_short = np.maximum(1, np.round(n * short_share).astype(np.int64))[user_row]
    events = sorted(train["event"].unique().tolist())
    ts = train["ts"].to_numpy().astype("datetime64[s]").astype(np.int64)
    first = np.minimum.reduceat(ts, np.cumsum(n) - n)[user_row]
    last = np.maximum.reduceat(ts, np.cumsum(n) - n)[user_row]
    scaled = ((ts - first) / np.maximum(last - first, 1)).astype(np.float32)
    stamp = pd.DatetimeIndex(train["ts"])
    features = np.stack([
        train["item_idx"].to_numpy(), train["category_idx"].to_numpy(), stamp.hour.to_numpy() + 1,
        stamp.dayofweek.to_numpy() + 1, (stamp.dayofweek.to_numpy() >= 5) + 1,
        np.searchsorted(events, train["event"].to_numpy()) + 1,
    ], axis=1).astype(np.int64)

    is_short = rank >= n_row - n_short
    long_dest = long_len - ((n_row - n_short) - rank)
    short_dest = short_len - (n_row - rank)
    full_dest = long_len - (n_row - rank)
    shapes = ((len(users), long_len, len(FEATURES)), (len(users), short_len, len(FEATURES)))
    keep_long, keep_short, keep_full = ~is_short & (long_dest >= 0), is_short & (short_dest >= 0), full_dest >= 0
    return Sequences(
        users=users,
        long=_place(features, user_row, long_dest, keep_long, shapes[0]),
        long_time=_place(scaled, user_row, long_dest, keep_long, shapes[0][:2]),
        short=_place(features, user_row, short_dest, keep_short, shapes[1]),
        short_time=_place(scaled, user_row, short_dest, keep_short, shapes[1][:2]),
        full=_place(features, user_row, full_dest, keep_full, shapes[0]),
        full_time=_place(scaled, user_row, full_dest, keep_full, shapes[0][:2]),
        vocab={"item": n_items, "category": n_categories, "hour": 25, "weekday": 8, "weekend": 3,
               "event": len(events) + 1},
        events=events,
        item_category=_item_category(splits, n_items),
    )
