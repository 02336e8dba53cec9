"""`learner-export download`: the server's bytes, a file only when complete, resuming a cut
download after its last complete row, and exit codes that say what happened."""

from __future__ import annotations

import contextlib
import csv
import http.server
import io
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from learner_export.cli import download
from learner_export.cli.record_ends import CsvRecordEnds, JsonlRecordEnds
from tests.conftest import (
    BIG_LEARNERS,
    Database,
    LiveServer,
    interruptible,
    joined_backends,
    query,
)
from tests.e2e.test_cli_export import (
    cells,
    cli,
    cli_command,
    cli_env,
    leftovers,
    run_on_terminal,
)


def export_url(server: LiveServer, query_string: str) -> str:
    return f"{server.url}/v1/exports/learners?{query_string}"


def direct_get(server: LiveServer, url: str) -> bytes:
    with httpx.Client(timeout=60) as client:
        response = client.get(url, headers={"Authorization": f"Bearer {server.token}"})
    assert response.status_code == 200, response.text
    return response.content


def token_env(server: LiveServer) -> dict[str, str]:
    return cli_env(EXPORT_TOKEN=server.token)


@pytest.mark.parametrize(
    "query_string",
    [
        "format=csv",
        "format=jsonl",
        "format=csv&columns=learner_id,notes,full_name",
        "format=jsonl&active=false&limit=777",
        "format=csv&cursor=false&bom=true",
        "format=csv&bom=true&escape_formulas=false",
        "format=csv&cursor=true&limit=300",
        "format=jsonl&cursor=true&limit=300",
    ],
)
def test_download_gives_the_bytes_of_a_direct_get(
    live: LiveServer, tmp_path: Path, query_string: str
) -> None:
    # The seed's notes and names hold commas, quotes, CR, LF and CRLF: a cursor column added
    # for resuming and stripped at the end must leave exactly the plain export's bytes.
    url = export_url(live, query_string)
    result = cli("download", url, "-o", str(tmp_path / "out"), env=token_env(live))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # not a terminal: no progress
    assert result.stdout.decode().strip() == str(tmp_path / "out")
    saved = (tmp_path / "out").read_bytes()
    assert saved == direct_get(live, url)
    # The cursor column stays only when the URL asked for it.
    assert (b"_cursor" in saved) == ("cursor=true" in url)
    assert leftovers(tmp_path) == []


def test_download_names_the_file_as_the_server_does(live: LiveServer, tmp_path: Path) -> None:
    result = cli(
        "download", export_url(live, "format=jsonl&limit=5"), cwd=tmp_path, env=token_env(live)
    )
    assert result.returncode == 0, result.stderr
    (saved,) = list(tmp_path.iterdir())
    assert saved.name.startswith("learners-") and saved.suffix == ".jsonl"
    assert result.stdout.decode().strip() == saved.name
    assert saved.read_bytes().count(b"\n") == 5


def test_download_xlsx(live: LiveServer, tmp_path: Path) -> None:
    url = export_url(live, "format=xlsx&limit=400")
    result = cli("download", url, "-o", str(tmp_path / "l.xlsx"), env=token_env(live))
    assert result.returncode == 0, result.stderr
    assert cells((tmp_path / "l.xlsx").read_bytes()) == cells(direct_get(live, url))


def test_download_progress_bar_on_a_terminal(live: LiveServer, tmp_path: Path) -> None:
    code, shown = run_on_terminal(
        ["download", export_url(live, "format=csv&limit=2500"), "-o", str(tmp_path / "l.csv")],
        env=token_env(live),
    )
    assert code == 0, shown
    text = shown.decode()
    assert "\r" in text
    assert "2,500/2,500 rows" in text  # the total from X-Total-Count, rows counted as read
    assert (tmp_path / "l.csv").exists()


