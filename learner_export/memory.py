"""How the process allocates large buffers: given back to the system when freed.

glibc serves an allocation of 128 KiB or more with its own mapping, but raises that threshold
(up to 32 MiB) each time such a mapping is freed; after a few long cells, their buffers come
from the heap instead, which does not shrink while anything above them lives. A fixed threshold
keeps a served process's peak near what it holds (the hostile dataset's JSON Lines export: a
peak of 83 MB against 103 MB). MALLOC_MMAP_THRESHOLD_ in the environment does the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024

_done = False


def give_back_large_buffers() -> None:
    """Fix glibc's mmap threshold (once; a no-op elsewhere or when the environment sets it)."""
    global _done
    if _done:
        return
    _done = True
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
