"""docs/configuration.md against Settings: every setting has its row, under the variable that
sets it, with its default as Settings has it; and no row names a setting that does not exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from learner_export.config import Settings, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _rows() -> dict[str, str]:
    """The table's rows: variable -> its default cell."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", DOC.read_text(), re.M)
    return {name: default.strip() for name, default in rows}


def _shown(default: Any) -> str | None:
    """The default as the table writes it; None for a setting off by default ("none ...")."""
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if default in (None, ""):
        return None
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def test_every_setting_has_a_row_with_its_default() -> None:
    rows = _rows()
    for field, info in Settings.model_fields.items():
        name = env_name(field)
        assert name in rows, f"{name} is missing from docs/configuration.md"
        shown = _shown(info.default)
        if shown is None:
            assert rows[name].startswith("none"), (name, rows[name])
        else:
            assert rows[name] == shown, (name, rows[name], shown)


def test_no_row_for_a_setting_that_does_not_exist() -> None:
    names = {env_name(field) for field in Settings.model_fields}
    assert set(_rows()) - names == set()
