"""Download an export from a running service into a file, resumably for CSV and JSON Lines.

The body goes to `FILE.partial`, renamed to FILE only when the response ended normally (a cut
chunked transfer raises `httpx.RemoteProtocolError`, and the partial file stays). CSV and JSON
Lines downloads ask for the `_cursor` column (`cursor=true`), so that a partial file can be
continued after its last complete row with `after=<cursor>`: a new snapshot of the database,
appended to the rows already there. When the download is complete, the cursor column that the
download added is stripped (streaming, into FILE): FILE holds the bytes a plain GET of the URL
gives.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit, urlunsplit

import httpx
import orjson

from learner_export.cli.atomic import atomic_file, publish, sync
from learner_export.cli.progress import Progress
from learner_export.cli.record_ends import CsvRecordEnds, RecordEnds, record_ends
from learner_export.contract.columns import CURSOR_COLUMN
from learner_export.formats import FORMATS

RESUMABLE = frozenset({"csv", "jsonl"})
BOM = "\ufeff".encode()
# The first byte waits for the snapshot, the first page and (with a progress bar) the count.
TIMEOUT = httpx.Timeout(30.0, read=300.0)
READ_BLOCK = 1 << 20
MAX_HEADER_BYTES = 1 << 20


class DownloadError(Exception):
    """The download failed or is incomplete."""


class Interrupted(DownloadError):
    """Ctrl-C during the download."""


class BadArguments(Exception):
    """The command cannot run as asked."""


class CannotResume(Exception):
    """The partial file holds no cursor to continue after."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a partial file continues: what to keep, how many rows that is, and the cursor."""

    keep: int
    rows: int
    cursor: str
    header: bytes


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def query_value(url: str, name: str) -> str | None:
    values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == name]
    return values[-1] if values else None


