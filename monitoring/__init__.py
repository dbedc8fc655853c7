"""Monitoring: data drift, prediction drift and real performance against a dataset's champions, with Evidently."""
