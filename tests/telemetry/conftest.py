"""Fixtures of the telemetry tests: the runtime tests' apps on every broker under test."""

from tests.runtime.conftest import app_on as app_on