def with_param(url: str, name: str, value: str) -> str:
    """url with `name` set to value; the other parameters are kept byte for byte."""
    parts = urlsplit(url)
    pairs = [p for p in parts.query.split("&") if p and unquote_plus(p.partition("=")[0]) != name]
    pairs.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    return urlunsplit(parts._replace(query="&".join(pairs)))


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([\w!#$%&+^`{}~-]*)'[^']*'([^;\s]+)", re.I)
_FILENAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)
# Controls (C0, DEL, C1: a terminal's escape sequences), format characters (bidi overrides and
# isolates, which make `learners-\u202egpj.exe` read as `learners-exe.jpg`, zero-width ones),
# and line or paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# The names an export is saved under (learner_export.filenames): nothing else is taken from a
# server, so a server cannot choose `conftest.py`, `.bashrc` or `Makefile`.
_EXPORT_NAME = re.compile(r"learners-[^/\\]{1,240}")


def printable(text: str) -> str:
    """text without what a terminal would act on or show misleadingly: control characters
    (ANSI escapes included) and format characters (bidi overrides) go; line breaks and tabs
    become spaces."""
    return "".join(
        " " if c in "\t\n\r" else c
        for c in text
        if c in "\t\n\r" or unicodedata.category(c) not in _INVISIBLE_CATEGORIES
    )


def filename_from(disposition: str | None, fmt: str) -> str:
    """The file name a Content-Disposition offers (RFC 5987's filename* first), if it is an
    export's (`learners-....<the format's extension>`), without invisible characters; else
    `learners.<extension>`. Always a bare name in the current directory, never a path."""
    extension = FORMATS[fmt].extension if fmt in FORMATS else re.sub(r"[^a-z0-9]", "", fmt)
    name = ""
    if disposition:
        if star := _FILENAME_STAR.search(disposition):
            try:
                name = unquote(star.group(2), encoding=star.group(1) or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                name = ""
        if not name and (plain := _FILENAME.search(disposition)):
            name = (plain.group(1) if plain.group(1) is not None else plain.group(2)).replace(
                '\\"', '"'
            )
    name = "".join(c for c in name if unicodedata.category(c) not in _INVISIBLE_CATEGORIES).strip()
    stem, dot, given = name.rpartition(".")
    if not (dot and given == extension and _EXPORT_NAME.fullmatch(stem)):
        return f"learners.{extension}"
    return name


def _cursor_of(last: bytes, header: bytes, fmt: str) -> str:
    try:
        if fmt == "jsonl":
            row = orjson.loads(last)
            cursor = row.get(CURSOR_COLUMN.name) if isinstance(row, dict) else None
            if not isinstance(cursor, str):
                raise CannotResume(f"its rows have no {CURSOR_COLUMN.name}")
            return cursor
        names = next(csv.reader(io.StringIO(header.removeprefix(BOM).decode(), newline="")))
        values = next(csv.reader(io.StringIO(last.decode(), newline="")))
    except (ValueError, StopIteration, csv.Error) as exc:  # orjson and UTF-8 errors included
        raise CannotResume(f"its last complete row cannot be read ({exc})") from None
    if not names or names[-1] != CURSOR_COLUMN.name:
        raise CannotResume(f"it has no {CURSOR_COLUMN.name} column")
    if len(values) != len(names):
        raise CannotResume("its last complete row does not match its header")
    return values[-1]


def find_resume_point(path: Path, fmt: str) -> ResumePoint | None:
    """The last complete row of a partial file, or None when it holds no complete data row."""
    ends = record_ends(fmt)
    with path.open("rb") as f:
        while block := f.read(READ_BLOCK):
            ends.feed(block)
        header_records = 1 if fmt == "csv" else 0
        rows = ends.records - header_records
        if rows < 1:
            return None
        f.seek(ends.previous_end)
        last = f.read(ends.last_end - ends.previous_end)
        f.seek(0)
        header = f.read(ends.first_end) if header_records else b""
    return ResumePoint(ends.last_end, rows, _cursor_of(last, header, fmt), header)


# The cursor is base64url: it needs no quoting in CSV and no escaping in JSON, and it is always
# the last field of a record. In a JSON Lines record, `,"_cursor":"` can only be the member
# itself: inside a string every `"` is escaped.
_CSV_CURSOR_FIELD = re.compile(rb",[A-Za-z0-9_-]*\r\n")
_CSV_CURSOR_HEADER = b"," + CURSOR_COLUMN.name.encode() + b"\r\n"
_JSONL_CURSOR_MEMBER = re.compile(
    b',"' + re.escape(CURSOR_COLUMN.name.encode()) + rb'":"[A-Za-z0-9_-]*"\}\n'
)
# What may still become a cursor field at the end of the bytes so far: a comma outside quotes,
# base64url, perhaps the CR of the CRLF that ends the record.
_CSV_CURSOR_START = re.compile(rb",[A-Za-z0-9_-]*\r?\Z")
# A cursor an export writes is under 100 characters (a time and a UUID); anything much longer
# is not one, so that is all the stripper ever holds back, whatever a record holds.
MAX_CURSOR_CHARS = 4096
_MAX_JSONL_MEMBER = len(CURSOR_COLUMN.name) + MAX_CURSOR_CHARS + 8


class CursorStripper:
    """Drops the `_cursor` column from a CSV or JSON Lines export fed in pieces of any size.

    Linear in time, bounded in memory: a record's bytes are handed on as they come, however
    long the record (a quoted field of gigabytes included); only what may still turn out to
    be its cursor (at most MAX_CURSOR_CHARS and a few bytes) and, for CSV, the header record
    until it ends (at most MAX_HEADER_BYTES) are held back.
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in RESUMABLE:
            raise ValueError(f"{fmt} exports carry no cursor")
        self._fmt = fmt
        self._held = b""  # bytes not yet handed on
        # CSV: None until the header record has ended and said whether it has a cursor column.
        self._strip: bool | None = None if fmt == "csv" else True
        self._header = CsvRecordEnds()
        self._head = bytearray()  # CSV: the bytes so far, until the header record has ended
        self._quoted = False  # CSV: the bytes handed on (and held) end inside quotes

    def feed(self, data: bytes) -> bytes:
        """As much of the export without its cursor as can be known from the bytes so far."""
        if self._fmt == "jsonl":
            return self._jsonl(data)
        if self._strip is None:
            self._header.feed(data)
            self._head += data
            if not self._header.first_end and len(self._head) <= MAX_HEADER_BYTES:
                return b""
            # Only a header that ends with the cursor column is stripped: a CSV without one
            # (not asked with cursor=true after all) is left as the server sent it.
            header_end = self._header.first_end
            self._strip = bool(header_end) and self._head[:header_end].endswith(_CSV_CURSOR_HEADER)
            data, self._head = bytes(self._head), bytearray()
        if not self._strip:
            return data
        return self._csv(data)

    def close(self) -> bytes:
        """What was held back: an incomplete last record (none in a complete export)."""
        rest, self._held = bytes(self._head) + self._held, b""
        self._head = bytearray()
        return rest

    def _csv(self, data: bytes) -> bytes:
        # The pieces between `"` alternate: outside quotes, inside. A CRLF or comma inside quotes
        # is left alone; the held bytes never hold a quote, so the state at their start is known.
        pieces = (self._held + data).split(b'"')
        first_outside = 1 if self._quoted else 0
        pieces[first_outside::2] = [
            _CSV_CURSOR_FIELD.sub(b"\r\n", piece) for piece in pieces[first_outside::2]
        ]
        if len(pieces) % 2 == 0:
            self._quoted = not self._quoted
        tail = None if self._quoted else _CSV_CURSOR_START.search(pieces[-1])
        if tail is not None and len(pieces[-1]) - tail.start() <= MAX_CURSOR_CHARS + 2:
            self._held = pieces[-1][tail.start() :]
            pieces[-1] = pieces[-1][: tail.start()]
        else:
            self._held = b""
        return b'"'.join(pieces)

    def _jsonl(self, data: bytes) -> bytes:
        buffer = self._held + data
        end = buffer.rfind(b"\n") + 1
        rest = buffer[end:]
        # The member ends its line: of a line still in progress only its last bytes can be in it.
        cut = max(0, len(rest) - _MAX_JSONL_MEMBER)
        self._held = rest[cut:]
        return _JSONL_CURSOR_MEMBER.sub(b"}\n", buffer[:end]) + rest[:cut]


def strip_cursor(source: Path, target: Path, fmt: str, *, replace: bool = True) -> None:
    """Write source without its cursor column into target (complete or not at all), reading
    and writing a block at a time."""
    stripper = CursorStripper(fmt)
    with source.open("rb") as f, atomic_file(target, replace=replace) as out:
        while block := f.read(READ_BLOCK):
            out.write(stripper.feed(block))
        out.write(stripper.close())


class _HeaderCheck:
    """Drops the header record that starts a resumed CSV response, after checking that it is the
    partial file's: a different URL (other columns) must not be appended to it."""

    def __init__(self, expected: bytes) -> None:
        self._expected = expected.removeprefix(BOM)
        self._buffer = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise DownloadError("the resumed response has no header record")
            return b""
        header, rest = self._buffer[: end + 2], self._buffer[end + 2 :]
        if header.removeprefix(BOM) != self._expected:
            raise DownloadError(
                "the resumed export's columns differ from the partial file's "
                "header; resume with the URL that started it"
            )
        self.done, self._buffer = True, b""
        return rest


def _http_error(response: httpx.Response, token: str | None) -> str:
    body = response.read()[: 64 * 1024]
    try:
        text = orjson.dumps(orjson.loads(body)).decode()
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip() or "(no body)"
    hint = ""
    if response.status_code == 401 and not token:
        hint = " (no token given: pass --token or set EXPORT_TOKEN)"
    # The body and reason are the server's: never let them move the cursor or recolour a terminal.
    return printable(f"HTTP {response.status_code} {response.reason_phrase}: {text[:2000]}{hint}")


@dataclass
class _Transfer:
    response: httpx.Response
    target: Path
    fmt: str
    point: ResumePoint | None
    progress_stream: TextIO | None
    source: Path | None  # the file continued: FILE.partial, or a FILE another client left
    strip: bool  # the cursor column was added by us, not asked for in the URL
    hint: Callable[[Path], str]  # the command that continues the download
    force: bool  # replace a file already at target (asked, or the file being resumed)

    def run(self) -> Path:
        partial = partial_path(self.target)
        resumable = self.fmt in RESUMABLE
        ends = record_ends(self.fmt) if resumable else None
        before = self.point.rows if self.point else 0
        total_header = self.response.headers.get("x-total-count", "")
        progress = Progress(
            self.progress_stream,
            count_rows=ends is not None,
            rows=before,
            total=int(total_header) + before if total_header.isdigit() else None,
        )
        moved = self.point is not None and self.source is not None and self.source != partial
        if moved:
            assert self.source is not None
            os.replace(self.source, partial)
        out = partial.open("r+b") if self.point else _create_private(partial)
        try:
            if self.point:
                out.truncate(self.point.keep)
                out.seek(self.point.keep)
            self._copy(out, ends, progress)
            sync(out)
        except BaseException as exc:
            out.close()
            progress.abandon()
            if not resumable:
                partial.unlink(missing_ok=True)
            failure = self._failure(exc, partial, progress.bytes, resumable, moved)
            if failure is None:
                raise
            raise failure from exc
        out.close()
        progress.finish()
        try:
            finish(partial, self.target, self.fmt, self.strip, replace=self.force)
        except FileExistsError:
            raise DownloadError(
                f"{self.target} appeared during the download and was left as it was; the "
                f"download is complete in {partial} (--force replaces a file)"
            ) from None
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while writing {self.target}; the download is "
                f"complete in {partial}: {self.hint(self.target)}"
            ) from None
        return self.target

    def _copy(self, out: BinaryIO, ends: RecordEnds | None, progress: Progress) -> None:
        check = _HeaderCheck(self.point.header) if self.point and self.fmt == "csv" else None
        # A fresh CSV starts with its header, which is a record but not a row.
        header_left = 1 if self.fmt == "csv" and not self.point else 0
        for data in self.response.iter_bytes():
            if check is not None:
                data = check.feed(data)
            if not data:
                continue
            out.write(data)
            rows = 0
            if ends is not None:
                rows = ends.feed(data)
                if header_left and rows:
                    rows, header_left = rows - 1, 0
            progress.advance(rows, len(data))
        if check is not None and not check.done:
            raise DownloadError("the resumed response ended before its header")

    def _failure(
        self, exc: BaseException, partial: Path, received: int, resumable: bool, moved: bool
    ) -> DownloadError | None:
        if isinstance(exc, KeyboardInterrupt):
            what: type[DownloadError] = Interrupted
            reason = "interrupted"
        elif isinstance(exc, httpx.HTTPError):
            what, reason = DownloadError, f"transfer cut ({type(exc).__name__}: {exc})"
        elif isinstance(exc, DownloadError | OSError):
            what, reason = DownloadError, str(exc)
        else:
            return None
        if resumable and partial.exists():
            was = f" (your {self.source}, continued)" if moved else ""
            kept = f"the rows so far are in {partial}{was}; {self.hint(self.target)}"
        else:
            kept = "nothing kept (XLSX cannot be resumed)"
        return what(f"download incomplete after {received / 1e6:,.1f} MB: {reason}; {kept}")


def _create_private(path: Path) -> BinaryIO:
    """path, emptied or created readable by its owner only (it holds learners' data)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def finish(partial: Path, target: Path, fmt: str, strip: bool, *, replace: bool) -> None:
    """Make the complete partial file target: without the cursor column when `strip`; a file
    already at target is replaced only when `replace` (else FileExistsError)."""
    if strip:
        strip_cursor(partial, target, fmt, replace=replace)
        partial.unlink()
    else:
        publish(partial, target, replace=replace)


def _exists(target: Path, doing: str, partial: Path | None = None) -> str:
    into = f" {partial} into it" if partial is not None else ""
    return (
        f"{target} already exists: not {doing}{into}; --force replaces it, "
        "or choose another name with -o FILE"
    )


def resume_hint(url: str) -> Callable[[Path], str]:
    """The command line that continues a download of url into a file, ready to paste."""
    return lambda target: (
        "continue it with: learner-export download "
        f"{shlex.quote(url)} -o {shlex.quote(str(target))} --resume"
    )


def fetch(
    url: str,
    *,
    output: Path | None,
    token: str | None,
    resume: bool,
    progress_stream: TextIO | None,
    note: Callable[[str], None],
    force: bool = False,
) -> Path:
    """Download url into output (or the server's file name); return the complete file's path.
    A file already there is replaced only when `force` (or continued, with `resume`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadArguments(f"not an http(s) URL: {url!r}")
    fmt = (query_value(url, "format") or "csv").lower()
    if resume and fmt not in RESUMABLE:
        raise BadArguments(
            f"{fmt} downloads cannot be resumed: only csv and jsonl exports carry a resume cursor"
        )
    if resume and output is None:
        raise BadArguments(
            "--resume needs -o FILE (the server's file names carry the time of "
            "the export, so they differ from one download to the next)"
        )
    asked = url
    hint = resume_hint(url)
    strip = fmt in RESUMABLE and query_value(url, "cursor") is None
    if strip:
        url = with_param(url, "cursor", "true")

    point = None
    source = None
    if resume:
        assert output is not None
        partial = partial_path(output)
        # Ours, or a file cut by another client (curl, a browser) under the final name.
        source = partial if partial.exists() else output if output.exists() else None
        if source == partial and output.exists() and not force:
            raise BadArguments(_exists(output, "continuing", partial))
        # Resuming FILE itself (another client's cut download) is asking to replace it.
        force = force or source == output
        if source is not None:
            try:
                point = find_resume_point(source, fmt)
            except CannotResume as exc:
                note(f"cannot resume {source}: {exc}; downloading it again from the start")
        if point is not None:
            assert source is not None
            url = with_param(url, "after", point.cursor)
            limit = query_value(url, "limit")
            if limit is not None and limit.isdigit():
                left = int(limit) - point.rows
                if left <= 0:
                    if source != partial:
                        os.replace(source, partial)
                    with partial.open("r+b") as done:
                        done.truncate(point.keep)
                        sync(done)
                    finish(partial, output, fmt, strip, replace=force)
                    return output
                url = with_param(url, "limit", str(left))

    if output is not None and not resume and not force and output.exists():
        raise BadArguments(_exists(output, "downloading"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if progress_stream is not None:
        headers["Prefer"] = "count=exact"
    try:
        with (
            httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if not response.is_success:
                raise DownloadError(_http_error(response, token))
            if output is None:
                offered = response.headers.get("content-disposition")
                output = Path(filename_from(offered, fmt))
                if not force and output.exists():
                    raise DownloadError(_exists(output, "downloading"))
            return _Transfer(
                response, output, fmt, point, progress_stream, source, strip, hint, force
            ).run()
    except httpx.HTTPError as exc:
        raise DownloadError(f"cannot download {asked}: {type(exc).__name__}: {exc}") from exc
    except KeyboardInterrupt:
        raise Interrupted("interrupted before the download started") from None
