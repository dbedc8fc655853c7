"""Monitoring: data drift, prediction drift and real performance against a dataset's champions, with Evidently
(monitor.py, drift.py, performance.py, reference.py); the reports' index page (index.py); campaign reports and
the statistics of randomized comparisons they and the champion/challenger split use (campaign_report.py,
campaign_stats.py); the `monitor` and `campaign report` commands."""
