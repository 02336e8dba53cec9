"""Batches → encoder → chunks of bytes: the part of an export that HTTP and the CLI share."""

from __future__ import annotations

from collections.abc import AsyncIterator

from service.compression import Compressor
from service.formats import Encoder
from service.source import CopiedPage, Page

Chunk = bytes | memoryview


def _split(data: bytes, size: int) -> list[Chunk]:
    if len(data) <= size:
        return [data] if data else []
    view = memoryview(data)
    return [view[i:i + size] for i in range(0, len(data), size)]


async def encode_stream(batches: AsyncIterator[Page], encoder: Encoder,
                        chunk_bytes: int, compressor: Compressor | None = None
                        ) -> AsyncIterator[Chunk]:
    """Encode (and compress) each batch as it arrives and hand it on at once, in pieces of at
    most chunk_bytes.

    Nothing is held back between batches: the first rows leave as soon as the first page is
    encoded, and memory holds at most one encoded page.
    """
    try:
        head = encoder.begin()
        async for batch in batches:
            if isinstance(batch, CopiedPage):
                data = encoder.copied(batch.data, batch.rows)
            else:
                data = encoder.rows(batch)
            if head:
                data, head = head + data, b""
            if compressor is not None:
                data = compressor.compress(data)
            for piece in _split(data, chunk_bytes):
                yield piece
        tail = head + encoder.end()
        if compressor is not None:
            tail = compressor.compress(tail) + compressor.finish()
        for piece in _split(tail, chunk_bytes):
            yield piece
    finally:
        encoder.close()