@pytest.mark.parametrize(
    ("query_string", "token", "status", "error"),
    [
        ("format=pdf", "good", 400, b'"invalid_parameter"'),
        ("format=csv", "bad", 401, b'"unauthorized"'),
        ("format=csv", None, 401, b"no token given"),
    ],
)
def test_http_errors_exit_1_with_the_servers_error(
    live: LiveServer,
    tmp_path: Path,
    query_string: str,
    token: str | None,
    status: int,
    error: bytes,
) -> None:
    env = cli_env()
    if token:
        env["EXPORT_TOKEN"] = live.token if token == "good" else "not.a.token"
    result = cli("download", export_url(live, query_string), "-o", str(tmp_path / "x"), env=env)
    assert result.returncode == 1
    assert f"HTTP {status}".encode() in result.stderr
    assert error in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_service_exits_1(tmp_path: Path) -> None:
    result = cli(
        "download",
        "http://127.0.0.1:9/v1/exports/learners",
        "-o",
        str(tmp_path / "x"),
        env=cli_env(),
    )
    assert result.returncode == 1
    assert b"cannot download" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["URL?format=xlsx", "-o", "x.xlsx", "--resume"], b"cannot be resumed"),
        (["URL?format=csv", "--resume"], b"--resume needs -o FILE"),
        (["ftp://example.org/x", "-o", "x"], b"not an http(s) URL"),
        ([], b"the following arguments are required: URL"),
    ],
)
def test_usage_errors_exit_2(
    live: LiveServer, tmp_path: Path, args: list[str], message: bytes
) -> None:
    args = [a.replace("URL", export_url(live, "")[:-1]) for a in args]
    result = cli("download", *args, cwd=tmp_path, env=token_env(live))
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_record_ends_agree_with_the_csv_module_for_any_split() -> None:
    rng = random.Random(6)
    alphabet = ["a", ",", '"', "\r", "\n", "\r\n", "é", " ", "'="]
    for _ in range(200):
        rows = [
            ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))) for _ in range(3)]
            for _ in range(rng.randint(0, 6))
        ]
        ends = []
        data = b""
        for row in rows:
            text = io.StringIO(newline="")
            csv.writer(text, lineterminator="\r\n").writerow(row)
            data += text.getvalue().encode()
            ends.append(len(data))
        for cut in range(len(data) + 1):
            scanner = CsvRecordEnds()
            position = 0
            while position < cut:
                step = rng.randint(1, 7)
                scanner.feed(data[position : min(position + step, cut)])
                position += step
            complete = [e for e in ends if e <= cut]
            assert scanner.records == len(complete)
            assert scanner.last_end == (complete[-1] if complete else 0)
            assert scanner.previous_end == (complete[-2] if len(complete) > 1 else 0)
            assert scanner.first_end == (complete[0] if complete else 0)
    lines = JsonlRecordEnds()
    for byte in b'{"a":"x\\ny"}\n{"b":2}\n{"c"':
        lines.feed(bytes([byte]))
    assert (lines.records, lines.first_end, lines.previous_end, lines.last_end) == (2, 13, 13, 21)


def _csv_bytes(rows: list[list[str]], bom: bool) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode()


def _stripped(stripper: download.CursorStripper, data: bytes, rng: random.Random) -> bytes:
    out = b""
    position = 0
    while position < len(data):
        step = rng.choice([1, 2, 3, 7, 64, 4096])
        out += stripper.feed(data[position : position + step])
        position += step
    return out + stripper.close()


def test_cursor_stripper_gives_the_export_without_cursor_for_any_split() -> None:
    rng = random.Random(15)
    alphabet = ["a", ",", '"', "\r", "\n", "\r\n", "é", " ", "=1", ",abc\r\n", '""']
    for case in range(300):
        rows = [
            ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(3)]
            for _ in range(rng.randint(0, 8))
        ]
        cursors = ["".join(rng.choice("AZaz09_-") for _ in range(rng.randint(1, 40))) for _ in rows]
        bom = case % 3 == 0
        header = ["learner_id", "notes", "full_name"]
        plain = _csv_bytes([header, *rows], bom)
        with_cursor = _csv_bytes(
            [[*header, "_cursor"], *[[*row, c] for row, c in zip(rows, cursors, strict=True)]], bom
        )
        assert _stripped(download.CursorStripper("csv"), with_cursor, rng) == plain
        lines = [{"learner_id": row[0], "notes": row[1], "n": i} for i, row in enumerate(rows)]
        jsonl = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        jsonl_cursor = b"".join(
            orjson.dumps({**line, "_cursor": c}) + b"\n"
            for line, c in zip(lines, cursors, strict=True)
        )
        assert _stripped(download.CursorStripper("jsonl"), jsonl_cursor, rng) == jsonl
    # A CSV whose header has no cursor column is left as it is; so is a cut last record.
    assert (
        _stripped(download.CursorStripper("csv"), b"a,b\r\n1,x2\r\n3,", rng) == b"a,b\r\n1,x2\r\n3,"
    )


