"""The steps of `kwai_assets.core.steps` on Spark (`KWAI_ENGINE=spark`): the same arguments and results.

The asset layer still hands pandas frames in and takes them back (the IO manager stores every asset as one
Parquet file), so each step crosses the driver at its boundary; inside, the work is Spark's.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kwai_assets.core.attributes import JoinReport
from kwai_assets.core.clean import CleanReport
from kwai_assets.core.swing import SwingParams, SwingStats
from kwai_assets.sources.contract import TableSpec
from kwai_assets.spark import prepare
from kwai_assets.spark import swing as spark_swing
from kwai_assets.spark import walks as spark_walks
from kwai_assets.spark.session import spark_session


def _spark(df: pd.DataFrame):
    return spark_session().createDataFrame(df)


def clean_interactions(raw: pd.DataFrame, k: int = 10) -> tuple[pd.DataFrame, CleanReport]:
    df, report = prepare.clean_interactions(_spark(raw), k)
    return df.toPandas(), report


def attributes(clean: pd.DataFrame, table: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, JoinReport]:
    ordered = table.assign(_row=np.arange(len(table), dtype=np.int64))     # "first row" = first delivered
    df, report = prepare.join_attributes(prepare.interaction_counts(_spark(clean), spec.key), _spark(ordered), spec)
    return df.toPandas(), report


def first_seen(clean: pd.DataFrame, key: str) -> list[str]:
    return prepare.first_seen(_spark(clean[[key, "ts"]]), key)


def to_index_space(clean: pd.DataFrame, id_maps: pd.DataFrame, item_attributes: pd.DataFrame) -> pd.DataFrame:
    return prepare.to_index_space(_spark(clean), _spark(id_maps), _spark(item_attributes)).toPandas()


def split_by_user(interactions: pd.DataFrame, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  leave_one_out: bool = False) -> pd.DataFrame:
    return prepare.split_by_user(_spark(interactions), ratios, leave_one_out).toPandas()


def positive_pairs(splits: pd.DataFrame, sizes: dict[str, int], side: str,
                   params: SwingParams) -> tuple[pd.DataFrame, SwingStats]:
    rows, columns = (sizes["user"], sizes["item"]) if side == "item" else (sizes["item"], sizes["user"])
    pairs, stats = spark_swing.swing(_spark(splits[["user_idx", "item_idx", "split"]]), side, params, rows, columns)
    out = pairs.toPandas()
    return out.astype({"src": "int64", "dst": "int64", "score": "float64"}), stats


def item_walks(pairs: pd.DataFrame, n_items: int, walks_per_node: int = 10, length: int = 40,
               seed: int = 0) -> np.ndarray:
    return spark_walks.random_walks(_spark(pairs), walks_per_node, length, seed)
