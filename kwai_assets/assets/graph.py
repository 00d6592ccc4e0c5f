"""[graph] Positive pairs mined from the train split (exact Swing for items and users), and item2vec over them.

Assets: item_positive_pairs, user_positive_pairs, item2vec. Checks: item_positive_pairs_valid,
user_positive_pairs_valid, item2vec_valid.
"""
import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp

from kwai_assets.assets.common import (
    check_result,
    config_from,
    engines_agree,
    guard,
    materialized_metadata,
    to_dataclass,
)
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.steps import digest
from kwai_assets.core.swing import SwingParams, columns_with_neighbours, pair_problems, train_matrix
from kwai_assets.core.vectors import vector_problems
from kwai_assets.models.item2vec import Item2VecConfig, train_item2vec
from kwai_assets.resources import EngineResource

SwingConfig = config_from(SwingParams)
Item2VecRunConfig = config_from(Item2VecConfig)


def _problems(pairs: pd.DataFrame, train: sp.csr_matrix, params: SwingParams) -> list[str]:
    return pair_problems(pairs, params.top_k, columns_with_neighbours(train, params))


def _train(splits: pd.DataFrame, id_maps: pd.DataFrame, side: str) -> sp.csr_matrix:
    return train_matrix(splits, index_sizes(id_maps), side)


def _positive_pairs(side: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """`{side}_positive_pairs` and its check `{side}_positive_pairs_valid`."""
    name = f"{side}_positive_pairs"

    @dg.asset(name=name, group_name="graph", kinds={"scipy", "parquet"},
              description=f"(src, dst, score): exact Swing between {side}s on the train split, the top_k highest "
                          f"per src{'' if side == 'item' else ' (the same on the transposed matrix)'}.")
    def _asset(context: dg.AssetExecutionContext, config: SwingConfig, engine: EngineResource, splits: pd.DataFrame,
               id_maps: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        params = to_dataclass(config, SwingParams)
        pairs, stats = engine.steps().positive_pairs(splits, index_sizes(id_maps), side, params)
        guard(context, name, pairs, _problems(pairs, _train(splits, id_maps, side), params))
        return dg.Output(pairs, metadata={**stats.as_metadata(), **config.model_dump(), "engine": engine.kind,
                                          # scores match within float tolerance only: rows, no output digest
                                          "input_digest": digest(splits, **config.model_dump()),
                                          "output_rows": len(pairs),
                                          f"{side}s_with_neighbours": pairs["src"].nunique()})

    @dg.asset_check(asset=name, name=f"{name}_valid", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits"), "id_maps": dg.AssetIn("id_maps")},
                    description="No self pairs, scores > 0, at most top_k per src, sim(i,j) = sim(j,i), and every "
                                f"{side} with co-occurring neighbours present.")
    def _check(context: dg.AssetCheckExecutionContext, pairs: pd.DataFrame, splits: pd.DataFrame,
               id_maps: pd.DataFrame) -> dg.AssetCheckResult:
        meta = materialized_metadata(context, name)
        params = SwingParams(**{k: meta[k] for k in SwingParams.__dataclass_fields__ if k in meta})
        return check_result(_problems(pairs, _train(splits, id_maps, side), params),
                            f"{len(pairs)} pairs over {pairs['src'].nunique()} {side}s", pairs=len(pairs))

    return _asset, _check


item_positive_pairs, item_positive_pairs_valid = _positive_pairs("item")
item_positive_pairs_engines_agree = engines_agree("item_positive_pairs")
user_positive_pairs, user_positive_pairs_valid = _positive_pairs("user")


def _walked_items(pairs: pd.DataFrame) -> np.ndarray:
    """Items on the Swing graph: those with a neighbour, which every walk set covers."""
    return np.union1d(pairs["src"].to_numpy(), pairs["dst"].to_numpy())


@dg.asset(group_name="graph", kinds={"gensim", "parquet"},
          description="(item_idx, vector): gensim Word2Vec (skip-gram, negative sampling) on DeepWalk walks over "
                      "the item Swing graph, for every item with a Swing neighbour.")
def item2vec(context: dg.AssetExecutionContext, config: Item2VecRunConfig, engine: EngineResource,
             item_positive_pairs: pd.DataFrame, id_maps: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    vectors, stats = train_item2vec(item_positive_pairs, index_sizes(id_maps)["item"],
                                    to_dataclass(config, Item2VecConfig), engine.steps().item_walks)
    guard(context, "item2vec", vectors, vector_problems(vectors, "item_idx", _walked_items(item_positive_pairs)))
    return dg.Output(vectors, metadata={**stats.as_metadata(), **config.model_dump(), "rows": len(vectors),
                                        "dim": config.dim, "engine": engine.kind})


@dg.asset_check(asset="item2vec", name="item2vec_valid", blocking=True,
                additional_ins={"item_positive_pairs": dg.AssetIn("item_positive_pairs")},
                description="One finite, non-zero vector per item of the Swing graph, all of one dimension.")
def item2vec_valid(vectors: pd.DataFrame, item_positive_pairs: pd.DataFrame) -> dg.AssetCheckResult:
    return check_result(vector_problems(vectors, "item_idx", _walked_items(item_positive_pairs)),
                        f"{len(vectors)} item vectors, every item of the Swing graph covered", rows=len(vectors))
