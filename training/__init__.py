"""Training: one job for every model kind (judged on held-out data beside the baselines and the champion),
fitting, tuning, backtests and evaluation."""
