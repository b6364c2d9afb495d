"""
Spill files: where a failing sink's batches wait on disk until it recovers.

One JSON-lines file per sink, ``<spill_dir>/asynctrack-<sink name>.spill.jsonl``,
locked (``flock``) by the process that owns it; a second process with the same
sink uses ``asynctrack-<sink name>.<pid>.spill.jsonl``. Replay reads the file in
order and records its progress in ``<file>.offset``, so a process that dies while
replaying resumes where it stopped; files left by dead processes (unlocked) are
adopted and replayed on the next start. A line that cannot be decoded (a torn last
line left by a crash, a damaged file) is skipped and counted.

Spill directories may be shared (``/tmp``): every file here is opened without
following symlinks (``O_NOFOLLOW``) and temporaries are created exclusively, so a
link planted under one of our names is never written through. A spill file deleted
or moved while in use (by an operator, by ``logrotate``) is noticed by device and
inode before each append: new batches go to a new file, and what the old one held is
still replayed through the handle kept open.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_logs
from asynctrack._core.records import Log
from asynctrack._core.slices import CHUNK, active, in_slices
from asynctrack.sinks._file import make_private_dirs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["SpillFile", "spill_name"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def spill_name(sink_name: str) -> str:
    """
    Return a filename-safe version of a sink's name.
    """
    return _SAFE.sub("_", sink_name)[:120] or "sink"


#: Never follow a symlink planted under one of our names (0 where unsupported).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


#: Opening never blocks on a FIFO planted under one of our names.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """
    Open ``path`` without following a symlink or blocking on a FIFO, and only if it is
    a regular file (a FIFO or device planted in a shared directory would hang or
    swallow the writes).

    Raises:
        OSError: the path is a symlink, not a regular file, or cannot be opened.
    """
    fd = os.open(path, flags | NOFOLLOW | _NONBLOCK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {path}")
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_private(path: Path) -> IO[bytes]:
    fd = open_regular(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    return os.fdopen(fd, "a+b", buffering=0)


def _read_offset(path: Path) -> int:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return 0
    with os.fdopen(fd, "rb") as f:
        try:
            return max(0, int(f.read(64).strip() or 0))
        except (OSError, ValueError):
            return 0


def write_private_atomically(path: Path, data: bytes) -> None:
    """
    Replace ``path`` by a file holding ``data`` (mode 0600), through a temporary
    created exclusively under an unpredictable name, never through a symlink.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # replaces a planted link itself, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _try_lock(f: IO[bytes]) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class _Backlog:
    """
    One spill file being replayed: its path, handle and read offset.
    """

    def __init__(self, path: Path, handle: IO[bytes], offset: int) -> None:
        self.path = path
        self.handle = handle
        self.offset = offset
        st = os.fstat(handle.fileno())
        self.ident = (st.st_dev, st.st_ino)

    def attached(self) -> bool:
        """
        Whether the path still names the file we hold (not deleted, moved or replaced).
        """
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.ident

    @property
    def offset_path(self) -> Path:
        return self.path.with_name(self.path.name + ".offset")

    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size


