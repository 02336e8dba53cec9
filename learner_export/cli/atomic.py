"""Files that appear complete or not at all: written beside the target, synced, then renamed."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _mode_for(target: Path) -> int:
    """Keep the permissions of the file being replaced; else what the umask gives a new file."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def publish(temp: Path, target: Path) -> None:
    """Rename a finished (and fsynced) temporary file onto target, durably."""
    os.chmod(temp, _mode_for(target))
    os.replace(temp, target)
    # The rename itself lives in the directory: sync it too, where the platform allows.
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """A file to write that becomes target only when the block ends without an exception.

    It is `.<name>.partial-<random>` in target's directory (a rename across file systems would
    not be atomic). On any exception, KeyboardInterrupt and cancellation included, it is removed
    and a file already at target is left as it was.
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            sync(out)
        publish(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
