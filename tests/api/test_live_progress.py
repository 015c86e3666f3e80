"""The live feed's tick carries the progress of the tasks running on any instance."""

from __future__ import annotations

import json
from pathlib import Path

from taskengine.feed import LiveFeed
from taskengine.testing import running_worker
from tests.runtime.apps import BOARD, build_app, finished, wait_for


async def test_a_tick_carries_the_running_tasks_progress(tmp_path: Path) -> None:
    BOARD.reset()
    app = build_app(data_dir=str(tmp_path))
    async with app:
        task_id = await app.submit("progress.async", {"key": "f"})
        async with running_worker(app, workers=1) as engine:
            await engine.progress_flusher.stop()
            await wait_for(lambda: BOARD.started("f").is_set(), 20, "the run")
            await engine.progress_once()
            feed = LiveFeed(app, lambda: engine)
            stream = feed.events()
            assert (await anext(stream))[0] == "history"
            await feed.tick()
            kind, data = await anext(stream)
            await stream.aclose()
            BOARD.release("f").set()
            await finished(app, [task_id], timeout=20)

    assert kind == "tick"
    progress = json.loads(data)["progress"]
    assert progress[task_id]["done"] == 3 and progress[task_id]["total"] == 3
    assert progress[task_id]["fraction"] == 1.0 and progress[task_id]["note"] == "step 3"