class SpillFile:
    """
    The spill storage of one sink (thread-confined to the dispatcher).
    """

    def __init__(self, directory: Path, sink_name: str, *, fsync: bool = False) -> None:
        self.directory = directory
        self.base = f"asynctrack-{spill_name(sink_name)}"
        self.fsync = fsync
        self._backlogs: list[_Backlog] = []
        self._writer: _Backlog | None = None
        self.corrupt = 0
        #: Spill files found deleted or moved while in use (a new one was started).
        self.reopened = 0
        self._opened = False

    # -- discovery -------------------------------------------------------------------------
    def open(self) -> None:
        """
        Adopt spill files left by earlier runs (unlocked ones), oldest first.
        """
        if self._opened:
            return
        self._opened = True
        if not self.directory.is_dir():
            return
        pattern = re.compile(re.escape(self.base) + r"(\.\d+)?\.spill\.jsonl$")
        found = sorted(
            (p for p in self.directory.iterdir() if pattern.match(p.name) and not p.is_symlink()),
            key=lambda p: p.lstat().st_mtime,
        )
        for path in found:
            backlog = self._adopt(path)
            if backlog is not None:
                self._backlogs.append(backlog)
                if backlog.size() <= backlog.offset:
                    self._finish(backlog)  # nothing left to replay: remove it now

    def _adopt(self, path: Path) -> _Backlog | None:
        try:
            handle = _open_private(path)
        except OSError:
            return None
        if not _try_lock(handle):
            handle.close()
            return None
        offset = _read_offset(path.with_name(path.name + ".offset"))
        size = os.fstat(handle.fileno()).st_size
        if size and offset < size:
            # A crash may have left a torn last line: end it, so that what we append
            # later starts on a fresh line and only the torn fragment is lost.
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        return _Backlog(path, handle, min(offset, size))

    # -- writing ----------------------------------------------------------------------------
    @property
    def has_backlog(self) -> bool:
        return any(b.size() > b.offset for b in self._backlogs)

    def append(self, logs: Sequence[Log | bytes]) -> None:
        """
        Append logs at the end of the spill (they are replayed after everything before).

        Raises:
            OSError: the disk refused the write (the caller counts the logs as dropped).
        """
        writer = self._writer
        if writer is not None and not writer.attached():
            # Deleted or moved underneath us: what it holds is replayed through the
            # open handle; new batches go to a file that can be found again.
            self._writer = writer = None
            self.reopened += 1
        if writer is None:
            writer = self._new_writer()
        # In slices, as a sink's write (docs/pipeline.md, "The dispatcher's slices").
        data = b"".join(in_slices(encode_logs, logs))
        writer.handle.write(data)
        if self.fsync:
            os.fsync(writer.handle.fileno())

    def _new_writer(self) -> _Backlog:
        make_private_dirs(self.directory)
        # Keep appending to the newest file we already own, to keep one order.
        if self._backlogs and self._backlogs[-1].attached():
            self._writer = self._backlogs[-1]
            return self._writer
        pid = os.getpid()
        candidates = [self.directory / f"{self.base}.spill.jsonl"]
        candidates.append(self.directory / f"{self.base}.{pid}.spill.jsonl")
        # More for this process: the exiting thread spills beside the dispatcher.
        candidates += [self.directory / f"{self.base}.{pid}{k}.spill.jsonl" for k in range(1, 4)]
        for path in candidates:
            backlog = self._adopt(path)
            if backlog is not None:
                self._backlogs.append(backlog)
                self._writer = backlog
                return backlog
        raise OSError(f"cannot lock a spill file in {self.directory}")

    # -- replay -----------------------------------------------------------------------------
    def read_chunk(self, limit: int) -> tuple[list[Log], int]:
        """
        Read up to ``limit`` logs from the oldest backlog; return them and the new offset.

        Malformed lines (a torn line left by a crash) are skipped and counted.
        """
        while self._backlogs:
            backlog = self._backlogs[0]
            size = backlog.size()
            if backlog.offset >= size:
                if backlog is self._writer and len(self._backlogs) == 1:
                    return [], backlog.offset
                self._finish(backlog)
                continue
            # Read through the handle we hold, not the path: the file may have been
            # deleted or replaced, and the path may now be someone's symlink.
            logs: list[Log] = []
            offset = backlog.offset
            slices = active()
            slices.mark()
            for line in _lines(backlog.handle.fileno(), offset, size):
                if len(logs) >= limit:
                    break
                if logs and not len(logs) % CHUNK:
                    slices.check()
                if not line.endswith(b"\n"):
                    break  # being written right now (never by us: we are one thread)
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    logs.append(decode_line(line))
                except Exception:  # any failure skips the line, never the replay
                    self.corrupt += 1
            if not logs and offset > backlog.offset:
                self.commit(offset)
                continue
            return logs, offset
        return [], 0

    def commit(self, offset: int) -> None:
        """
        Record that everything before ``offset`` in the oldest backlog was replayed.
        """
        backlog = self._backlogs[0]
        backlog.offset = offset
        if offset >= backlog.size():
            self._finish(backlog)
        elif backlog.attached():
            # (A file no longer on disk cannot be resumed by a later run: no record.)
            # The record is best effort: without it a restart replays this part again.
            with contextlib.suppress(OSError):
                write_private_atomically(backlog.offset_path, str(offset).encode())

    def _finish(self, backlog: _Backlog) -> None:
        # Fully replayed: remove the file and its offset, then release the lock —
        # unless the path names another file by now (ours was deleted or moved).
        if backlog.attached():
            with contextlib.suppress(OSError):
                backlog.path.unlink()
            with contextlib.suppress(OSError):
                backlog.offset_path.unlink()
        with contextlib.suppress(OSError):
            backlog.handle.close()
        self._backlogs.remove(backlog)
        if backlog is self._writer:
            self._writer = None

    def close(self) -> None:
        """
        Release the files (their content stays on disk for the next run).
        """
        for backlog in self._backlogs:
            with contextlib.suppress(OSError):
                backlog.handle.close()
        self._backlogs.clear()
        self._writer = None

    def forget(self) -> None:
        """
        Drop file handles inherited from a parent process without unlocking them there.
        """
        self._backlogs = []
        self._writer = None
        self._opened = False

    def paths(self) -> list[Path]:
        return [b.path for b in self._backlogs]


def _lines(fd: int, start: int, end: int, block: int = 1 << 20) -> Iterator[bytes]:
    """
    Yield the lines of the byte range ``[start, end)`` of ``fd`` (the last one may lack
    its newline), read with ``pread`` (the handle's position is left alone).
    """
    pending = b""
    position = start
    while position < end:
        chunk = os.pread(fd, min(block, end - position), position)
        if not chunk:
            break
        position += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending
