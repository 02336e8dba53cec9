"""The tests use the SQL the package ships (package data), not a copy of it."""

from __future__ import annotations

from pathlib import Path

from learner_export import sql
from tests.db.test_migrate import SAMPLE_ADAPTER


def test_the_tests_use_the_shipped_sql() -> None:
    """The sample adapter the tests use is the one the service ships."""
    assert Path(str(sql.SAMPLE_ADAPTER)).resolve() == SAMPLE_ADAPTER.resolve()
