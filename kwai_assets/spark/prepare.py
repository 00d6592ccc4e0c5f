"""The prepare group on Spark: cleaning and the k-core, the attribute joins, re-id, index space and the split.

Each function mirrors the one of `core` with the same name and writes the same rows (tests compare them on the
synthetic presets). The SQL is `core`'s own text where Spark runs it as written (the validity rule, first-seen
order, the index-space join, the split rule); where DuckDB's dialect differs (DELETE for the k-core, DESCRIBE for
the column types, `* EXCLUDE`) the same step is written with the DataFrame API. No Python UDF anywhere: every row
is handled by Spark's own operators.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from kwai_assets.core.attributes import UNKNOWN, JoinReport
from kwai_assets.core.clean import CLEAN_ORDER, INVALID_REASON, INVALID_REASONS, CleanReport, valid_distinct
from kwai_assets.core.index_space import INDEX_SPACE, UNMAPPED
from kwai_assets.core.reid import first_seen_sql
from kwai_assets.core.split import positions, split_rule
from kwai_assets.sources.contract import TableSpec


def sql(spark: SparkSession, query: str, **tables: DataFrame) -> DataFrame:
    """`query` over `tables`, each registered as a temporary view of its keyword's name."""
    for name, df in tables.items():
        df.createOrReplaceTempView(name)
    return spark.sql(query)


def kcore(df: DataFrame, k: int) -> tuple[DataFrame, int]:
    """Rows whose user and item both have at least k rows, repeated until nothing changes: the unique maximal
    k-core, as `core.clean.kcore`. Returns it and the number of rounds that removed rows."""
    rows, rounds = df.count(), 0
    while True:
        users = df.groupBy("user_id").count().where(F.col("count") >= k).select("user_id")
        items = df.groupBy("item_id").count().where(F.col("count") >= k).select("item_id")
        kept = df.join(users, "user_id", "left_semi").join(items, "item_id", "left_semi").localCheckpoint()
        left = kept.count()
        if left == rows:
            return df, rounds
        df, rows, rounds = kept, left, rounds + 1


def clean_interactions(raw: DataFrame, k: int = 10) -> tuple[DataFrame, CleanReport]:
    """Drop invalid rows, exact duplicates, then take the k-core on users and items (`core.clean`)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    spark = raw.sparkSession
    columns = raw.columns
    report = CleanReport(raw_rows=raw.count())
    reasons = sql(spark, f"SELECT {INVALID_REASON} AS r, count(*) AS n FROM raw GROUP BY 1", raw=raw).collect()
    counts = {r["r"]: r["n"] for r in reasons if r["r"] is not None}
    report.invalid = {name: counts.get(name, 0) for name in INVALID_REASONS}
    clean = sql(spark, valid_distinct(columns), raw=raw).localCheckpoint()
    report.rows = clean.count()
    report.duplicates = report.raw_rows - sum(report.invalid.values()) - report.rows
    before = clean.agg(F.countDistinct("user_id").alias("u"), F.countDistinct("item_id").alias("i")).first()
    clean, report.kcore_iterations = kcore(clean, k)
    after = clean.agg(F.countDistinct("user_id").alias("u"), F.countDistinct("item_id").alias("i"),
                      F.count(F.lit(1)).alias("n")).first()
    report.users, report.items = after["u"], after["i"]
    report.kcore_rows_removed, report.rows = report.rows - after["n"], after["n"]
    report.kcore_users_removed = before["u"] - report.users
    report.kcore_items_removed = before["i"] - report.items
    return sql(spark, f"SELECT {', '.join(columns)} FROM clean ORDER BY {CLEAN_ORDER}", clean=clean), report


def interaction_counts(clean: DataFrame, key: str) -> DataFrame:
    """One row per non-null id: id, n_interactions (`core.attributes.interaction_counts`)."""
    return (clean.where(F.col(key).isNotNull()).groupBy(key).agg(F.count(F.lit(1)).alias("n_interactions"))
            .orderBy(key))


def join_attributes(counts: DataFrame, table: DataFrame, spec: TableSpec) -> tuple[DataFrame, JoinReport]:
    """Left-join `table`, deduplicated on the key with its first row kept, onto `counts`
    (`core.attributes.join_attributes`); `table`'s `_row` column is its rows' delivered order."""
    key = spec.key
    first = Window.partitionBy(key).orderBy("_row")
    dedup = table.withColumn("_n", F.row_number().over(first)).where(F.col("_n") == 1).drop("_n")
    for column in spec.columns[1:]:
        if column.name not in dedup.columns:
            dedup = dedup.withColumn(column.name, F.lit(None).cast("double" if column.kind == "float" else "string"))
    others = [c for c in dedup.columns if c not in (key, "_row")]
    attrs = dedup.select(F.col(key).cast(StringType()).alias("_key"), *others)
    out = counts.join(attrs, counts[key] == attrs["_key"], "left").select(
        counts[key], "n_interactions",
        *[F.coalesce(F.col(c), F.lit(UNKNOWN)).alias(c) if isinstance(attrs.schema[c].dataType, StringType)
          else F.col(c) for c in others],
        F.col("_key").isNotNull().alias("has_attributes")).orderBy(key).localCheckpoint()
    totals = out.agg(F.count(F.lit(1)).alias("ids"), F.sum((~F.col("has_attributes")).cast("int")).alias("missing"),
                     F.sum("n_interactions").alias("all"),
                     F.sum(F.when(~F.col("has_attributes"), F.col("n_interactions")).otherwise(0)).alias("lost"),
                     ).first()
    ids, missing = totals["ids"], totals["missing"] or 0
    report = JoinReport(ids=ids, missing=missing, missing_fraction=missing / max(ids, 1),
                        interactions_affected=float(totals["lost"] or 0) / max(int(totals["all"] or 0), 1),
                        duplicate_rows=table.count() - dedup.count())
    return out, report


def first_seen(clean: DataFrame, key: str) -> list[str]:
    """Distinct non-null ids of `key` by first timestamp, then id (`core.reid.first_seen`): collected to the
    driver, one string per id, as the id map they extend is built there."""
    return [r[0] for r in sql(clean.sparkSession, first_seen_sql(key), clean=clean).collect()]


def to_index_space(clean: DataFrame, id_maps: DataFrame, item_attributes: DataFrame) -> DataFrame:
    """user_idx, item_idx, poi_idx, category_idx, ts, lat, lon, event, seq (`core.index_space.to_index_space`)."""
    out = sql(clean.sparkSession, INDEX_SPACE, clean=clean, maps=id_maps, item_attributes=item_attributes)
    out = out.localCheckpoint()
    unmapped = out.where(F.col("user_idx").isNull() | F.col("item_idx").isNull()).count()
    if unmapped:
        raise ValueError(UNMAPPED.format(unmapped))
    return out.select(*[F.col(c).cast("long") for c in ("user_idx", "item_idx", "poi_idx", "category_idx")],
                      "ts", "lat", "lon", "event", "seq")


def split_by_user(interactions: DataFrame, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  leave_one_out: bool = False) -> DataFrame:
    """`interactions` plus a `split` column (`core.split.split_by_user`)."""
    rule = split_rule(ratios, leave_one_out)
    out = sql(interactions.sparkSession, f"SELECT *, {rule} AS split FROM ({positions(interactions.columns)})",
              interactions=interactions)
    return out.orderBy("user_idx", "pos").drop("pos", "n")
