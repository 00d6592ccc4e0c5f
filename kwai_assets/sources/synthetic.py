"""A deterministic generator of Kwai-like click logs with planted structure.

The world (cities, districts, POIs, photos, users) depends only on the seed and
the preset; each day's clicks depend on the seed and the date, so any day can
be generated on its own and in any order (daily partitions, backfills, the
schedule asking for yesterday).

Planted structure that tests and models can recover:
- every user has a home (a district and a point in it) and a Dirichlet taste
  over categories; a click picks a category from the taste, then a POI of
  that category, in the home district with probability ``p_home`` (lower on
  weekends), else mostly in another district of the same city;
- every photo belongs to one POI and has that POI's category; within a POI
  photos and within a district POIs have skewed (power-law) popularity;
- a fraction ``p_trending`` of clicks go to globally trending photos (a
  power law over all photos, wherever the user is), the part of the feed
  that a popularity baseline captures;
- a click's coordinates are where the user is: at the POI for a local click;
  a trending photo is watched wherever the user is (at home, or at the last
  POI visited that day);
- every user has a preferred hour of the day around which most clicks fall;
- mobility (the next-POI model's signal): each day starts at home; a local
  click is a visit, and visits follow three rules, in this order.
  Routines: every user has three anchor POIs (one in the home district, two
  in districts of the home city, categories drawn from the taste) and a
  weekly schedule that maps each six-hour band of a weekday and of a weekend
  day to one anchor; a share ``p_routine`` of the local clicks go to the
  anchor of their hour of week. Nearby moves: of the other local clicks after
  the day's first visit, a share ``p_near`` go to one of the ``NEAR`` POIs
  nearest to the previous visit, with weight exp(-km / ``near_km``) times the
  user's taste for the POI's category. The rest are chosen as above (taste,
  home or away district, popularity).
- with ``p_cycle`` > 0 (off by default), order: a share ``p_cycle`` of a
  user's clicks on day d are in the category at step (start_u + d) of one
  fixed cycle through all categories, so users move through categories in
  the same order, one step a day, from their own starting point. What comes
  next is then predictable from the last days and from nothing else.

Like real client logs the stream is dirty: a fraction ``dirt`` of rows lose
their user id, get impossible coordinates or a zero timestamp, and the same
fraction again is repeated verbatim (exact duplicates). raw_users / raw_items
miss a fraction ``missing_attributes`` of their ids.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from kwai_assets.core.geo import nearest_pois
from kwai_assets.core.sequences import run_starts

CITIES = {  # name: (lat, lon)
    "Beijing": (39.904, 116.407),
    "Shanghai": (31.230, 121.474),
    "Chengdu": (30.573, 104.066),
    "Guangzhou": (23.129, 113.264),
}
CATEGORIES = [
    "food", "cafe", "park", "museum", "mall", "gym", "bar", "cinema", "temple", "zoo",
    "beach", "school", "hospital", "hotel", "market", "stadium", "library", "theatre", "lake", "street",
]
EVENTS = np.array(["click", "like", "share"])
EVENT_P = np.array([0.85, 0.12, 0.03])
AGE_RANGES = np.array(["<18", "18-24", "25-34", "35-44", "45+"])
ANCHORS = 3          # routine POIs per user
BANDS = 4            # six-hour bands of the day in a routine schedule
NEAR = 8             # a nearby move picks among this many POIs nearest to the previous visit


@dataclass(frozen=True)
class Preset:
    users: int
    pois: int
    items: int
    categories: int
    districts_per_city: int
    days: int
    clicks_per_user_day: float


PRESETS = {
    "tiny": Preset(users=300, pois=96, items=600, categories=8, districts_per_city=3, days=14, clicks_per_user_day=4.0),
    "small": Preset(users=3_000, pois=480, items=4_000, categories=12, districts_per_city=5, days=30,
                    clicks_per_user_day=1.1),
    "medium": Preset(users=50_000, pois=3_000, items=20_000, categories=16, districts_per_city=8, days=30,
                     clicks_per_user_day=0.8),
    "large": Preset(users=100_000, pois=6_000, items=40_000, categories=20, districts_per_city=10, days=30,
                    clicks_per_user_day=1.0),
    "xlarge": Preset(users=333_000, pois=6_000, items=40_000, categories=20, districts_per_city=10, days=30,
                     clicks_per_user_day=1.0),       # about 10M raw rows: the scaling benchmark's top size
}


def _rng(seed: int, *salt: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(repr(salt).encode())])


def _ids(prefix: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw ids that look like production ids and are not the index order."""
    return np.array([f"{prefix}{x}" for x in rng.choice(9_000_000, n, replace=False) + 1_000_000])


