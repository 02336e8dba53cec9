"""Content-Encoding for CSV and JSON Lines: zstd or gzip, negotiated from Accept-Encoding.

Each encoded page is compressed and flushed at once, so compressed exports stream as plain ones
do. A stream cut short lacks its final block (zstd's frame end, gzip's CRC and length), so a
decoder reports it incomplete, on top of the cut chunked transfer.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import zstandard

ZSTD_LEVEL = 3
GZIP_LEVEL = 1


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes:
        """Compress and flush: the result decodes to everything given so far."""
        ...

    def finish(self) -> bytes: ...


class _Zstd:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


class _Gzip:
    def __init__(self) -> None:
        self._c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    make: Callable[[], Compressor]


CODECS: dict[str, Codec] = {"zstd": Codec("zstd", _Zstd), "gzip": Codec("gzip", _Gzip)}
PREFERENCE = ("zstd", "gzip")


def negotiate(accept_encoding: str | None) -> Codec | None:
    """The best codec the client accepts (q > 0), zstd before gzip; None for identity."""
    if not accept_encoding:
        return None
    accepted: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        accepted[name.strip().lower()] = q
    for name in PREFERENCE:
        q = accepted.get(name, accepted.get("*", 0.0))
        if q > 0:
            return CODECS[name]
    return None
