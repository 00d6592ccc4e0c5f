"""[graph] Positive pairs mined from the train split: exact Swing for items and users."""
import dagster as dg
import pandas as pd

from kwai_assets.assets.common import materialized_metadata, result
from kwai_assets.core.evaluation import interaction_matrix
from kwai_assets.core.reid import index_sizes
from kwai_assets.core.swing import columns_with_neighbours, swing


class SwingConfig(dg.Config):
    alpha: float = 1.0
    top_k: int = 50                      # neighbours kept per src
    user_weight: bool = False            # multiply pair weights by 1/sqrt(|I_u| |I_v|)
    max_history: int | None = None       # cap per row, deterministic sample; None = no cap
    seed: int = 0


def _train(splits: pd.DataFrame, id_maps: pd.DataFrame, side: str):
    sizes = index_sizes(id_maps)
    train = interaction_matrix(splits, "train", sizes["user"], sizes["item"])
    return train if side == "item" else train.T.tocsr()


def _positive_pairs(side: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    name, other = f"{side}_positive_pairs", "user" if side == "item" else "item"

    @dg.asset(name=name, group_name="graph", kinds={"scipy", "parquet"})
    def _asset(config: SwingConfig, splits: pd.DataFrame, id_maps: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        pairs, stats = swing(_train(splits, id_maps, side), alpha=config.alpha, top_k=config.top_k,
                             user_weight=config.user_weight, max_history=config.max_history, seed=config.seed)
        return dg.Output(pairs, metadata={**stats.as_metadata(), **config.model_dump(),
                                          f"{side}s_with_neighbours": pairs["src"].nunique()})

    @dg.asset_check(asset=name, name=f"{name}_valid", blocking=True,
                    additional_ins={"splits": dg.AssetIn("splits"), "id_maps": dg.AssetIn("id_maps")})
    def _check(context: dg.AssetCheckExecutionContext, pairs: pd.DataFrame, splits: pd.DataFrame,
               id_maps: pd.DataFrame) -> dg.AssetCheckResult:
        meta = materialized_metadata(context, name)
        top_k = int(meta.get("top_k", 50))
        self_pairs = int((pairs["src"] == pairs["dst"]).sum())
        not_positive = int((pairs["score"] <= 0).sum())
        over_k = int((pairs.groupby("src").size() > top_k).sum())
        both = pairs.merge(pairs, left_on=["src", "dst"], right_on=["dst", "src"], suffixes=("", "_back"))
        asymmetric = int((both["score"] != both["score_back"]).sum())
        expected = columns_with_neighbours(_train(splits, id_maps, side), meta.get("max_history"),
                                           int(meta.get("seed", 0)))
        missing = len(set(expected.tolist()) - set(pairs["src"].unique().tolist()))
        passed = not (self_pairs or not_positive or over_k or asymmetric or missing)
        return result(passed, f"{self_pairs} self pairs, {not_positive} scores <= 0, {over_k} {side}s over top_k={top_k}, "
                              f"{asymmetric} of {len(both)} two-way pairs with sim(i,j) != sim(j,i), "
                              f"{missing} of {len(expected)} {side}s with co-{other}s missing",
                      self_pairs=self_pairs, not_positive=not_positive, over_top_k=over_k,
                      asymmetric=asymmetric, two_way_pairs=len(both), missing_src=missing)

    _asset.__doc__ = (f"(src, dst, score): exact Swing between {side}s on the train split, "
                      f"the top_k highest per src{'' if side == 'item' else ' (the same on the transposed matrix)'}.")
    return _asset, _check


item_positive_pairs, item_positive_pairs_valid = _positive_pairs("item")
user_positive_pairs, user_positive_pairs_valid = _positive_pairs("user")
