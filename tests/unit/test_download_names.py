"""What `learner-export download` takes from a server: only names of an export's shape, without
invisible characters, and text that a terminal shows as it is."""

from __future__ import annotations

import pytest

from learner_export.cli.download import filename_from, printable


@pytest.mark.parametrize(
    ("disposition", "fmt", "name"),
    [
        # The service's own names, ASCII and UTF-8 (RFC 5987), are kept.
        (
            'attachment; filename="learners-all-20261206T1420Z.csv"; '
            "filename*=UTF-8''learners-client-%C3%89cole-20261206T1420Z.csv",
            "csv",
            "learners-client-École-20261206T1420Z.csv",
        ),
        ('attachment; filename="learners-active-20261206T1420Z.jsonl"', "jsonl", None),
        ("attachment; filename=learners-all-20261206T142011Z.parquet", "parquet", None),
        # Any other name a server offers is not taken.
        ('attachment; filename="conftest.py"', "csv", "learners.csv"),
        ('attachment; filename="Makefile"', "csv", "learners.csv"),
        ('attachment; filename=".bashrc"', "jsonl", "learners.jsonl"),
        ('attachment; filename="learners-x.sh"', "csv", "learners.csv"),
        # Its extension must be the format's.
        ('attachment; filename="learners-all.xlsx"', "csv", "learners.csv"),
        ('attachment; filename="learners-all.csv.exe"', "csv", "learners.csv"),
        # Never a path.
        ('attachment; filename="../learners-all.csv"', "csv", "learners.csv"),
        ('attachment; filename="learners-/../../x.csv"', "csv", "learners.csv"),
        ("attachment; filename*=UTF-8''learners-%2F..%2Fx.csv", "csv", "learners.csv"),
        ('attachment; filename="learners-a\\\\b.csv"', "csv", "learners.csv"),
        (None, "xlsx", "learners.xlsx"),
        ("inline", "csv", "learners.csv"),
    ],
)
def test_only_names_of_an_exports_shape_are_taken(
    disposition: str | None, fmt: str, name: str | None
) -> None:
    expected = name if name is not None else disposition.split("filename=")[1].strip('"')
    assert filename_from(disposition, fmt) == expected


def test_bidi_and_control_characters_leave_file_names() -> None:
    # U+202E (right-to-left override) would show `learners-all-cod.exe` as `learners-all-exe.doc`.
    offered = "learners-all-\u202egpj\u2066\u200f\u200b-20261206T1420Z.csv"
    quoted = "".join(f"%{b:02X}" for b in offered.encode())
    name = filename_from(f"attachment; filename*=UTF-8''{quoted}", "csv")
    assert name == "learners-all-gpj-20261206T1420Z.csv"
    escaped = "learners-\x1b[31mred\x07\x9b2J-20261206T1420Z.csv"
    assert (
        filename_from(f'attachment; filename="{escaped}"', "csv")
        == "learners-[31mred2J-20261206T1420Z.csv"
    )


def test_printable_removes_what_a_terminal_would_act_on() -> None:
    body = 'HTTP 400: {"detail":"\x1b[2J\x1b]0;owned\x07bad \u202edate\u2069\x9b1m"}\r\nnext\tline'
    assert printable(body) == 'HTTP 400: {"detail":"[2J]0;ownedbad date1m"}  next line'
    assert printable("École \u2013 東京 ✓") == "École \u2013 東京 ✓"
