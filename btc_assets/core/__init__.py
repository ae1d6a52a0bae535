"""Pure Polars transformations: no Dagster, no HTTP, no file paths."""
