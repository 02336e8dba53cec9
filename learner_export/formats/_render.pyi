from collections.abc import Iterable

def set_rule(spans: Iterable[tuple[int, int, int]], /) -> None: ...
def csv_records(data: bytes | bytearray, kinds: bytes, /) -> tuple[bytes, int, int]: ...
def json_lines(
    data: bytes | bytearray, kinds: bytes, names: tuple[bytes, ...], /
) -> tuple[bytes, int, int]: ...
def sheet_rows(
    data: bytes | bytearray,
    kinds: bytes,
    letters: tuple[bytes, ...],
    index: int,
    sheet_rows: int,
    /,
) -> tuple[bytes, int, int]: ...
