"""
Spill files: where a failing sink's batches wait on disk until it recovers.

One JSON-lines file per sink, ``<spill_dir>/asynctrack-<sink name>.spill.jsonl``,
locked (``flock``) by the process that owns it; a second process with the same
sink uses ``asynctrack-<sink name>.<pid>.spill.jsonl``. Replay reads the file in
order and records its progress in ``<file>.offset``, so a process that dies while
replaying resumes where it stopped; files left by dead processes (unlocked) are
adopted and replayed on the next start. A torn last line (a crash mid-write) is
skipped and counted.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from asynctrack._core.encode import decode_line, encode_logs
from asynctrack._core.records import Log
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


def _open_private(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a+b", buffering=0)


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
            (p for p in self.directory.iterdir() if pattern.match(p.name)),
            key=lambda p: p.stat().st_mtime,
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
        offset = 0
        offset_path = path.with_name(path.name + ".offset")
        with contextlib.suppress(OSError, ValueError):
            offset = int(offset_path.read_text().strip() or 0)
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

    def append(self, logs: Sequence[Log]) -> None:
        """
        Append logs at the end of the spill (they are replayed after everything before).

        Raises:
            OSError: the disk refused the write (the caller counts the logs as dropped).
        """
        writer = self._writer
        if writer is None:
            writer = self._new_writer()
        data = encode_logs(logs)
        writer.handle.write(data)
        if self.fsync:
            os.fsync(writer.handle.fileno())

    def _new_writer(self) -> _Backlog:
        make_private_dirs(self.directory)
        # Keep appending to the newest file we already own, to keep one order.
        if self._backlogs:
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
            with open(backlog.path, "rb") as reader:
                reader.seek(backlog.offset)
                logs: list[Log] = []
                offset = backlog.offset
                while len(logs) < limit:
                    line = reader.readline()
                    if not line:
                        break
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
        else:
            tmp = backlog.offset_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(str(offset))
            os.replace(tmp, backlog.offset_path)

    def _finish(self, backlog: _Backlog) -> None:
        # Fully replayed: remove the file and its offset, then release the lock.
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
