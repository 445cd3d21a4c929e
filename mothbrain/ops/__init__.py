"""Running the pipeline: schedule, run records, lock, cron, briefing, status, doctor."""
