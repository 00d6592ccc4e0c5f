"""The steps an engine runs, on DuckDB and numpy / scipy (`KWAI_ENGINE=duckdb`, the default).

`kwai_assets.spark.steps` has the same functions on Spark, with the same arguments and results (pandas in and
out at the asset's boundary); the assets call whichever their engine resource names.
"""
import hashlib

import numpy as np
import pandas as pd

from kwai_assets.core.attributes import attributes
from kwai_assets.core.clean import clean_interactions
from kwai_assets.core.index_space import to_index_space
from kwai_assets.core.reid import first_seen
from kwai_assets.core.split import split_by_user
from kwai_assets.core.swing import positive_pairs
from kwai_assets.core.walks import item_walks

# the steps (`kwai_assets.spark.steps` has each of them); the checks' helpers below are engine-neutral
__all__ = ["attributes", "clean_interactions", "first_seen", "item_walks", "positive_pairs", "split_by_user",
           "to_index_space"]


def digest(*frames: pd.DataFrame, **params: object) -> str:
    """An order-independent fingerprint of the rows of `frames` (and of `params`): equal tables, whatever their
    row order, give the same digest."""
    total = 0
    for df in frames:
        total += int(pd.util.hash_pandas_object(df, index=False).to_numpy(np.uint64).sum(dtype=np.uint64))
    text = f"{total % 2**64:016x}|{len(frames)}|{sorted(params.items())}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def agreement_problems(asset: str, outputs: dict[str, tuple[int, str | None]]) -> list[str]:
    """The engines' materializations of `asset` from the same input (engine -> (rows, output digest or None))
    disagree: different row counts, or different rows where both recorded a digest."""
    rows = {engine: n for engine, (n, _) in outputs.items()}
    if len(set(rows.values())) > 1:
        return [f"{asset}: from the same input the engines wrote different row counts: "
                + ", ".join(f"{engine} {n:,}" for engine, n in sorted(rows.items()))]
    digests = {d for _, d in outputs.values() if d is not None}
    if len(digests) > 1 and all(d is not None for _, d in outputs.values()):
        return [f"{asset}: from the same input the engines wrote {next(iter(rows.values())):,} rows each, "
                "but different ones (the output digests differ)"]
    return []
