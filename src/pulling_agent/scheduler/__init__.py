"""Scheduled jobs: interval, cron and date triggers; each fire runs once across the fleet."""
