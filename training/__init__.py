"""Training: one job for every model kind, read as its story in job.py (judged on held-out data beside the
baselines and the champion: choosing.py; recorded in MLflow: tracking.py; promoted: promoting.py), each task's
trainer, fit, evaluation and tuning in its own subpackage (members/, items/, uplift/), on a floor of the trainer
interface, tuning budgets, the gate and every metric (trainer.py, tuning.py, gate.py, metrics.py)."""
