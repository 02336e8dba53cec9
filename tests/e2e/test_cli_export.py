"""`learner-export export`: the HTTP export's bytes without HTTP, complete files or none, a
progress bar only on a terminal, and exit codes that say what happened."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from learner_export.cli.progress import Progress
from tests.conftest import SEED_LEARNERS, Database, LiveServer, interruptible, query

APP_NAME = "learner-export-cli-test"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: nothing of ours inherited, only what the test sets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXPORT_") and k not in ("DATABASE_URL", "PGAPPNAME")
    }
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "learner_export.cli.main", *args]


def cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        cli_command(*args), env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False
    )


def tagged(url: str) -> str:
    """The database URL with an application_name, to find the CLI's backend."""
    return url + ("&" if "?" in url else "?") + f"application_name={APP_NAME}"


def run_on_terminal(
    args: Sequence[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[int, bytes]:
    """Run with a pseudo-terminal as stderr; return the exit status and what it showed."""
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            cli_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=env,
            cwd=cwd,
        )
    finally:
        os.close(slave)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every slave end is closed
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return code, bytes(shown)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


def last_cli_audit(url: str) -> dict[str, Any]:
    rows = query(
        url,
        "SELECT outcome, rows_sent, bytes_sent, caller_id::text AS caller_id,"
        " detail FROM learner_export.export_audit WHERE request_id LIKE 'cli-%'"
        " ORDER BY started_at DESC LIMIT 1",
    )
    return dict(rows[0])


def http_export(server: LiveServer, params: list[tuple[str, str]]) -> bytes:
    with server.client() as client:
        response = client.get("/v1/exports/learners", params=tuple(params))
    assert response.status_code == 200, response.text
    return response.content


def two_clients(url: str) -> list[str]:
    return [r["id"] for r in query(url, "SELECT id FROM public.clients ORDER BY id LIMIT 2")]


def cases(clients: list[str]) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """(CLI arguments, the HTTP query of the same export)."""
    return [
        (["--format", "csv"], [("format", "csv")]),
        (
            [
                "--format",
                "jsonl",
                "--active",
                "true",
                "--columns",
                "learner_id,notes,created_at",
                "--limit",
                "1234",
            ],
            [
                ("format", "jsonl"),
                ("active", "true"),
                ("columns", "learner_id,notes,created_at"),
                ("limit", "1234"),
            ],
        ),
        (
            [
                "--format",
                "csv",
                "--bom",
                "--no-escape-formulas",
                "--client-id",
                clients[0],
                "--client-id",
                clients[1],
                "--created-from",
                "2020-01-01",
                "--created-to",
                "2030-01-01T00:00:00+02:00",
            ],
            [
                ("format", "csv"),
                ("bom", "true"),
                ("escape_formulas", "false"),
                ("client_id", clients[0]),
                ("client_id", clients[1]),
                ("created_from", "2020-01-01"),
                ("created_to", "2030-01-01T00:00:00+02:00"),
            ],
        ),
    ]


def test_export_is_byte_identical_to_the_http_download(
    live: LiveServer, database: Database, tmp_path: Path
) -> None:
    env = cli_env(DATABASE_URL=database.url)
    for n, (args, params) in enumerate(cases(two_clients(database.url))):
        target = tmp_path / f"out{n}"
        result = cli("export", "--as", database.admin_id, *args, "-o", str(target), env=env)
        assert result.returncode == 0, result.stderr
        # Not a terminal: nothing at all on stderr.
        assert result.stderr == b""
        assert result.stdout == b""
        assert target.read_bytes() == http_export(live, params)
    assert leftovers(tmp_path) == []
    audit = last_cli_audit(database.url)
    assert audit["outcome"] == "completed"
    assert audit["caller_id"] == database.admin_id
    assert audit["bytes_sent"] == (tmp_path / "out2").stat().st_size


def test_export_to_stdout(live: LiveServer, database: Database) -> None:
    result = cli(
        "export",
        "--as",
        database.admin_id,
        "--format",
        "jsonl",
        "--limit",
        "300",
        env=cli_env(DATABASE_URL=database.url),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout == http_export(live, [("format", "jsonl"), ("limit", "300")])


def cells(data: bytes) -> list[list[Any]]:
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    return [
        [ws.title, *row] for ws in workbook.worksheets for row in ws.iter_rows(values_only=True)
    ]


def test_export_xlsx_holds_the_http_download_cells(
    live: LiveServer, database: Database, tmp_path: Path
) -> None:
    target = tmp_path / "learners.xlsx"
    result = cli(
        "export",
        "--as",
        database.admin_id,
        "--format",
        "xlsx",
        "--limit",
        "600",
        "-o",
        str(target),
        env=cli_env(DATABASE_URL=database.url),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    got = cells(target.read_bytes())
    assert len(got) == 601
    assert got == cells(http_export(live, [("format", "xlsx"), ("limit", "600")]))


def test_progress_bar_on_a_terminal(database: Database, tmp_path: Path) -> None:
    target = tmp_path / "learners.csv"
    code, shown = run_on_terminal(
        ["export", "--as", database.admin_id, "-o", str(target)],
        env=cli_env(DATABASE_URL=database.url),
    )
    assert code == 0, shown
    text = shown.decode()
    assert "\r" in text
    assert f"{SEED_LEARNERS:,}/{SEED_LEARNERS:,} rows" in text
    assert "100.0%" in text and " MB" in text and "rows/s" in text
    assert target.read_bytes().count(b"\r\n") >= SEED_LEARNERS + 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], b"--limit: must not be negative"),
        (["--columns", "full_name,password"], b"--columns: unknown column(s) password"),
        (["--client-id", "not-a-uuid"], b"--client-id: not a UUID"),
        (
            ["--created-from", "2025-01-01", "--created-to", "2024-01-01"],
            b"--created-from: is after created_to",
        ),
        (["--active", "perhaps"], b"--active: must be true or false"),
        (["--format", "pdf"], b"--format: must be one of csv, jsonl, xlsx, parquet"),
        (["--as", "nobody"], b"invalid UUID value"),
    ],
)
def test_bad_arguments_exit_2_and_touch_nothing(
    database: Database, tmp_path: Path, args: list[str], message: bytes
) -> None:
    target = tmp_path / "learners.csv"
    target.write_bytes(b"the previous export\r\n")
    caller = [] if "--as" in args else ["--as", database.admin_id]
    result = cli(
        "export", *caller, *args, "-o", str(target), env=cli_env(DATABASE_URL=database.url)
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert target.read_bytes() == b"the previous export\r\n"
    assert leftovers(tmp_path) == []


def test_no_database_url_exits_2(tmp_path: Path) -> None:
    result = cli(
        "export",
        "--as",
        "00000000-0000-0000-0000-000000000001",
        "-o",
        str(tmp_path / "x.csv"),
        env=cli_env(),
    )
    assert result.returncode == 2
    assert b"DATABASE_URL is not set" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_exits_1_and_leaves_no_file(tmp_path: Path) -> None:
    result = cli(
        "export",
        "--as",
        "00000000-0000-0000-0000-000000000001",
        "-o",
        str(tmp_path / "x.csv"),
        env=cli_env(DATABASE_URL="postgresql://nobody@127.0.0.1:9/none"),
    )
    assert result.returncode == 1
    assert result.stderr == (
        b"learner-export: database at 127.0.0.1:9 refused the connection; "
        + str(tmp_path / "x.csv").encode()
        + b" was not written\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_caller_who_may_not_export_is_refused(database: Database, tmp_path: Path) -> None:
    stranger = "00000000-0000-0000-0000-0000000000ff"
    result = cli(
        "export",
        "--as",
        stranger,
        "-o",
        str(tmp_path / "x.csv"),
        env=cli_env(DATABASE_URL=database.url),
    )
    assert result.returncode == 1
    assert b"refused: no profile" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert last_cli_audit(database.url)["outcome"] == "denied"


def start_big_export(big_database: Database, target: Path) -> subprocess.Popen[bytes]:
    """An export of the big seed in small pages, stopped (SIGSTOP) once its file has bytes, so
    that whatever the test does next happens mid-export."""
    process = subprocess.Popen(
        cli_command(
            "export", "--as", big_database.admin_id, "--format", "jsonl", "-o", str(target)
        ),
        env=cli_env(DATABASE_URL=tagged(big_database.url), EXPORT_PAGE_SIZE="500"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = [
            p for p in target.parent.glob(f".{target.name}.partial-*") if p.stat().st_size > 0
        ]
        if partial:
            process.send_signal(signal.SIGSTOP)
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    else:
        process.kill()
        raise AssertionError("the export wrote nothing")
    assert process.poll() is None
    return process


def test_failure_mid_export_leaves_no_file(big_database: Database, tmp_path: Path) -> None:
    target = tmp_path / "learners.jsonl"
    target.write_bytes(b"the previous export\n")
    process = start_big_export(big_database, target)
    # Stopped as soon as it wrote, the CLI may not have its helper connection yet: the first
    # connection, which opened the export, is the one killed.
    backends = query(
        big_database.url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY backend_start",
        APP_NAME,
    )
    assert 1 <= len(backends) <= 2
    query(big_database.url, "SELECT pg_terminate_backend($1)", backends[0]["pid"])
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert b"export failed" in err
    assert b"was not written" in err
    assert target.read_bytes() == b"the previous export\n"
    assert leftovers(tmp_path) == []
    assert last_cli_audit(big_database.url)["outcome"] == "failed"


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")],
)
def test_interrupted_export_leaves_no_file(
    big_database: Database, tmp_path: Path, sig: int, code: int, word: bytes
) -> None:
    target = tmp_path / "learners.jsonl"
    process = start_big_export(big_database, target)
    process.send_signal(sig)
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert word in err
    assert b"Traceback" not in err
    assert not target.exists()
    assert leftovers(tmp_path) == []
    assert last_cli_audit(big_database.url)["outcome"] == "cancelled"
    # The snapshot was rolled back and the connection closed, not left behind.
    assert (
        query(
            big_database.url,
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            APP_NAME,
        )
        == []
    )


def test_progress_redraws_at_most_ten_times_a_second() -> None:
    now = [0.0]
    shown = io.StringIO()
    progress = Progress(shown, total=100_000, clock=lambda: now[0])
    for _ in range(10_000):  # one batch of 10 rows every millisecond, for ten seconds
        now[0] += 0.001
        progress.advance(rows=10, nbytes=5_000)
    progress.finish()
    lines = shown.getvalue().split("\r")[1:]
    assert 95 <= len(lines) <= 102
    assert all(len(line.rstrip("\n")) < 80 for line in lines)
    assert "100,000/100,000 rows" in lines[-1] and "50.0 MB" in lines[-1]
    assert shown.getvalue().endswith("\n")
    assert "ETA 0:05" in lines[len(lines) // 2]  # half-way, at 10,000 rows/s

    silent = Progress(None, total=10)
    silent.advance(rows=10, nbytes=100)
    silent.finish()
    silent.abandon()
    assert silent.rows == 10
