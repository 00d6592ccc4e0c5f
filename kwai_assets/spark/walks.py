"""DeepWalk walks on Spark over the item Swing graph (`core.walks`): every walker advanced at once, one join a step.

The graph is `core.walks.item_graph`'s: undirected, weight max(sim(i, j), sim(j, i)). Each node's edges carry
the interval [lo, hi) of their share of the node's total weight; a step draws u ~ U[0, 1) per walker (Spark's
seeded `rand`) and moves it along the edge whose interval holds u: a weighted draw by a join on the node and a
range filter, no UDF. The draws are hashes of (seed, step, walk) (`xxhash64`, 53 bits), so the walks depend on
the seed alone, not on how Spark partitions them. They have `core.walks.random_walks`' distribution (the same
starts, `walks_per_node` rounds over every node with an edge, the same transition probabilities), not its
numbers: the two engines draw from different generators.
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def edge_intervals(pairs: DataFrame) -> DataFrame:
    """(src, dst, lo, hi): the symmetric graph's edges with their cumulative share of src's weight."""
    both = pairs.select("src", "dst", "score").unionByName(
        pairs.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "score"))
    edges = both.groupBy("src", "dst").agg(F.max("score").alias("w")).where(F.col("w") > 0)
    row = Window.partitionBy("src").orderBy("dst")
    total = Window.partitionBy("src")
    return (edges.withColumn("hi", F.sum("w").over(row.rowsBetween(Window.unboundedPreceding, 0))
                             / F.sum("w").over(total))
            .withColumn("lo", F.lag("hi", 1, 0.0).over(row))
            .withColumn("hi", F.when(F.lead("dst").over(row).isNull(), F.lit(1.0)).otherwise(F.col("hi")))
            .select("src", "dst", "lo", "hi"))


def uniform(seed: int, *columns) -> F.Column:
    """A deterministic U[0, 1) per row from a hash of `seed` and `columns`."""
    return (F.xxhash64(F.lit(seed), *columns).bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53))


def random_walks(pairs: DataFrame, walks_per_node: int = 10, length: int = 40, seed: int = 0) -> np.ndarray:
    """[walks, length] node ids: `walks_per_node` walks from every node with an edge, rounds in a seeded order."""
    spark = pairs.sparkSession
    edges = edge_intervals(pairs).localCheckpoint()
    nodes = edges.select(F.col("src").alias("node")).distinct()
    rounds = spark.range(walks_per_node).withColumnRenamed("id", "round")
    n_nodes = nodes.count()
    in_round = Window.partitionBy("round").orderBy("key", "node")          # each round a seeded permutation
    walkers = (nodes.crossJoin(rounds).withColumn("key", uniform(seed, F.col("round"), F.col("node")))
               .withColumn("walk", F.col("round") * n_nodes + F.row_number().over(in_round) - 1)
               .select("walk", "node").localCheckpoint())
    steps = [walkers.select("walk", F.lit(0).alias("step"), "node")]
    current = walkers
    for step in range(1, length):
        drawn = current.withColumn("u", uniform(seed, F.lit(step), F.col("walk")))
        current = (drawn.join(edges, (drawn["node"] == edges["src"]) & (drawn["u"] >= edges["lo"])
                              & (drawn["u"] < edges["hi"]))
                   .select("walk", F.col("dst").alias("node")).localCheckpoint())
        steps.append(current.select("walk", F.lit(step).alias("step"), "node"))
    table = steps[0]
    for part in steps[1:]:
        table = table.unionByName(part)
    rows = table.orderBy("walk", "step").toPandas()
    n = rows["walk"].nunique() if len(rows) else 0
    return rows["node"].to_numpy(np.int64).reshape(n, length)
