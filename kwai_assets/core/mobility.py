"""Check-in sequences, the next-POI protocol and its baselines.

A check-in is a click made at the clicked photo's POI: the click's coordinates
are within `visit_km` of the POI's (a photo watched at home is not a visit).
Consecutive check-ins at one POI are one stay and kept once. Every split's
check-ins are kept, labelled, so that a test check-in can be predicted from
everything before it.

The protocol (as in the next-POI literature, e.g. STAN, GETNext): for every
check-in of the split, rank all POIs given the user's earlier check-ins and
the check-in's own time, and report Acc@1/5/10 (the POI in the top k) and the
MRR. The baselines need no training beyond counting the train split.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from kwai_assets.core.geo import haversine_km
from kwai_assets.core.sequences import run_starts
from kwai_assets.core.sql import KM_MACRO, frame

KS = (1, 5, 10)


@dataclass(frozen=True)
class POICatalog:
    """Index-space POIs: coordinates (NaN where unknown), category index and UTC offset in minutes; row 0 padding."""
    xy: np.ndarray             # [n_pois, 2] lat, lon
    category: np.ndarray       # [n_pois] category_idx, 0 unknown
    utc_offset_min: np.ndarray  # [n_pois] local time = UTC + offset (0 when the source gives none)

    @classmethod
    def from_frames(cls, poi_attributes: pd.DataFrame, id_maps: pd.DataFrame) -> POICatalog:
        maps = {e: id_maps[id_maps["entity"] == e].set_index("raw_id")["idx"] for e in ("poi", "category")}
        n = int(maps["poi"].max()) + 1 if len(maps["poi"]) else 1
        xy, category, offset = np.full((n, 2), np.nan), np.zeros(n, np.int64), np.zeros(n)
        known = poi_attributes[poi_attributes["poi_id"].isin(maps["poi"].index)]
        rows = maps["poi"].reindex(known["poi_id"]).to_numpy()
        if {"lat", "lon"} <= set(known.columns):
            xy[rows] = known[["lat", "lon"]].astype(float).to_numpy()
        if "category" in known.columns:
            category[rows] = maps["category"].reindex(known["category"]).fillna(0).astype(np.int64).to_numpy()
        if "utc_offset_min" in known.columns:
            offset[rows] = pd.to_numeric(known["utc_offset_min"], errors="coerce").fillna(0.0).to_numpy()
        return cls(xy, category, offset)

    def as_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"poi_idx": np.arange(len(self.category)), "lat": self.xy[:, 0], "lon": self.xy[:, 1],
                             "category_idx": self.category, "utc_offset_min": self.utc_offset_min})


def build_checkins(splits: pd.DataFrame, catalog: POICatalog, visit_km: float = 0.5) -> pd.DataFrame:
    """user_idx, ts, poi_idx, category_idx, lat, lon (the POI's), hour_of_week (local, Monday 0h = 0),
    hours_since_prev, km_since_prev (NaN on a user's first), split; sorted by (user_idx, ts)."""
    with duckdb.connect() as con:
        con.register("splits", splits[["user_idx", "ts", "poi_idx", "lat", "lon", "split"]])
        con.register("pois", catalog.as_frame())
        con.execute(KM_MACRO)
        return frame(con, f"""
            WITH visits AS (
                SELECT s.user_idx, s.ts, s.poi_idx, p.category_idx, p.lat, p.lon, s.split, p.utc_offset_min,
                       lag(s.poi_idx) OVER (PARTITION BY s.user_idx ORDER BY s.ts, s.poi_idx) AS prev_poi
                FROM splits s JOIN pois p ON p.poi_idx = s.poi_idx
                WHERE s.poi_idx > 0 AND p.lat IS NOT NULL AND s.lat IS NOT NULL
                  AND km(s.lat, s.lon, p.lat, p.lon) <= {float(visit_km)}),
            stays AS (SELECT * FROM visits WHERE prev_poi IS NULL OR prev_poi <> poi_idx)
            SELECT user_idx, ts, poi_idx, category_idx, lat, lon,
                   CAST((isodow(local) - 1) * 24 + hour(local) AS BIGINT) AS hour_of_week,
                   epoch(ts - lag(ts) OVER w) / 3600.0 AS hours_since_prev,
                   km(lag(lat) OVER w, lag(lon) OVER w, lat, lon) AS km_since_prev,
                   split
            FROM (SELECT *, ts + to_minutes(CAST(round(utc_offset_min) AS BIGINT)) AS local FROM stays)
            WINDOW w AS (PARTITION BY user_idx ORDER BY ts, poi_idx)
            ORDER BY user_idx, ts, poi_idx
        """)


def checkin_problems(df: pd.DataFrame, n_pois: int) -> list[str]:
    """Sorted by (user, ts), POIs in 1..n_pois-1 with coordinates, hours of week in 0..167, intervals >= 0."""
    problems = []
    order = df.sort_values(["user_idx", "ts"], kind="stable").index
    if not (order == df.index).all():
        problems.append("check-ins are not sorted by (user_idx, ts)")
    if (bad := int(((df["poi_idx"] < 1) | (df["poi_idx"] >= n_pois)).sum())):
        problems.append(f"{bad} check-ins with a poi_idx outside 1..{n_pois - 1}")
    if (bad := int(df[["lat", "lon"]].isna().any(axis=1).sum())):
        problems.append(f"{bad} check-ins without coordinates")
    if (bad := int((~df["hour_of_week"].between(0, 167)).sum())):
        problems.append(f"{bad} check-ins with an hour_of_week outside 0..167")
    if (bad := int(((df["hours_since_prev"] < 0) | (df["km_since_prev"] < 0)).sum())):
        problems.append(f"{bad} check-ins with a negative time or distance since the previous one")
    return problems


@dataclass(frozen=True)
class Queries:
    """The protocol's questions: for each target row of the check-ins, the user's rows before it."""
    rows: np.ndarray           # target rows (positions in the check-in arrays)
    poi: np.ndarray            # the POI of every check-in row
    last: np.ndarray           # [len(rows)] the POI of the check-in just before each target

    @classmethod
    def of(cls, checkins: pd.DataFrame, split: str) -> Queries:
        """Every check-in of `split` that has an earlier check-in of its user."""
        has_prev = run_starts(checkins["user_idx"].to_numpy()) < np.arange(len(checkins))
        rows = np.flatnonzero(has_prev & (checkins["split"].to_numpy() == split))
        poi = checkins["poi_idx"].to_numpy()
        return cls(rows, poi, poi[rows - 1])

    @property
    def targets(self) -> np.ndarray:
        return self.poi[self.rows]


def ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among its scores (ties count against the target, a target that is not
    finite is last); column 0 is padding."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[:, 0] = -np.inf
    mine = scores[np.arange(len(targets)), targets]
    rank = (scores > mine[:, None]).sum(axis=1) + (scores == mine[:, None]).sum(axis=1)
    return np.where(np.isfinite(mine), rank, scores.shape[1])


def protocol_metrics(rank: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Acc@k (target in the top k) and MRR from 1-based ranks."""
    rank = np.asarray(rank, dtype=np.float64)
    if not len(rank):
        return {**{f"acc_at_{k}": 0.0 for k in ks}, "mrr": 0.0}
    return {**{f"acc_at_{k}": float((rank <= k).mean()) for k in ks}, "mrr": float((1.0 / rank).mean())}


# -- baselines ---------------------------------------------------------------------
def _popularity(checkins: pd.DataFrame, n_pois: int) -> np.ndarray:
    """Train check-ins per POI, with a tiny index tie-break so that the order is total and fixed."""
    train = checkins.loc[checkins["split"] == "train", "poi_idx"].to_numpy()
    return np.bincount(train, minlength=n_pois).astype(np.float64) - np.arange(n_pois) * 1e-9


def baseline_scores(name: str, checkins: pd.DataFrame, catalog: POICatalog, queries: Queries,
                    radius_km: float = 2.0, cells: int = 2**24):
    """Yields (rows, scores) batches of one baseline for `queries`; the last check-in's POI is never proposed
    (consecutive check-ins at one POI are one stay).

    popular: train check-ins per POI. radius_popular: the POIs within `radius_km` of the last check-in first, each
    group by popularity. markov: first-order transitions counted on consecutive train check-ins, popularity
    breaking ties. Batches hold about `cells` scores (the transitions are sparse): Foursquare's 60k venues fit.
    """
    n = len(catalog.category)
    batch = max(1, cells // n)
    pop = _popularity(checkins, n)
    scale = pop.max() + 1.0
    if name == "markov":
        train = checkins[checkins["split"] == "train"]
        user, poi = train["user_idx"].to_numpy(), train["poi_idx"].to_numpy()
        same = user[1:] == user[:-1]
        pairs = (poi[:-1][same], poi[1:][same])
        transitions = sp.csr_matrix((np.ones(len(pairs[0])), pairs), shape=(n, n))    # duplicates summed
    for lo in range(0, len(queries.rows), batch):
        last = queries.last[lo:lo + batch]
        if name == "popular":
            scores = np.broadcast_to(pop, (len(last), n))
        elif name == "radius_popular":
            km = haversine_km(catalog.xy[last, None, 0], catalog.xy[last, None, 1], catalog.xy[None, :, 0],
                              catalog.xy[None, :, 1])
            scores = pop + scale * (km <= radius_km)
        elif name == "markov":
            scores = transitions[last].toarray() * scale + pop
        else:
            raise ValueError(f"unknown next-POI baseline {name!r}; choose popular, radius_popular or markov")
        scores = np.array(scores, dtype=np.float64)
        scores[np.arange(len(last)), last] = -np.inf        # the next check-in is never the last one's POI
        yield slice(lo, lo + len(last)), scores


BASELINES = ("popular", "radius_popular", "markov")


def baseline_metrics(checkins: pd.DataFrame, catalog: POICatalog, queries: Queries,
                     radius_km: float = 2.0) -> dict[str, dict[str, float]]:
    """The protocol's metrics of every baseline on `queries`."""
    out = {}
    for name in BASELINES:
        rank = np.concatenate([ranks(scores, queries.targets[rows]) for rows, scores
                               in baseline_scores(name, checkins, catalog, queries, radius_km)] or [np.zeros(0)])
        out[name] = protocol_metrics(rank)
    return out


def protocol_table(results: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per method, columns Acc@1, Acc@5, Acc@10, MRR: the table of the asset's metadata and the README."""
    columns = ["method", *(f"Acc@{k}" for k in KS), "MRR"]
    return pd.DataFrame([{"method": name, **{f"Acc@{k}": m[f"acc_at_{k}"] for k in KS}, "MRR": m["mrr"]}
                         for name, m in results.items()], columns=columns)


def table_problems(table: pd.DataFrame) -> list[str]:
    """The first row (the model) must beat every baseline on Acc@10."""
    if table.empty:
        return []
    model, acc = table["method"].iloc[0], table.set_index("method")["Acc@10"]
    return [f"{model} Acc@10 {acc[model]:.4f} is not above {name}'s {acc[name]:.4f}"
            for name in BASELINES if name in acc.index and not acc[model] > acc[name]]
