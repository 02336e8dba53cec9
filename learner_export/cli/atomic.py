"""Files that appear complete or not at all: written beside the target, synced, then renamed.
New files are readable by their owner only: they hold learners' data."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

NEW_FILE_MODE = 0o600


def _mode_for(target: Path) -> int:
    """Keep the permissions of the file being replaced; a new file is its owner's alone."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE


def publish(temp: Path, target: Path, *, replace: bool = True) -> None:
    """Rename a finished (and fsynced) temporary file onto target, durably. Without `replace`,
    a file already at target (even one that appeared a moment ago) is kept: FileExistsError."""
    os.chmod(temp, _mode_for(target))
    if replace:
        os.replace(temp, target)
    else:
        # A hard link fails if target exists, atomically (rename would replace it): then the
        # temporary name goes.
        os.link(temp, target)
        temp.unlink()
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
def atomic_file(target: Path, *, replace: bool = True) -> Iterator[BinaryIO]:
    """A file to write that becomes target only when the block ends without an exception.

    It is `.<name>.partial-<random>` in target's directory (a rename across file systems would
    not be atomic), created 0600. On any exception, KeyboardInterrupt and cancellation included,
    it is removed and a file already at target is left as it was; so is one when not `replace`
    (FileExistsError).
    """
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            sync(out)
        publish(temp, target, replace=replace)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
