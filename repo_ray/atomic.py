"""Files appear whole or not at all: each writer writes a temporary name beside the target
and renames it into place (a rename within one directory is atomic on POSIX), so a crash or
a kill mid-write never leaves a half-written report, model file or JSON for a reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_name(path: str | os.PathLike) -> Path:
    """A hidden sibling of `path` no reader globs for (`.NAME.tmp-PID`)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling for writing; on a clean exit it replaces `path`, on an error
    it is removed and `path` keeps what it held before."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_output(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)
