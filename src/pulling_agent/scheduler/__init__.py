"""Scheduled jobs: interval, cron and date triggers; each fire runs once across the fleet.
``definitions`` and ``timing`` are pure, ``store`` and ``runner`` talk to MongoDB, and
``service`` (:class:`~pulling_agent.scheduler.service.JobService`) is what the API, the
console and the CLI use."""
