"""The workflows suite, run tiny: its rows, and every task of every shape succeeded."""

from __future__ import annotations

import pytest

from bench import workflow_rates


def test_the_suite_times_a_chord_and_a_chain_of_groups_on_each_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[tuple[str, int]] = []
    real = workflow_rates.one_run

    async def checking(url: str, shape: workflow_rates.Shape) -> workflow_rates.Timing:
        timing = await real(url, shape)  # raises unless every task succeeded (and the sum)
        checked.append((url.split(":")[0], shape.tasks))
        return timing

    monkeypatch.setattr(workflow_rates, "one_run", checking)
    lines: list[str] = []
    rows = workflow_rates.run(
        runs=2,
        progress=lines.append,
        brokers=("memory", "sqlite"),
        chord_size=10,
        groups=3,
        group_size=4,
    )

    # a chord of 10 and its callback; 3 groups of 4 and the 2 joins between them
    assert checked == [(b, n) for b in ("memory", "sqlite") for n in (11, 11, 14, 14)]
    assert [r["name"] for r in rows] == [
        f"{broker}, {shape}{unit}"
        for broker in ("memory", "sqlite")
        for shape in ("chord of 10 + callback", "chain of 3 groups x 4 (+2 joins)")
        for unit in (" (s)", " (tasks/s)", ": submit (s)")
    ]
    for figure in rows:
        assert len(figure["values"]) == 2
        assert 0 < figure["min"] <= figure["median"] <= figure["max"]
    for whole, submit in zip(rows[0::3], rows[2::3], strict=True):
        assert all(s < w for s, w in zip(submit["values"], whole["values"], strict=True))
    assert len(lines) == 8


def test_a_wrong_callback_sum_is_an_error_not_a_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = workflow_rates.chord_shape(5)
    wrong = shape._replace(total=shape.total + 1)  # type: ignore[operator]
    with pytest.raises(RuntimeError, match="the callback returned 10"):
        workflow_rates.loop_runner(workflow_rates.one_run("memory://", wrong))
