"""Pure functions on DataFrames and arrays. No Dagster here."""
