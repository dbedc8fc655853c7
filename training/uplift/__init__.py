"""Uplift: who a randomized campaign's push changes (its data, its learners' fit, its trainer)."""
