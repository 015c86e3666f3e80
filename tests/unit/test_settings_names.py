"""Renamed settings: the old name still works, with a warning; the new one wins over it."""

from __future__ import annotations

import logging

import pytest

from taskengine import settings as settings_module
from taskengine.settings import Settings, unknown_env_names, warn_unknown_env


def test_process_pool_is_read_from_its_new_and_its_deprecated_name() -> None:
    assert Settings.from_env({"TASKENGINE_PROCESS_POOL": "3"}).process_pool == 3
    assert Settings.from_env({"TASKENGINE_PROCESSES": "2"}).process_pool == 2
    both = {"TASKENGINE_PROCESSES": "2", "TASKENGINE_PROCESS_POOL": "3"}
    assert Settings.from_env(both).process_pool == 3
    assert unknown_env_names(both) == []  # deprecated is not unknown


def test_the_deprecated_env_name_is_warned_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())
    said: list[str] = []
    for _ in range(2):
        warn_unknown_env({"TASKENGINE_PROCESSES": "2"}, say=said.append)
    assert said == ["TASKENGINE_PROCESSES is deprecated: use TASKENGINE_PROCESS_POOL"]


def test_from_env_logs_the_deprecation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="taskengine.settings"):
        Settings.from_env({"TASKENGINE_PROCESSES": "2", "TASKENGINE_PROCESS_POOL": "3"})
    assert "TASKENGINE_PROCESSES is deprecated: use TASKENGINE_PROCESS_POOL; ignored" in caplog.text


def test_the_old_keyword_is_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="processes is deprecated: use process_pool"):
        changed = Settings().with_changes(processes=2)
    assert changed.process_pool == 2
    with pytest.warns(DeprecationWarning, match="use process_pool"):
        assert Settings.from_env({}, processes=4).process_pool == 4
