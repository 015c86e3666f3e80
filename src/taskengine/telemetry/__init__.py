"""Telemetry above the runtime: the per-second sampler and its history, the JSON metrics,
the workers of every instance and the Prometheus exposition, all reading the engine's one
status snapshot (`runtime.status.EngineStatus`) and the collector's counters."""
