"""Member kinds (churn, value, ...): their trainer, frames of features and labels, fit, backtests and tuning."""
