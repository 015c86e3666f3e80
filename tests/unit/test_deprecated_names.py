"""Old public names keep working and say what replaced them.

Kept out of /work/briefs/rename_runtime.py on purpose: these lines call the old names.
"""

from __future__ import annotations

import pytest

from taskengine.testing import memory_app


def test_app_worker_warns_and_builds_the_engine() -> None:
    app = memory_app()
    with pytest.warns(
        DeprecationWarning, match=r"App\.worker\(\) is deprecated: use App\.engine\(\)"
    ):
        engine = app.worker(workers=3)
    assert type(engine) is type(app.engine())
    assert engine.settings.workers == 3


def test_app_engine_does_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    memory_app().engine()
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
