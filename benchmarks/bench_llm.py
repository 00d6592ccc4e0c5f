"""Prompt building and the template backend on a synthetic preset (default `large`, 100k users).

Prepares the data with the core functions of the assets (common.prepared), then times
user_prompts / item_prompts, template generation and the template encoder.
Usage: python benchmarks/bench_llm.py [--preset large]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import measured, table  # noqa: E402

from kwai_assets.core.pipeline import prepared  # noqa: E402
from kwai_assets.llm.backends import TemplateBackend  # noqa: E402
from kwai_assets.llm.prompts import item_prompts, user_prompts  # noqa: E402
from kwai_assets.sources import SyntheticSource  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="large")
    args = parser.parse_args()
    tables, backend, rows = prepared(SyntheticSource(args.preset)), TemplateBackend(), []
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
