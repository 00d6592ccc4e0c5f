"""The thin Dagster layer: one module per group, checks beside their assets."""
