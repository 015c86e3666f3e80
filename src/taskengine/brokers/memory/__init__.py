"""The in-memory broker (`memory://`): the reference semantics of the contract, one process."""

from taskengine.brokers.memory.broker import MemoryBroker

__all__ = ["MemoryBroker"]
