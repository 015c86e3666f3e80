"""Metrics: the collector fed by the runtime, the per-second sampler and history, Prometheus."""

from taskengine.metrics.collector import Metrics, Throughput, Timings, outcome_labels, percentile

__all__ = ["Metrics", "Throughput", "Timings", "outcome_labels", "percentile"]
