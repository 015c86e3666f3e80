"""The README's settings table is generated from Settings and cannot drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskengine import settings_table
from taskengine.settings import Settings
from taskengine.settings_table import REGENERATE, current, descriptions, main, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_one_settings_generates() -> None:
    found = current(README.read_text())
    assert found is not None, f"README.md has lost its generated settings table; {REGENERATE}"
    assert found == render(), f"README.md's settings table differs from Settings; run: {REGENERATE}"


def test_every_field_has_a_row_and_a_description() -> None:
    assert set(descriptions()) == set(Settings.__struct_fields__), (
        f"give each Settings field a one-line docstring under it; then run: {REGENERATE}"
    )
    table = render()
    for name in Settings.__struct_fields__:
        assert f"| `TASKENGINE_{name.upper()}` |" in table, name
    assert "`TASKENGINE_PROCESSES` still works (deprecated)" in table


def test_a_field_without_a_docstring_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = descriptions()
    del docs["prefetch"]
    monkeypatch.setattr(settings_table, "descriptions", lambda: docs)
    with pytest.raises(settings_table.MissingDescription, match=r"prefetch.*make settings-table"):
        render()


def test_check_fails_on_a_stale_table_and_write_fixes_it(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    table = render()
    stale.write_text(f"# x\n\n{table.replace('most tasks leased', 'most leased')}\n")
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
    assert stale.read_text() == f"# x\n\n{table}\n"