# Resuming ------------------------------------------------------------------------------------

RESUME_QUERY = "columns=learner_id,notes,full_name&limit=1500"


def quoted_line_break(reference: bytes) -> int:
    """An offset just after a line break inside a quoted CSV field: where a reader that took
    every CRLF (or LF) for the end of a record would go wrong."""
    ends = CsvRecordEnds()
    for offset in range(200, len(reference)):
        if reference[offset - 1 : offset] == b"\n":
            ends.feed(reference[ends.offset : offset])
            if ends.last_end != offset:
                return offset
    raise AssertionError("no line break inside a quoted field in the seed")


def cut_points(reference: bytes, fmt: str) -> list[int]:
    ends = CsvRecordEnds()
    ends.feed(reference)
    sep = b"\r\n" if fmt == "csv" else b"\n"
    header = reference.index(sep) + len(sep)
    row_end = reference.index(sep, len(reference) // 3) + len(sep)
    points = [
        0,  # nothing yet
        header // 2,  # inside the header (CSV) or the first row
        header,  # the header (or the first row) complete, nothing more
        row_end,  # exactly at the end of a row
        row_end - 1,  # between the CR and the LF (CSV), or just before the LF
        len(reference) // 2,  # somewhere mid-row
        len(reference) - 1,  # all but the last byte
        len(reference),  # complete: the limit is already reached
    ]
    if fmt == "csv":
        points.append(quoted_line_break(reference))
    return points


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_cut_at_any_byte_gives_the_uninterrupted_export(
    live: LiveServer, tmp_path: Path, fmt: str
) -> None:
    url = export_url(live, f"format={fmt}&{RESUME_QUERY}")
    reference = direct_get(live, url + "&cursor=true")
    plain = direct_get(live, url)
    notes: list[str] = []
    points = cut_points(reference, fmt)
    for n, cut in enumerate(points):
        target = tmp_path / f"cut{n}.{fmt}"
        download.partial_path(target).write_bytes(reference[:cut])
        point = download.find_resume_point(download.partial_path(target), fmt)
        if cut >= points[3]:  # a complete row or more: continued, not started over
            assert point is not None
            assert point.keep <= cut
            if fmt == "jsonl":
                assert point.rows == reference[:cut].count(b"\n")
        saved = download.fetch(
            url,
            output=target,
            token=live.token,
            resume=True,
            progress_stream=None,
            note=notes.append,
        )
        assert saved == target
        assert target.read_bytes() == plain, f"cut at {cut} of {len(reference)}"
        assert not download.partial_path(target).exists()
    assert notes == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_from_the_command_line(live: LiveServer, tmp_path: Path, fmt: str) -> None:
    # With a byte-order mark, which starts the resumed response's header too.
    bom = "&bom=true" if fmt == "csv" else ""
    url = export_url(live, f"format={fmt}&{RESUME_QUERY}{bom}")
    reference = direct_get(live, url + "&cursor=true")
    target = tmp_path / f"learners.{fmt}"
    # A file another client (curl, with cursor=true) left cut mid-row, under the final name.
    target.write_bytes(reference[: len(reference) * 2 // 3])
    result = cli("download", url, "-o", str(target), "--resume", env=token_env(live))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert target.read_bytes() == direct_get(live, url)
    assert leftovers(tmp_path) == []


def test_resume_of_a_file_curl_left_without_cursor_names_that_file(
    live: LiveServer, tmp_path: Path
) -> None:
    url = export_url(live, f"format=csv&{RESUME_QUERY}")
    plain = direct_get(live, url)
    target = tmp_path / "learners.csv"
    target.write_bytes(plain[: len(plain) // 2])  # curl's cut download: no cursor to go on
    result = cli("download", url, "-o", str(target), "--resume", env=token_env(live))
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode() == (
        f"learner-export: cannot resume {target}: it has no _cursor column; downloading it "
        "again from the start\n"
    )
    assert b".partial" not in result.stderr
    assert target.read_bytes() == plain
    assert leftovers(tmp_path) == []


def test_resume_refuses_a_partial_file_of_other_columns(live: LiveServer, tmp_path: Path) -> None:
    other = direct_get(live, export_url(live, "format=csv&columns=learner_id&cursor=true"))
    target = tmp_path / "l.csv"
    download.partial_path(target).write_bytes(other[:5000])
    result = cli(
        "download",
        export_url(live, "format=csv&columns=notes"),
        "-o",
        str(target),
        "--resume",
        env=token_env(live),
    )
    assert result.returncode == 1
    assert b"columns differ" in result.stderr
    assert not target.exists()
    assert download.partial_path(target).exists()


def test_a_partial_file_without_cursor_starts_over(live: LiveServer, tmp_path: Path) -> None:
    url = export_url(live, "format=jsonl&cursor=false&limit=50")
    reference = direct_get(live, url)
    target = tmp_path / "l.jsonl"
    download.partial_path(target).write_bytes(reference[:3000])
    result = cli("download", url, "-o", str(target), "--resume", env=token_env(live))
    assert result.returncode == 0, result.stderr
    assert f"cannot resume {download.partial_path(target)}: ".encode() in result.stderr
    assert b"downloading it again from the start" in result.stderr
    assert target.read_bytes() == reference


@pytest.fixture(scope="module")
def big(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    return start_server(big_database)


def test_cut_transfer_exits_1_keeps_the_partial_file_and_resumes(
    big: LiveServer, big_database: Database, tmp_path: Path
) -> None:
    url = export_url(big, "format=jsonl")
    target = tmp_path / "learners.jsonl"
    partial = download.partial_path(target)
    process = subprocess.Popen(
        cli_command("download", url, "-o", str(target)),
        env=token_env(big),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.005)
    # Stopped, the client stops reading: the server waits on the socket, its snapshot open.
    process.send_signal(signal.SIGSTOP)
    try:
        # The bulk pass reads the rest of the export in two key ranges, a connection each.
        backends = joined_backends(big_database.url, 2)
        query(big_database.url, "SELECT pg_terminate_backend($1)", backends[0]["pid"])
    finally:
        process.send_signal(signal.SIGCONT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert b"download incomplete" in err and b"--resume" in err
    assert out == b""
    assert not target.exists()
    assert partial.stat().st_size > 0

    result = cli("download", url, "-o", str(target), "--resume", env=token_env(big))
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    expected = [
        r["id"]
        for r in query(big_database.url, "SELECT id FROM public.learners ORDER BY created_at, id")
    ]
    assert len(expected) == BIG_LEARNERS
    assert [r["learner_id"] for r in rows] == expected
    assert not partial.exists()


def test_ctrl_c_exits_130_and_keeps_the_partial_file(big: LiveServer, tmp_path: Path) -> None:
    target = tmp_path / "learners.csv"
    partial = download.partial_path(target)
    url = export_url(big, "format=csv&columns=learner_id,notes,created_at")
    process = subprocess.Popen(
        cli_command("download", url, "-o", str(target)),
        env=token_env(big),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not target.exists()
    point = download.find_resume_point(partial, "csv")
    assert point is not None and point.rows > 0
    # The hint is a command to paste: the URL as given (quoted for the shell), the user's -o.
    assert err.decode().endswith(
        f"the rows so far are in {partial}; continue it with: learner-export download "
        f"'{url}' -o {target} --resume\n"
    ), err
    assert b" URL " not in err
    result = cli("download", url, "-o", str(target), "--resume", env=token_env(big))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == direct_get(big, url)


# A server that is not to be trusted ----------------------------------------------------------


@contextlib.contextmanager
def hostile_server(status: int, headers: dict[str, str], body: bytes) -> Iterator[str]:
    """A local HTTP server answering every GET with this status, these headers and body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/exports/learners"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_cannot_overwrite_a_file_by_naming_it(tmp_path: Path) -> None:
    # curl -OJ refuses too; the CLI neither replaces conftest.py nor takes the name at all.
    (tmp_path / "conftest.py").write_bytes(b"mine")
    disposition = {"Content-Disposition": 'attachment; filename="conftest.py"'}
    with hostile_server(200, disposition, b"id\r\n1\r\n") as url:
        result = cli("download", url + "?cursor=false", cwd=tmp_path, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"learners.csv\n"
    assert (tmp_path / "conftest.py").read_bytes() == b"mine"
    assert (tmp_path / "learners.csv").read_bytes() == b"id\r\n1\r\n"


@pytest.mark.parametrize("named", ["server", "-o"])
def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path, named: str) -> None:
    name = "learners-all-20261206T1420Z.csv"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    (tmp_path / name).write_bytes(b"yesterday's export")
    output = [] if named == "server" else ["-o", name]
    with hostile_server(200, disposition, b"id\r\n1\r\n") as url:
        refused = cli("download", url + "?cursor=false", *output, cwd=tmp_path, env=cli_env())
        assert refused.returncode == (1 if named == "server" else 2)
        assert (
            refused.stderr
            == (
                f"learner-export: {name} already exists: not downloading; --force replaces it, "
                "or choose another name with -o FILE\n"
            ).encode()
        )
        assert (tmp_path / name).read_bytes() == b"yesterday's export"
        assert sorted(p.name for p in tmp_path.iterdir()) == [name]
        forced = cli(
            "download", url + "?cursor=false", *output, "--force", cwd=tmp_path, env=cli_env()
        )
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / name).read_bytes() == b"id\r\n1\r\n"


def test_bidi_characters_leave_the_servers_file_name(tmp_path: Path) -> None:
    offered = "learners-\u202efdp.exe\u2069-20261206T1420Z.csv"
    quoted = "".join(f"%{b:02X}" for b in offered.encode())
    disposition = {"Content-Disposition": f"attachment; filename*=UTF-8''{quoted}"}
    with hostile_server(200, disposition, b"id\r\n") as url:
        result = cli("download", url + "?cursor=false", cwd=tmp_path, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["learners-fdp.exe-20261206T1420Z.csv"]


def test_a_servers_error_body_is_printed_without_escapes(tmp_path: Path) -> None:
    # JSON: orjson writes ESC as the six characters \u001b, but CSI (U+009B) and a bidi
    # override as they are; a body that is not JSON is printed as text, raw ESC and BEL in it.
    body = '{"detail": "\x9b2J\\u001b[31mred \u202ereversed"}'.encode()
    with hostile_server(400, {"Content-Type": "application/json"}, body) as url:
        result = cli("download", url, "-o", str(tmp_path / "x.csv"), env=cli_env())
    assert result.returncode == 1
    assert result.stderr.decode() == (
        'learner-export: HTTP 400 Bad Request: {"detail":"2J\\u001b[31mred reversed"}\n'
    )
    raw = b"\x1b[2J\x1b[31mred\x07 \xe2\x80\xaeplain text \r\n"
    with hostile_server(502, {"Content-Type": "text/plain"}, raw) as url:
        result = cli("download", url, "-o", str(tmp_path / "x.csv"), env=cli_env())
    assert result.stderr.decode() == "learner-export: HTTP 502 Bad Gateway: [2J[31mred plain text\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query_string", ["format=csv", "format=xlsx&limit=10"])
def test_downloaded_files_are_readable_by_their_owner_only(
    live: LiveServer, tmp_path: Path, query_string: str
) -> None:
    result = cli(
        "download",
        export_url(live, query_string),
        "-o",
        str(tmp_path / "out"),
        env=token_env(live),
    )
    assert result.returncode == 0, result.stderr
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == "0o600"
