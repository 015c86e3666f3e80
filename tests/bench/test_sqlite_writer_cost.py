"""The SQLite writer-cost bench runs every phase and names the statements it timed."""

from __future__ import annotations

from bench.sqlite_writer_cost import measure


def test_every_phase_and_the_commit_are_reported() -> None:
    phases, statements = measure(tasks=300, batch=100, statements=True)
    assert list(phases) == ["enqueue", "reserve", "settle"]
    assert "COMMIT" in statements
    assert any(sql.startswith("INSERT INTO tasks") for sql in statements)
