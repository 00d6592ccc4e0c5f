"""The categorical inputs that the two-tower model and the DIN ranker share: user attributes and item features
as integer codes, 0 = unknown / none."""
from __future__ import annotations

import numpy as np
import pandas as pd

GRID_DEGREES = 0.05          # the location cell of an item's POI (about 5 km)
USER_ATTRIBUTES_SKIPPED = ("user_id", "n_interactions", "has_attributes")


def user_attribute_codes(users: pd.DataFrame | None, id_maps: pd.DataFrame,
                         n_users: int) -> tuple[np.ndarray, list[int]]:
    """Every categorical (text) attribute of `users` (raw user_id keyed) as codes by user_idx, 0 = unknown; numeric
    columns are left out."""
    if users is None:
        return np.zeros((n_users, 0), np.int64), []
    user_index = id_maps[id_maps["entity"] == "user"].set_index("raw_id")["idx"]
    columns = [c for c in users.columns if c not in USER_ATTRIBUTES_SKIPPED and not pd.api.types.is_numeric_dtype(
        users[c])]
    rows = user_index.reindex(users["user_id"].astype(str)).to_numpy()
    keep = ~pd.isna(rows)
    out, sizes = np.zeros((n_users, len(columns)), np.int64), []
    for k, column in enumerate(columns):
        codes, uniques = pd.factorize(users[column].astype(str), sort=True)
        out[rows[keep].astype(np.int64), k] = codes[keep] + 1
        sizes.append(len(uniques) + 1)
    return out, sizes


def item_feature_codes(splits: pd.DataFrame, n_items: int) -> tuple[np.ndarray, list[int]]:
    """Category, POI and location cell of every item (any split may inform an attribute: no interaction does)."""
    first = splits.drop_duplicates("item_idx")
    out = np.zeros((n_items, 3), np.int64)
    idx = first["item_idx"].to_numpy()
    for k, column in enumerate(("category_idx", "poi_idx")):
        if column in first.columns:
            out[idx, k] = first[column].fillna(0).to_numpy().astype(np.int64)
    if {"lat", "lon"} <= set(first.columns):
        located = first[["lat", "lon"]].notna().all(axis=1).to_numpy()
        cells = np.floor(first[["lat", "lon"]].to_numpy()[located] / GRID_DEGREES).astype(np.int64)
        if len(cells):
            _, code = np.unique(cells, axis=0, return_inverse=True)
            out[idx[located], 2] = code.ravel() + 1
    return out, [int(out[:, k].max()) + 1 for k in range(3)]
