"""List responses bounded in bytes: a page of tasks ends early, with a cursor, at its budget.

Records are fetched through the Inspector in chunks (the first small, the next sized by the mean
item so far) and each is encoded as it comes, so neither the response nor the records held for
it grow with `limit` times the size of a task. A page holds at least one task, however big, so
following `next_cursor` always makes progress.
"""

from __future__ import annotations

import msgspec

from taskengine.api.schemas import task_view
from taskengine.brokers.base import TaskFilter
from taskengine.inspector import Inspector

FIRST_CHUNK = 20
_ENVELOPE = 64  # bytes of the page around its items: '{"items":[', '],"next_cursor":', the id
_encoder = msgspec.json.Encoder()


async def bounded_page(
    inspector: Inspector, task_filter: TaskFilter, limit: int, cursor: str | None, budget: int
) -> bytes:
    """The JSON of a TaskPage of at most `limit` matching tasks after `cursor`, newest first,
    that ends before its JSON passes `budget` bytes (but holds at least one task)."""
    items: list[bytes] = []
    room = budget - _ENVELOPE
    used = 0  # bytes of the items kept, with their commas
    while len(items) < limit:
        want = limit - len(items)
        if items:  # as many more as fit at the mean size so far, and one to tell
            if used >= room:
                return _page(items, cursor)  # the last page said there are more
            want = min(want, (room - used) * len(items) // used + 1)
        else:
            want = min(want, FIRST_CHUNK)
        page = await inspector.list_tasks(task_filter, want, cursor)
        for record in page.items:
            encoded = _encoder.encode(task_view(record, False))  # no tracebacks in lists
            if items and used + len(encoded) + 1 > room:
                return _page(items, cursor)  # the id of the last item kept
            items.append(encoded)
            used += len(encoded) + 1
            cursor = record.id
        if page.next_cursor is None or not page.items:
            return _page(items, None)
    return _page(items, cursor)


def _page(items: list[bytes], next_cursor: str | None) -> bytes:
    """The TaskPage JSON from encoded items (no second encoding pass)."""
    return b'{"items":[%s],"next_cursor":%s}' % (b",".join(items), _encoder.encode(next_cursor))
