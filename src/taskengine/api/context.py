"""What every route needs: the app, its worker (when this process runs one), limits and tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskengine.api.auth import Tokens
from taskengine.api.hosts import AllowedHosts
from taskengine.app import App
from taskengine.feed import LiveFeed

if TYPE_CHECKING:
    from taskengine.runtime.engine import Engine

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_LIST_BYTES = 4 * 1024 * 1024  # of a list page's JSON; a bigger page ends early, with a cursor


@dataclass
class ApiContext:
    """Shared by the routes of one API instance."""

    app: App
    worker: Engine | None = None
    tokens: Tokens = field(default_factory=lambda: Tokens({}))
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts)
    max_body: int = MAX_BODY_BYTES
    max_depth: int = MAX_JSON_DEPTH
    max_list_bytes: int = MAX_LIST_BYTES
    started_at: float = 0.0
    live: LiveFeed = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveFeed(self.app, lambda: self.worker, self.started_at)
