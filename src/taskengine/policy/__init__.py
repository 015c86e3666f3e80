"""Pure decisions: priority order, retry backoff, circuit breaking. Nothing here does I/O."""
