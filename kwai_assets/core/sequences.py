"""Behaviour sequences per user from the train split, as padded feature arrays.

Features of a behaviour: item, item category, hour, weekday, weekend flag,
event type, the gap since the user's previous behaviour (log2 buckets of
seconds: 1 = first behaviour, 2 = same second, 3 + floor(log2 s) after), all
integers with 0 = padding, and the timestamp scaled to [0, 1] within the
user's train window. A user's train history, in time order, is cut into a
long-term part (the first 90%) and a short-term part (the last 10%, at least
one); each keeps its most recent `long_len` / `short_len` behaviours,
right-aligned, left-padded with 0. `full` is the whole train history the same
way (its last `long_len` behaviours): the input of the next-item training and
of the vector of record; `n_short[u]` says how many of its last columns are
the short-term part (the long-term part ends where `full`'s last `n_short`
columns begin).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kwai_assets.core.split import history_rows

FEATURES = ("item", "category", "hour", "weekday", "weekend", "event", "gap")
ROW_FIELDS = ("users", "long", "long_time", "short", "short_time", "full", "full_time", "n_short")   # per row
MIN_PREFIX = 5                         # behaviours a training prefix keeps at least
GAP_BUCKETS = 32                       # 0 padding, 1 first, 2 same second, 3 + floor(log2 s) up to 2^28 s (8 years)


@dataclass
class Sequences:
    users: np.ndarray                  # user_idx per row
    long: np.ndarray                   # [U, long_len, 7] int64
    long_time: np.ndarray              # [U, long_len] float32
    short: np.ndarray                  # [U, short_len, 7]
    short_time: np.ndarray
    full: np.ndarray                   # [U, long_len, 7], the whole train history
    full_time: np.ndarray
    vocab: dict[str, int]              # feature -> embedding table size (padding included)
    events: list[str]
    item_category: np.ndarray          # [n_items] category index of every item (0 = unknown / padding)
    item_poi: np.ndarray | None = None  # [n_items] POI index of every item (0 = none), when the data has POIs
    n_pois: int = 1
    n_short: np.ndarray | None = None  # [U] behaviours of the short-term part (<= long_len), the cut of `full`
    earlier: Sequences | None = None   # training prefixes of the histories (users repeated); see behaviour_sequences

    def short_count(self) -> np.ndarray:
        """`n_short`, or the short sequences' lengths when it was not given."""
        return self.n_short if self.n_short is not None else (self.short[..., 0] > 0).sum(1).astype(np.int64)

    def training(self) -> list[np.ndarray]:
        """(full, full_time, n_short, short, short_time) of every training row: each user's whole history, then
        the `earlier` prefixes."""
        parts = [self] if self.earlier is None else [self, self.earlier]
        return [np.concatenate([getattr(p, f) if f != "n_short" else p.short_count() for p in parts])
                for f in ("full", "full_time", "n_short", "short", "short_time")]


def _place(values: np.ndarray, user_row: np.ndarray, dest: np.ndarray, keep: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape, dtype=values.dtype)
    out[user_row[keep], dest[keep]] = values[keep]
    return out


def _item_attribute(splits: pd.DataFrame, column: str, n_items: int) -> np.ndarray:
    """An item attribute, so every split may inform it (no interaction leaks through it)."""
    out = np.zeros(n_items, dtype=np.int64)
    if column not in splits.columns:
        return out
    pairs = splits[["item_idx", column]].dropna().drop_duplicates("item_idx")
    out[pairs["item_idx"].to_numpy()] = pairs[column].to_numpy().astype(np.int64)
    return out


def gap_bucket(seconds: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Log2 bucket of the seconds since the previous behaviour (see the module doc)."""
    bucket = 3 + np.floor(np.log2(np.maximum(seconds, 1))).astype(np.int64)
    bucket = np.where(seconds <= 0, 2, np.minimum(bucket, GAP_BUCKETS - 1))
    return np.where(first, 1, bucket)


def behaviour_sequences(splits: pd.DataFrame, n_items: int, n_categories: int, long_len: int = 100,
                        short_len: int = 10, short_share: float = 0.1, stride: int = 0) -> Sequences:
    """One row per user with train behaviours (see the module doc); with `stride` > 0, `earlier` holds the
    training prefixes: each history cut `stride`, 2 `stride`, ... behaviours before its end, while at least
    MIN_PREFIX behaviours remain (Tan et al.'s prefix augmentation, 2016)."""
    train = history_rows(splits)
    item_poi = _item_attribute(splits, "poi_idx", n_items)
    events = sorted(train["event"].unique().tolist())
    shared = dict(
        vocab={"item": n_items, "category": n_categories, "hour": 25, "weekday": 8, "weekend": 3,
               "event": len(events) + 1, "gap": GAP_BUCKETS},
        events=events, item_category=_item_attribute(splits, "category_idx", n_items), item_poi=item_poi,
        n_pois=int(item_poi.max()) + 1)
    out = _sequences(train, long_len, short_len, short_share, shared)
    if stride > 0:
        rank = train.groupby("user_idx").cumcount().to_numpy()
        n = train.groupby("user_idx")["user_idx"].transform("size").to_numpy()     # the row's user's history length
        prefixes = []
        for cut in itertools.count(stride, stride):           # a prefix keeps its user's first n - cut behaviours
            keep = (rank < n - cut) & (n - cut >= MIN_PREFIX)
            if not keep.any():
                break
            prefixes.append(_sequences(train[keep], long_len, short_len, short_share, shared))
        if prefixes:
            out.earlier = dataclasses.replace(
                prefixes[0], **{f: np.concatenate([getattr(p, f) for p in prefixes]) for f in ROW_FIELDS})
    return out


def _sequences(train: pd.DataFrame, long_len: int, short_len: int, short_share: float, shared: dict) -> Sequences:
    """The arrays of one row per user of `train` (rows in history order): their last `long_len` behaviours."""
    users, user_row = np.unique(train["user_idx"].to_numpy(), return_inverse=True)
    n = np.bincount(user_row)
    starts = np.cumsum(n) - n
    rank = np.arange(len(train)) - np.repeat(starts, n)
    n_row = n[user_row]
    n_short_user = np.maximum(1, np.round(n * short_share).astype(np.int64))
    n_short = n_short_user[user_row]
    ts = train["ts"].to_numpy().astype("datetime64[s]").astype(np.int64)
    first = np.minimum.reduceat(ts, starts)[user_row]
    last = np.maximum.reduceat(ts, starts)[user_row]
    scaled = ((ts - first) / np.maximum(last - first, 1)).astype(np.float32)
    gap = gap_bucket(np.diff(ts, prepend=ts[:1]), rank == 0)
    stamp = pd.DatetimeIndex(train["ts"])
    features = np.stack([
        train["item_idx"].to_numpy(), train["category_idx"].to_numpy(), stamp.hour.to_numpy() + 1,
        stamp.dayofweek.to_numpy() + 1, (stamp.dayofweek.to_numpy() >= 5) + 1,
        np.searchsorted(shared["events"], train["event"].to_numpy()) + 1, gap,
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
        n_short=np.minimum(n_short_user, long_len),
        **shared,
    )


def run_starts(keys: np.ndarray) -> np.ndarray:
    """For rows grouped by `keys` (e.g. sorted by user), the row at which each row's run of equal keys begins:
    its user's first row."""
    keys = np.asarray(keys)
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    return np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
