"""The features built from a dataset's tables: schema, point-in-time expressions, interaction matrices, campaign
outcomes and snapshots, on DuckDB or Spark."""
