"""Pure torch modules and their training loops. No Dagster here."""
