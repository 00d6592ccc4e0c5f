"""Distances on the sphere, nearest places, and each user's usual places: the location features of the ranker,
next-POI and the synthetic source."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

EARTH_KM = 6371.0


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km, element-wise with numpy broadcasting (NaN where a coordinate is missing)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def item_coordinates(splits: pd.DataFrame, n_items: int) -> np.ndarray:
    """[n_items, 2] (lat, lon) of each item's POI, NaN where the source has none."""
    out = np.full((n_items, 2), np.nan)
    if {"lat", "lon"} <= set(splits.columns):
        first = splits.dropna(subset=["lat", "lon"]).drop_duplicates("item_idx")
        out[first["item_idx"].to_numpy()] = first[["lat", "lon"]].to_numpy(np.float64)
    return out


def usual_places(history: pd.DataFrame, n_users: int, places: int = 3) -> np.ndarray:
    """[n_users, places, 2] the coordinates of each user's most visited located places in `history` (rows with
    user_idx, lat, lon; ties by coordinates), NaN where a user has fewer."""
    out = np.full((n_users, places, 2), np.nan)
    if not {"lat", "lon"} <= set(history.columns):
        return out
    visits = (history.dropna(subset=["lat", "lon"]).groupby(["user_idx", "lat", "lon"]).size()
              .rename("visits").reset_index()
              .sort_values(["user_idx", "visits", "lat", "lon"], ascending=[True, False, True, True], kind="stable"))
    visits = visits[visits.groupby("user_idx").cumcount() < places]
    slot = visits.groupby("user_idx").cumcount().to_numpy()
    out[visits["user_idx"].to_numpy(), slot] = visits[["lat", "lon"]].to_numpy(np.float64)
    return out


def distance_to_usual_places(places: np.ndarray, users: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """[len(users)] km from each target (lat, lon rows of `coordinates`) to the nearest of its user's usual
    places; NaN where either side has no coordinates."""
    km = haversine_km(places[users, :, 0], places[users, :, 1], coordinates[:, None, 0], coordinates[:, None, 1])
    known = ~np.isnan(km)
    return np.where(known.any(axis=1), np.where(known, km, np.inf).min(axis=1), np.nan)


def nearest_pois(xy: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, k] each POI's k nearest POIs (itself first) and their great-circle km; rows of POIs without coordinates
    (and padding row 0) point at POI 0 with NaN km."""
    n = len(xy)
    index, km = np.zeros((n, k), dtype=np.int64), np.full((n, k), np.nan, dtype=np.float32)
    known = np.flatnonzero(~np.isnan(xy).any(axis=1))
    k = min(k, len(known))
    if k:
        lat, lon = np.radians(xy[known, 0]), np.radians(xy[known, 1])
        unit = np.c_[np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]   # chord order = arc order
        _, near = cKDTree(unit).query(unit, k=k)
        near = known[near.reshape(len(known), k)]
        index[known, :k] = near
        km[known, :k] = haversine_km(xy[known, None, 0], xy[known, None, 1], xy[near, 0], xy[near, 1])
    return index, km