def _skewed(counts: np.ndarray, u: np.ndarray, power: float) -> np.ndarray:
    """Index in [0, counts) with mass on low indices (popular first)."""
    return np.minimum((counts * u**power).astype(np.int64), counts - 1)


class SyntheticSource:
    def __init__(self, preset: str = "small", seed: int = 7, start_date: str = "2026-01-01",
                 p_home: float = 0.8, p_trending: float = 0.25, dirt: float = 0.005, missing_attributes: float = 0.01,
                 p_cycle: float = 0.0, p_routine: float = 0.35, p_near: float = 0.6, near_km: float = 1.0):
        if preset not in PRESETS:
            raise ValueError(f"synthetic source: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.preset_name, self.preset = preset, PRESETS[preset]
        self.seed, self.start = seed, date.fromisoformat(start_date)
        self.p_home, self.p_trending = p_home, p_trending
        self.dirt, self.missing_attributes = dirt, missing_attributes
        if not 0.0 <= p_cycle <= 1.0:
            raise ValueError(f"synthetic source: p_cycle must be in [0, 1], got {p_cycle}")
        self.p_cycle = p_cycle
        for name, value in (("p_routine", p_routine), ("p_near", p_near)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"synthetic source: {name} must be in [0, 1], got {value}")
        if near_km <= 0:
            raise ValueError(f"synthetic source: near_km must be positive, got {near_km}")
        self.p_routine, self.p_near, self.near_km = p_routine, p_near, near_km

    # -- the world -----------------------------------------------------------
    @cached_property
    def world(self) -> dict[str, np.ndarray]:
        p, rng = self.preset, _rng(self.seed, "world")
        cities = np.array(list(CITIES))
        n_districts = len(cities) * p.districts_per_city
        district_city = np.repeat(np.arange(len(cities)), p.districts_per_city)
        centers = np.array([CITIES[c] for c in cities])[district_city] + rng.normal(0, 0.08, (n_districts, 2))

        # POIs: every (district, category) cell has at least one, the rest at random
        cells = n_districts * p.categories
        cell = np.concatenate([np.arange(cells), rng.integers(0, cells, max(p.pois - cells, 0))])[: p.pois]
        poi_district, poi_category = cell // p.categories, cell % p.categories
        poi_xy = centers[poi_district] + rng.normal(0, 0.01, (p.pois, 2))
        # sort POIs by cell so each cell is a contiguous run; shuffle within the cell = popularity order
        order = np.lexsort((rng.random(p.pois), cell))
        poi_district, poi_category, poi_xy = poi_district[order], poi_category[order], poi_xy[order]
        cell_of_poi = poi_district * p.categories + poi_category
        cell_start = np.searchsorted(cell_of_poi, np.arange(cells))
        cell_count = np.bincount(cell_of_poi, minlength=cells)

        # photos: every POI has at least one, sorted by POI
        item_poi = np.sort(np.concatenate([np.arange(p.pois), rng.integers(0, p.pois, p.items - p.pois)]))
        poi_item_start = np.searchsorted(item_poi, np.arange(p.pois))
        poi_item_count = np.bincount(item_poi, minlength=p.pois)

        trending = rng.permutation(p.items)   # global popularity order of photos
        users_district = rng.integers(0, n_districts, p.users)
        user_home = centers[users_district] + rng.normal(0, 0.01, (p.users, 2))
        taste = rng.dirichlet(np.full(p.categories, 0.3), p.users)
        activity = rng.lognormal(0.0, 0.7, p.users)
        activity *= p.clicks_per_user_day / activity.mean()
        return {
            "cities": cities, "district_city": district_city, "centers": centers,
            "poi_district": poi_district, "poi_category": poi_category, "poi_xy": poi_xy,
            "cell_start": cell_start, "cell_count": cell_count,
            "item_poi": item_poi, "trending": trending,
            "poi_item_start": poi_item_start, "poi_item_count": poi_item_count,
            "user_district": users_district, "user_home": user_home,
            "user_taste_cdf": np.cumsum(taste, axis=1), "user_taste": taste,
            "user_activity": activity, "user_hour": rng.choice([8.0, 12.5, 18.5, 21.5], p.users),
            "user_ids": _ids("u", p.users, rng), "item_ids": _ids("p", p.items, rng), "poi_ids": _ids("l", p.pois, rng),
        }

    @cached_property
    def mobility(self) -> dict[str, np.ndarray]:
        """Anchors, weekly schedules and each POI's nearest POIs, from their own random stream (the world above is
        the same whatever the mobility parameters)."""
        p, w, rng = self.preset, self.world, _rng(self.seed, "mobility")
        home = w["user_district"]
        district = np.stack([home] + [home - home % p.districts_per_city
                                      + rng.integers(0, p.districts_per_city, p.users) for _ in range(ANCHORS - 1)],
                            axis=1)
        category = np.minimum((w["user_taste_cdf"][:, None, :] < rng.random((p.users, ANCHORS, 1))).sum(axis=2),
                              p.categories - 1)
        cell = district * p.categories + category
        anchor = w["cell_start"][cell] + _skewed(w["cell_count"][cell], rng.random(cell.shape), 1.5)
        near, km = nearest_pois(w["poi_xy"], NEAR + 1)           # the POI itself first
        return {"anchor": anchor, "schedule": rng.integers(0, ANCHORS, (p.users, 2, BANDS)),
                "near": near[:, 1:], "near_km": km[:, 1:]}

    # -- one day of clicks ---------------------------------------------------
    def day(self, day: date) -> pd.DataFrame:
        p, w, m = self.preset, self.world, self.mobility
        rng = _rng(self.seed, "day", day.isoformat())
        n_per_user = rng.poisson(w["user_activity"])
        user = np.repeat(np.arange(p.users), n_per_user)
        n = len(user)
        hour = np.where(rng.random(n) < 0.7, w["user_hour"][user] + rng.normal(0, 1.5, n), rng.uniform(0, 24, n))
        hour = np.sort(np.mod(hour, 24) + 24 * user) - 24 * user      # each user's clicks of the day in time order

        category = (w["user_taste_cdf"][user] < rng.random((n, 1))).sum(axis=1)
        category = np.minimum(category, p.categories - 1)
        if self.p_cycle > 0:
            category = self._cycled(category, user, (day - self.start).days, rng)
        p_home = self.p_home - (0.2 if day.weekday() >= 5 else 0.0)
        n_districts = len(w["centers"])
        home = w["user_district"][user]
        same_city = home - home % p.districts_per_city + rng.integers(0, p.districts_per_city, n)
        away = np.where(rng.random(n) < 0.8, same_city, rng.integers(0, n_districts, n))
        district = np.where(rng.random(n) < p_home, home, away)
        cell = district * p.categories + category
        poi = w["cell_start"][cell] + _skewed(w["cell_count"][cell], rng.random(n), 1.5)
        trend = rng.random(n) < self.p_trending
        trending = w["trending"][_skewed(np.full(n, p.items), rng.random(n), 2.0)]
        poi[trend] = w["item_poi"][trending[trend]]
        routine = ~trend & (rng.random(n) < self.p_routine)
        slot = m["schedule"][user, int(day.weekday() >= 5), (hour // (24 // BANDS)).astype(np.int64)]
        poi[routine] = m["anchor"][user, slot][routine]
        here = self._move(poi, user, trend, ~trend & ~routine & (rng.random(n) < self.p_near), rng.random(n))

        item = w["poi_item_start"][poi] + _skewed(w["poi_item_count"][poi], rng.random(n), 2.0)
        item[trend] = trending[trend]
        at_home = trend & (here < 0)
        where = np.where(trend[:, None], w["poi_xy"][np.maximum(here, 0)], w["poi_xy"][poi])
        where[at_home] = w["user_home"][user[at_home]]
        lat, lon = (where + rng.normal(0, 0.0005, (n, 2))).T
        ts = pd.Timestamp(day).as_unit("us") + pd.to_timedelta((hour * 3600).astype(np.int64), unit="s")

        frame = pd.DataFrame({
            "user_id": w["user_ids"][user].astype(object),
            "item_id": w["item_ids"][item],
            "poi_id": w["poi_ids"][poi],
            "lat": lat, "lon": lon,
            "ts": ts,
            "event": EVENTS[rng.choice(len(EVENTS), n, p=EVENT_P)],
            "seq": 0,                                   # no order beyond the timestamp
        })
        return self._dirty(frame, rng)

    def _move(self, poi: np.ndarray, user: np.ndarray, trend: np.ndarray, near: np.ndarray,
              u: np.ndarray) -> np.ndarray:
        """Walk each user's day in time order: rows in `near` move to a POI near the previous visit (changing
        `poi` in place). Returns where each user is before each click: the POI of the last visit, -1 at home."""
        m, taste, poi_category = self.mobility, self.world["user_taste"], self.world["poi_category"]
        n = len(poi)
        step = np.arange(n) - run_starts(user)          # position of each click in its user's day
        here = np.full(n, -1)
        for k in range(1, int(step.max(initial=0)) + 1):
            rows = np.flatnonzero(step == k)
            here[rows] = np.where(trend[rows - 1], here[rows - 1], poi[rows - 1])    # a trending photo: no move
            go = rows[near[rows] & (here[rows] >= 0)]
            options = m["near"][here[go]]
            weight = np.exp(-m["near_km"][here[go]] / self.near_km) * (
                taste[user[go, None], poi_category[options]] + 0.05)
            cdf = np.cumsum(weight, axis=1)
            pick = np.minimum((cdf < u[go, None] * cdf[:, -1:]).sum(axis=1), NEAR - 1)
            poi[go] = options[np.arange(len(go)), pick]
        return here

    def _cycled(self, category: np.ndarray, user: np.ndarray, day_index: int,
                rng: np.random.Generator) -> np.ndarray:
        """Replace a share p_cycle of the categories by the user's step of the cycle on this day.

        The cycle and the starting points have their own random stream: the
        rest of the world is the same with or without the cycle.
        """
        k = self.preset.categories
        world = _rng(self.seed, "cycle")
        order, start = world.permutation(k), world.integers(0, k, self.preset.users)
        return np.where(rng.random(len(category)) < self.p_cycle, order[(start[user] + day_index) % k], category)

    def _dirty(self, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        n = len(frame)
        k = int(round(n * self.dirt))
        if k == 0:
            return frame.sort_values("ts", kind="stable").reset_index(drop=True)
        rows = rng.choice(n, 3 * k, replace=False)
        frame.loc[rows[:k], "user_id"] = None
        frame.loc[rows[k:2 * k], "lat"] = 999.0
        frame.loc[rows[2 * k:], "ts"] = pd.Timestamp(0).as_unit("us")
        duplicates = frame.iloc[rng.choice(n, k, replace=False)]
        frame = pd.concat([frame, duplicates], ignore_index=True)
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    # -- the source interface -------------------------------------------------
    def interactions(self, start: date, end: date) -> pd.DataFrame:
        days = [start + timedelta(d) for d in range((end - start).days)]
        frames = [self.day(d).assign(pdate=d.isoformat()) for d in days]
        out = pd.concat(frames, ignore_index=True)
        out["user_id"] = out["user_id"].astype("str")
        return out

    def _drop_some(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        keep = _rng(self.seed, "missing", what).random(len(frame)) >= self.missing_attributes
        return frame[keep].reset_index(drop=True)

    def users(self) -> pd.DataFrame:
        w, rng = self.world, _rng(self.seed, "users")
        n = len(w["user_ids"])
        return self._drop_some(pd.DataFrame({
            "user_id": w["user_ids"],
            "gender": rng.choice(["F", "M"], n),
            "age_range": AGE_RANGES[rng.choice(len(AGE_RANGES), n, p=[0.1, 0.3, 0.3, 0.2, 0.1])],
            "city": w["cities"][w["district_city"][w["user_district"]]],
        }), "users")

    def items(self) -> pd.DataFrame:
        w, rng = self.world, _rng(self.seed, "items")
        poi = w["item_poi"]
        return self._drop_some(pd.DataFrame({
            "item_id": w["item_ids"],
            "poi_id": w["poi_ids"][poi],
            "category": np.array(CATEGORIES)[w["poi_category"][poi]],
            "duration_s": rng.integers(5, 300, len(poi)).astype(str),
        }), "items")

    def pois(self) -> pd.DataFrame:
        w = self.world
        category = np.array(CATEGORIES)[w["poi_category"]]
        return pd.DataFrame({
            "poi_id": w["poi_ids"],
            "lat": w["poi_xy"][:, 0], "lon": w["poi_xy"][:, 1],
            "category": category,
            "name": [f"{c} {i}" for i, c in enumerate(category)],
            "city": w["cities"][w["district_city"][w["poi_district"]]],
        })

    def date_range(self) -> tuple[date, date]:
        return self.start, self.start + timedelta(days=self.preset.days - 1)
