"""A SparkSession for the engine: `KWAI_SPARK_MASTER` (default `local[2]`), no UI, 8 shuffle partitions and a 2 GB
driver for one machine. `KWAI_SPARK_CONF` (`key=value;key=value`) overrides any of these for a cluster (settings
made here win over `spark-defaults.conf`); the session time zone stays UTC and Arrow never falls back to the
row-by-row path, which the equality with DuckDB relies on."""
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
    settings = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(shuffle_partitions),
                "spark.driver.memory": "2g"}
    for pair in filter(None, os.environ.get("KWAI_SPARK_CONF", "").split(";")):
        key, _, value = pair.partition("=")
        settings[key.strip()] = value.strip()
    settings.update({"spark.sql.session.timeZone": "UTC", "spark.sql.execution.arrow.pyspark.enabled": "true",
                     "spark.sql.execution.arrow.pyspark.fallback.enabled": "false"})
    builder = SparkSession.builder.master(master or os.environ.get("KWAI_SPARK_MASTER", "local[2]"))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.appName("kwai_assets").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
