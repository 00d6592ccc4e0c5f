"""The prepare group's core functions chained, without Dagster: a source to its splits, for benchmarks and tests.

The assets run the same functions one per asset (with checks and storage in
between); this chain is how a benchmark or a test gets the same tables in one
call, so that none of them carries its own copy of the steps.
"""
from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

import pandas as pd

from kwai_assets.core.attributes import interaction_counts, join_attributes
from kwai_assets.core.clean import clean_interactions
from kwai_assets.core.index_space import to_index_space
from kwai_assets.core.reid import extend_id_maps, first_seen, index_sizes
from kwai_assets.core.split import split_by_user
from kwai_assets.sources.base import Source
from kwai_assets.sources.contract import ITEMS, POIS, USERS


class Prepared(NamedTuple):
    splits: pd.DataFrame          # index-space interactions with their split, as the `splits` asset
    id_maps: pd.DataFrame
    users: pd.DataFrame           # user_attributes
    pois: pd.DataFrame            # poi_attributes

    @property
    def sizes(self) -> dict[str, int]:
        """Embedding-table sizes per entity (the padding index 0 included), as `core.reid.index_sizes`."""
        return index_sizes(self.id_maps)


def prepared(source: Source, k: int = 10) -> Prepared:
    """All of `source`'s days through cleaning (k-core `k`), attributes, re-id, index space and the split."""
    first, last = source.date_range()
    clean, _ = clean_interactions(source.interactions(first, last + timedelta(days=1)), k=k)
    users, _ = join_attributes(interaction_counts(clean, "user_id"), source.users(), USERS)
    items, _ = join_attributes(interaction_counts(clean, "item_id"), source.items(), ITEMS)
    pois, _ = join_attributes(interaction_counts(clean, "poi_id"), source.pois(), POIS)
    maps = extend_id_maps(None, {"user": first_seen(clean, "user_id"), "item": first_seen(clean, "item_id"),
                                 "poi": first_seen(clean, "poi_id"),
                                 "category": sorted(set(items["category"]) | set(pois["category"]))})
    return Prepared(split_by_user(to_index_space(clean, maps, items)), maps, users, pois)
