"""The engine's pure pieces: CSV line ends converted in pieces of any size, a page's stream
bounded in bytes, a Parquet row of any length within the cell bound."""

from __future__ import annotations

import asyncio
import io
import random

import pyarrow.parquet as pq

from learner_export.contract.columns import Column, Kind
from learner_export.formats import RenderOptions
from learner_export.formats.csv import crlf, to_crlf
from learner_export.formats.parquet import ROW_GROUP_BYTES, ParquetFramer
from learner_export.pages import GATHER_BYTES, CopiedPage, PageStream


def whole_split(data: bytes) -> bytes:
    """The plain rule on the whole input: LF outside quotes becomes CRLF."""
    parts = data.split(b'"')
    parts[::2] = [p.replace(b"\n", b"\r\n") for p in parts[::2]]
    return b'"'.join(parts)


def test_crlf_in_pieces_of_any_size_equals_the_rule_on_the_whole() -> None:
    rng = random.Random(18)
    for _ in range(2000):
        alphabet = rng.choice([b'"\na', b'"\n', b'a\n"x,', b'""""\n', b"abc\n"])
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        out, quoted, start = [], False, 0
        for cut in [*cuts, len(data)]:
            piece, quoted = to_crlf(data[start:cut], quoted)
            out.append(piece)
            start = cut
        assert b"".join(out) == whole_split(data), data


def test_crlf_of_many_quotes_and_many_line_breaks() -> None:
    quotes = (b'1,"' + b'""' * 10_000 + b'"\n') * 50
    breaks = b'1,"' + b"=;\t\n" * 100_000 + b'"\n'
    assert crlf(quotes) == whole_split(quotes) and crlf(quotes).count(b"\r\n") == 50
    assert crlf(breaks) == breaks[:-1] + b"\r\n"


def test_a_full_page_stream_holds_its_writer_back_until_read() -> None:
    async def scenario() -> tuple[list[str], bytes, int]:
        stream = PageStream(budget=10)
        events: list[str] = []

        async def write() -> None:
            for piece in (b"aaaa\n", b"bbbbbbbb\n", b"cc\n"):
                await stream.put(bytearray(piece))
                events.append(f"put {len(piece)}")
            stream.end(3)

        writer = asyncio.ensure_future(write())
        await asyncio.sleep(0.01)
        events.append("read")  # two pieces are in (14 bytes held): the third waits
        got = []
        while (page := await stream.take()) is not None:
            got.append(page)
        await writer
        return events, b"".join(bytes(p.data) for p in got), sum(p.rows for p in got)

    events, data, rows = asyncio.run(scenario())
    assert events == ["put 5", "put 9", "read", "put 3"]
    assert data == b"aaaa\nbbbbbbbb\ncc\n"
    assert rows == 3


def test_a_parquet_row_longer_than_a_block_and_row_groups_bounded_in_bytes() -> None:
    framer = ParquetFramer([Column("t", Kind.TEXT, "text")], RenderOptions())
    long_cell = "x" * (3 * 1024 * 1024)
    rows = [long_cell, "short"] + ["y" * 1000] * (2 * ROW_GROUP_BYTES // 1000)
    body = framer.begin()
    for row in rows:
        body += framer.page(f'"{row}"\n'.encode())
    body += framer.end()
    file = pq.ParquetFile(io.BytesIO(body))
    assert file.read().column("t").to_pylist() == rows
    assert file.metadata.num_row_groups >= 2
    for i in range(file.metadata.num_row_groups):
        group = file.metadata.row_group(i)
        assert group.num_rows == 1 or group.total_byte_size <= 2 * ROW_GROUP_BYTES


def test_a_page_held_whole_is_taken_in_pieces_of_about_gather_bytes() -> None:
    """A range held until its turn is handed on ~GATHER_BYTES at a time, not all at once (a
    piece over lifecycle.OFFLOAD_BYTES would be framed in a worker thread), every byte and row
    in order; the page's last piece carries its rows."""
    line = b"x" * 99 + b"\n"
    pieces = [line * 100 for _ in range(80)]  # 80 pieces of 10,000 bytes

    async def scenario() -> list[CopiedPage]:
        stream = PageStream(budget=1 << 20, lines_are_rows=True)
        for piece in pieces:
            await stream.put(bytearray(piece))
        stream.end(8_000)
        got = []
        while (page := await stream.take()) is not None:
            got.append(page)
        return got

    got = asyncio.run(scenario())
    sizes = [len(p.data) for p in got]
    assert all(GATHER_BYTES <= n < GATHER_BYTES + 10_000 for n in sizes[:-1]), sizes
    assert sum(sizes) == 800_000 and len(got) == 800_000 // 70_000 + 1
    assert b"".join(bytes(p.data) for p in got) == b"".join(pieces)
    assert [p.rows for p in got] == [n // 100 for n in sizes]
