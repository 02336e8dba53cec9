"""Stripping the cursor column is linear in time and bounded in memory, whatever a record
holds: an unterminated quoted field of tens of megabytes included (it was quadratic, and held
the whole record)."""

from __future__ import annotations

import time
import tracemalloc

from learner_export.cli.download import READ_BLOCK, CursorStripper

MB = 1 << 20
HEADER = b"learner_id,notes,_cursor\r\n"
CURSOR = b"MjAyNi0xMi0wNlQxNDoyMDowMFp8NmJhN2I4MTAtOWRhZC0xMWQxLTgwYjQtMDBjMDRmZDQzMGM4"


def _strip(fmt: str, parts: list[bytes], field_bytes: int) -> tuple[bytes, bytes, float, int]:
    """Feed `parts[0]`, then `field_bytes` of x in READ_BLOCK pieces, then the rest: the output
    around the field, the seconds it took and the peak of memory allocated meanwhile."""
    stripper = CursorStripper(fmt)
    block = b"x" * READ_BLOCK
    tracemalloc.start()
    try:
        started = time.perf_counter()
        head = stripper.feed(parts[0])
        length = len(head)
        for _ in range(field_bytes // READ_BLOCK):
            out = stripper.feed(block)
            length += len(out)
            head += out[:64] if len(head) < 64 else b""
        tail = b"".join(stripper.feed(p) for p in parts[1:]) + stripper.close()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    given = sum(map(len, parts)) + field_bytes
    # The header's `,_cursor` and two records' `,<cursor>`; or one member `,"_cursor":"..."`.
    removed = 8 + 2 * (1 + len(CURSOR)) if fmt == "csv" else 13 + len(CURSOR)
    assert length + len(tail) == given - removed
    return head, tail, elapsed, peak


def test_a_64_mb_unterminated_quoted_csv_field_in_linear_time_and_bounded_memory() -> None:
    parts = [HEADER + b'1,"', b'",' + CURSOR + b"\r\n2,b," + CURSOR + b"\r\n"]
    _, _, small, _ = _strip("csv", parts, 8 * MB)
    head, tail, large, peak = _strip("csv", parts, 64 * MB)
    assert head.startswith(b'learner_id,notes\r\n1,"xxx')
    assert tail == b'"\r\n2,b\r\n'
    # Held back: nothing of the field; allocated at once: a few blocks, never the record.
    assert peak < 6 * READ_BLOCK, peak
    # 8 times the bytes in about 8 times the time (quadratic would be 64 times).
    assert large < 20 * small + 0.5, (small, large)


def test_a_64_mb_json_lines_record_in_linear_time_and_bounded_memory() -> None:
    parts = [b'{"learner_id":"1","notes":"', b'","_cursor":"' + CURSOR + b'"}\n']
    _, _, small, _ = _strip("jsonl", parts, 8 * MB)
    head, tail, large, peak = _strip("jsonl", parts, 64 * MB)
    assert head.startswith(b'{"learner_id":"1","notes":"xxx')
    assert tail.endswith(b'xxx"}\n')
    assert peak < 6 * READ_BLOCK, peak
    assert large < 20 * small + 0.5, (small, large)
