"""Training jobs for churn, value and the recommenders; tuning, evaluation and the registry."""
