"""The community health model of the business plan (configs/health.yaml)."""
