"""How the process allocates large buffers: given back to the system when freed.

glibc serves an allocation of 128 KiB or more with its own mapping, but raises that threshold
(up to 32 MiB) each time such a mapping is freed; after a few long cells, their buffers come
from the heap instead, which does not shrink while anything above them lives. A fixed threshold
keeps a served process's peak near what it holds (the hostile dataset's JSON Lines export: a
peak of 83 MB against 103 MB). MALLOC_MMAP_THRESHOLD_ in the environment does the same.

Arrow's C++ code takes some buffers (the Parquet writer's, compute kernels') from its default
pool, whatever pyarrow's `set_memory_pool()` says; ARROW_DEFAULT_MEMORY_POOL, read when pyarrow
is first imported, chooses that pool for all of it. jemalloc, measured on 1M-row Parquet exports
against the pyarrow default (mimalloc) for the writer and the C allocator for the rest: peak RSS
171 MB instead of 179 (160 with numpy kept out as well, formats.parquet), the service's CPU 2.0 s
instead of 2.2 s. The C allocator throughout held least (145 MB with numpy out) but cost 0.6 s
more CPU per 1M rows: with the fixed threshold each buffer of a parse is a fresh mapping
(600,000 page faults against 220,000). An operator for whom memory
counts more sets ARROW_DEFAULT_MEMORY_POOL=system (docs/engine.md).

jemalloc gives each thread that allocates an arena of its own (up to four per core), and each
arena keeps its own freed pages: a Parquet export frames long pieces in a worker thread
(lifecycle.OFFLOAD_BYTES), so its buffers spread over several arenas. One arena
(JE_ARROW_MALLOC_CONF=narenas:1, unless the environment configures Arrow's jemalloc) held a
1M-row Parquet export's server at 135-137 MB instead of 144-147 MB, with no more CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024

_done = False


def give_back_large_buffers() -> None:
    """Fix glibc's mmap threshold (once; a no-op elsewhere or when the environment sets it),
    and make jemalloc, with one arena, Arrow's default pool (unless the environment chooses)."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    # Read by Arrow's jemalloc (its own build, prefixed je_arrow_) when pyarrow first loads.
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "narenas:1")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass  # not glibc
