"""The steps an engine runs, on DuckDB and numpy / scipy (`KWAI_ENGINE=duckdb`, the default).

`kwai_assets.spark.steps` has the same functions on Spark, with the same arguments and results (pandas in and
out at the asset's boundary); the assets call whichever their engine resource names.
"""
from kwai_assets.core.attributes import attributes
from kwai_assets.core.clean import clean_interactions
from kwai_assets.core.index_space import to_index_space
from kwai_assets.core.reid import first_seen
from kwai_assets.core.split import split_by_user
from kwai_assets.core.swing import positive_pairs
from kwai_assets.core.walks import item_walks

__all__ = ["agreement_problems", "attributes", "clean_interactions", "first_seen", "item_walks", "positive_pairs",
           "split_by_user", "to_index_space"]


def agreement_problems(asset: str, rows: dict[str, int]) -> list[str]:
    """The engines' latest materializations of `asset` (engine -> rows) disagree on the row count."""
    if len(set(rows.values())) <= 1:
        return []
    return [f"{asset}: the engines wrote different row counts: "
            + ", ".join(f"{engine} {n:,}" for engine, n in sorted(rows.items()))]
