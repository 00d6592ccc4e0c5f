"""Timing and peak-memory helpers for the benchmarks (not tests)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import psutil

from kwai_assets.core.attributes import interaction_counts, join_attributes
from kwai_assets.core.clean import clean_interactions
from kwai_assets.core.index_space import to_index_space
from kwai_assets.core.reid import extend_id_maps, first_seen
from kwai_assets.core.split import split_by_user
from kwai_assets.sources.contract import ITEMS, POIS, USERS


@dataclass
class Measure:
    seconds: float = 0.0
    peak_rss_gb: float = 0.0
    start_rss_gb: float = 0.0


@contextmanager
def measured(interval: float = 0.02) -> Iterator[Measure]:
    """Wall time and the process's peak resident memory while the block runs (sampled)."""
    process, result, done = psutil.Process(), Measure(), threading.Event()
    peak = [process.memory_info().rss]
    result.start_rss_gb = peak[0] / 2**30

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        result.peak_rss_gb = max(peak[0], process.memory_info().rss) / 2**30


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table, ready for the README."""
    def fmt(v: object) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def prepared(src) -> list:
    """Source -> [splits, id_maps, user_attributes, poi_attributes] through the prepare group's core functions."""
    first, last = src.date_range()
    clean, _ = clean_interactions(src.interactions(first, last + timedelta(days=1)))
    users, _ = join_attributes(interaction_counts(clean, "user_id"), src.users(), USERS)
    items, _ = join_attributes(interaction_counts(clean, "item_id"), src.items(), ITEMS)
    pois, _ = join_attributes(interaction_counts(clean, "poi_id"), src.pois(), POIS)
    maps = extend_id_maps(None, {"user": first_seen(clean, "user_id"), "item": first_seen(clean, "item_id"),
                                 "poi": first_seen(clean, "poi_id"),
                                 "category": sorted(set(items["category"]) | set(pois["category"]))})
    return [split_by_user(to_index_space(clean, maps, items)), maps, users, pois]
