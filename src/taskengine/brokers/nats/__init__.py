"""The NATS JetStream broker (`nats://host:4222?stream=name`): a replicated log (ADR 0031)."""

from taskengine.brokers.nats.broker import NatsBroker

__all__ = ["NatsBroker"]
