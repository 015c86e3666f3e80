"""The metrics collector: counters and timings the runtime feeds (the telemetry that reads them
sits above the runtime, in `taskengine.telemetry`)."""

from taskengine.metrics.collector import Metrics, Throughput, Timings, outcome_labels, percentile

__all__ = ["Metrics", "Throughput", "Timings", "outcome_labels", "percentile"]
