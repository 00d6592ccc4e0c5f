"""Exact Swing on Spark: the definition of `core.swing` as joins, the way distributed Swing operators run it.

    sim(i, j) = sum over user pairs {u, v} who both touched i and j of w_u * w_v / (alpha + |I_u ∩ I_v|)

1. (u, v, i) triples: each item's users joined with themselves, u < v.
2. |I_u ∩ I_v| per pair; pairs sharing one item are dropped (they add to no sim(i, j), i != j).
3. The kept triples joined with themselves on the pair, i < j, each adding the pair's weight to (i, j); the
   sums are mirrored to (j, i), so the two are the same float, as in `core.swing`.
4. The top_k per src, ties to the lower dst, as `core.swing`.

Step 3 moves W = sum over kept pairs of |I_u ∩ I_v|^2 rows through a shuffle: the arithmetic of the definition,
(halved by the i < j order), which the caps of the scaling plan bound. Each score adds its pair weights in
ascending order (deterministic whatever the partitioning), `core.swing` in pair order: the two engines' scores
agree within float tolerance, not bit for bit.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from kwai_assets.core.swing import CAP_A, CAP_B, CAP_C, CAP_M, SwingParams, SwingStats, check_params


def swing(splits: DataFrame, side: str, params: SwingParams, n_rows: int,
          n_columns: int) -> tuple[DataFrame, SwingStats]:
    """(src, dst, score) between `side`s ("item" or "user") on the train split, and the stats of `core.swing`
    (`n_rows` x `n_columns`: the index sizes of the other side and of `side`)."""
    check_params(params.alpha, params.top_k, params.drop_rows_above, params.max_rows_per_column)
    if params.max_history is not None:
        raise ValueError("max_history is not implemented on the Spark engine (its seeded sample is numpy's); "
                         "run Swing with KWAI_ENGINE=duckdb or without the cap")
    column, row = ("item_idx", "user_idx") if side == "item" else ("user_idx", "item_idx")
    pairs = capped(splits.where(F.col("split") == "train").select(F.col(row).alias("u"), F.col(column).alias("i"))
                   .distinct(), params).localCheckpoint()
    weights = pairs.groupBy("u").agg((1.0 / F.sqrt(F.count(F.lit(1)))).alias("w") if params.user_weight
                                     else F.lit(1.0).alias("w"))
    a, b = pairs.alias("a"), pairs.alias("b")
    triples = a.join(b, (F.col("a.i") == F.col("b.i")) & (F.col("a.u") < F.col("b.u"))).select(
        F.col("a.u").alias("u"), F.col("b.u").alias("v"), F.col("a.i").alias("i")).localCheckpoint()
    shared = triples.groupBy("u", "v").agg(F.count(F.lit(1)).alias("c")).localCheckpoint()
    used = shared.where(F.col("c") >= 2)
    wu, wv = weights.alias("wu"), weights.alias("wv")
    weighted = (used.join(wu, used["u"] == F.col("wu.u")).join(wv, used["v"] == F.col("wv.u"))
                .select(used["u"], used["v"], (F.col("wu.w") * F.col("wv.w") / (params.alpha + used["c"]))
                        .alias("weight")))
    q = triples.join(weighted, ["u", "v"]).localCheckpoint()
    q1, q2 = q.alias("q1"), q.alias("q2")
    # each unordered (i, j) once, i < j, mirrored after: sim(i, j) and sim(j, i) are the same float; the weights
    # are added in sorted order, so a sum does not depend on how Spark partitioned them
    half = (q1.join(q2, (F.col("q1.u") == F.col("q2.u")) & (F.col("q1.v") == F.col("q2.v"))
                    & (F.col("q1.i") < F.col("q2.i")))
            .groupBy(F.col("q1.i").alias("src"), F.col("q2.i").alias("dst"))
            .agg(F.aggregate(F.array_sort(F.collect_list("q1.weight")), F.lit(0.0), lambda acc, w: acc + w)
                 .alias("score"))
            .where(F.col("score") > 0))
    sim = half.unionByName(half.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "score"))
    best = Window.partitionBy("src").orderBy(F.col("score").desc(), F.col("dst").asc())
    top = (sim.withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") <= params.top_k)
           .drop("_rank").orderBy("src", F.col("score").desc(), "dst").localCheckpoint())
    counts = shared.agg(F.count(F.lit(1)).alias("pairs"),
                        F.sum(F.when(F.col("c") >= 2, 1).otherwise(0)).alias("used"),
                        F.sum(F.when(F.col("c") >= 2, F.col("c")).otherwise(0)).alias("triples"),
                        F.sum(F.when(F.col("c") >= 2, F.col("c") * F.col("c")).otherwise(F.col("c")))
                        .alias("work")).first()
    stats = SwingStats(rows=n_rows, columns=n_columns, interactions=pairs.count(), pairs=counts["pairs"],
                       pairs_used=counts["used"] or 0, triples=counts["triples"] or 0, work=counts["work"] or 0,
                       output_pairs=top.count())
    return top, stats


def capped(pairs: DataFrame, params: SwingParams) -> DataFrame:
    """`core.swing.capped` on (u, i) rows: users above `drop_rows_above` items dropped, then each item's
    `max_rows_per_column` users of smallest `core.swing.cap_keys` kept (bigint arithmetic, no overflow)."""
    if params.drop_rows_above is not None:
        light = pairs.groupBy("u").agg(F.count(F.lit(1)).alias("n")).where(F.col("n") <= params.drop_rows_above)
        pairs = pairs.join(light.select("u"), "u")
    if params.max_rows_per_column is not None:
        mixed = ((F.col("u") * CAP_A) % CAP_M).bitwiseXOR(((F.col("i") + params.seed) * CAP_B) % CAP_M)
        order = Window.partitionBy("i").orderBy((mixed * CAP_C) % CAP_M, F.col("u"))
        pairs = (pairs.withColumn("_rank", F.row_number().over(order))
                 .where(F.col("_rank") <= params.max_rows_per_column).drop("_rank"))
    return pairs.select("u", "i")
