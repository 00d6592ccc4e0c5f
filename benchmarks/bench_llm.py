"""Prompt building and the template backend on a synthetic preset (default `large`, 100k users).

Prepares the data with the same core functions as the assets, then times
user_prompts / item_prompts, template generation and the template encoder.
Usage: python benchmarks/bench_llm.py [--preset large]
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.core.attributes import interaction_counts, join_attributes  # noqa: E402
from kwai_assets.core.clean import clean_interactions  # noqa: E402
from kwai_assets.core.index_space import to_index_space  # noqa: E402
from kwai_assets.core.reid import extend_id_maps, first_seen  # noqa: E402
from kwai_assets.core.split import split_by_user  # noqa: E402
from kwai_assets.llm.backends import TemplateBackend  # noqa: E402
from kwai_assets.llm.prompts import item_prompts, user_prompts  # noqa: E402
from kwai_assets.sources import SyntheticSource  # noqa: E402
from kwai_assets.sources.contract import ITEMS, POIS, USERS  # noqa: E402


def prepared(preset: str) -> list:
    src = SyntheticSource(preset)
    first, last = src.date_range()
    clean, _ = clean_interactions(src.interactions(first, last + timedelta(days=1)))
    users, _ = join_attributes(interaction_counts(clean, "user_id"), src.users(), USERS)
    items, _ = join_attributes(interaction_counts(clean, "item_id"), src.items(), ITEMS)
    pois, _ = join_attributes(interaction_counts(clean, "poi_id"), src.pois(), POIS)
    maps = extend_id_maps(None, {"user": first_seen(clean, "user_id"), "item": first_seen(clean, "item_id"),
                                 "poi": first_seen(clean, "poi_id"),
                                 "category": sorted(set(items["category"]) | set(pois["category"]))})
    return [split_by_user(to_index_space(clean, maps, items)), maps, users, pois]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="large")
    args = parser.parse_args()
    tables, backend, rows = prepared(args.preset), TemplateBackend(), []
    for name, build in (("user", user_prompts), ("item", item_prompts)):
        with measured() as m:
            prompts = build(*tables)
        rows.append([f"{name}_prompts", len(prompts), round(m.seconds, 2), round(len(prompts) / m.seconds),
                     round(m.peak_rss_gb, 2)])
        with measured() as m:
            texts = [g.text for g in backend.generate(prompts["prompt"].tolist())]
        rows.append([f"{name}_profiles (template)", len(texts), round(m.seconds, 2), round(len(texts) / m.seconds),
                     round(m.peak_rss_gb, 2)])
        with measured() as m:
            backend.embed(texts)
        rows.append([f"{name}_llm_embeddings (template)", len(texts), round(m.seconds, 2),
                     round(len(texts) / m.seconds), round(m.peak_rss_gb, 2)])
    print(f"\npreset={args.preset}\n")
    print(table(["step", "rows", "wall s", "rows/s", "peak RSS GB"], rows))


if __name__ == "__main__":
    main()
