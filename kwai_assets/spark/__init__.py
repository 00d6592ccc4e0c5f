"""The Spark engine (`KWAI_ENGINE=spark`): the heavy relational and graph steps as PySpark DataFrame / SQL jobs
that write the same rows as the DuckDB path. No Dagster here; the SQL the engines share lives in `core`."""
