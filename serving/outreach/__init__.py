"""Outreach: who is contacted, with what and how often (issue 43). So far the contact log's command."""
