"""Pure decisions: retry backoff, circuit breaking, autoscaling, cron. Nothing here does I/O."""
