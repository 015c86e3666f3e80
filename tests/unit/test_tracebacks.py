"""The traceback a failed attempt keeps: redacted like the logs, capped with its tail kept."""

from __future__ import annotations

from taskengine.errors import TaskFailed, TaskTimeout
from taskengine.logging import redact_text
from taskengine.runtime.tracebacks import cap_tail, format_traceback


def test_redact_text_hides_tokens_url_passwords_and_secret_pairs() -> None:
    text = (
        "GET https://bob:s3cr3t@api.example/x failed; Authorization: Bearer abc.def\n"
        'password="hunter2" api_key=AKIA123 token: xyz, user=bob\n'
    )
    redacted = redact_text(text)
    for secret in ("s3cr3t", "abc.def", "hunter2", "AKIA123", "xyz"):
        assert secret not in redacted, redacted
    assert "https://bob:***@api.example/x" in redacted and "user=bob" in redacted


def test_cap_tail_keeps_the_end_within_the_cap_at_a_character_boundary() -> None:
    text = "é" * 10_000 + "the error"
    capped = cap_tail(text, 8192)
    assert len(capped.encode()) <= 8192
    assert capped.endswith("the error")
    assert capped.startswith("[a traceback of 20009 bytes: its head was cut]\n")
    assert cap_tail("short", 8192) == "short"


def test_format_traceback_of_a_raised_error_and_of_made_up_ones() -> None:
    try:
        raise ValueError("boom password=hunter2")
    except ValueError as exc:
        trace = format_traceback(exc)
    assert trace is not None and trace.startswith("Traceback (most recent call last):")
    assert "ValueError: boom password=[redacted]" in trace
    assert format_traceback(TaskTimeout("timed out")) is None  # never raised: no frames
    assert format_traceback(TaskFailed("KeyError", "'pages'")) is None  # the child sent none
    child = TaskFailed("KeyError", "'pages'", "Traceback …\n  File \"c.py\"\nKeyError: 'pages'\n")
    assert format_traceback(child) == child.child_traceback
