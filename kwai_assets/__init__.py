"""kwai_assets: click logs to trained recommenders as Dagster software-defined assets."""
