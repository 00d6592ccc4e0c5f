"""Storage and external services: the Parquet warehouse, MLflow, Redis."""
