"""A SparkSession for the engine: `KWAI_SPARK_MASTER` (default `local[2]`), UTC, no UI, few shuffle partitions
for one machine (a cluster sets its own through `spark-defaults.conf` or `KWAI_SPARK_CONF`)."""
from __future__ import annotations

import os
import shutil

from pyspark.sql import SparkSession


def java_problem() -> str | None:
    """Why Spark cannot start here, or None: it needs a Java runtime (the system's `java`, or JAVA_HOME)."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return None
    return "Spark needs a Java runtime: install one (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"


def spark_session(master: str | None = None, shuffle_partitions: int = 8) -> SparkSession:
    """The process's session (created once): deterministic settings the equality with DuckDB relies on."""
    if problem := java_problem():
        raise RuntimeError(problem)
    builder = (SparkSession.builder.master(master or os.environ.get("KWAI_SPARK_MASTER", "local[2]"))
               .appName("kwai_assets")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.driver.memory", os.environ.get("KWAI_SPARK_DRIVER_MEMORY", "2g")))
    for pair in filter(None, os.environ.get("KWAI_SPARK_CONF", "").split(",")):
        key, _, value = pair.partition("=")
        builder = builder.config(key.strip(), value.strip())
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
