"""
FileSink: one JSON object per line, written with aiofiles; and ``read_logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob as _glob
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_logs
from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._core.slices import in_slices
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink, write_lines
from asynctrack.sinks._rotation import rotated_name, rotations

__all__ = ["FileSink", "make_private_dirs", "read_logs"]


def make_private_dirs(path: Path) -> None:
    """
    Create directory ``path`` and its missing parents, each with mode 0700.

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last directory only;
    the parents it creates would be world-readable under the usual umask 022.
    """
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)


class FileSink(Sink):
    """
    Write each log as one line of JSON (the form of ``Log.to_dict()``), UTF-8.

    Args:
        path: the file; missing parent directories are created (mode 0700).
        max_bytes: rotate when the file would grow past this size (0: never).
        backup_count: rotated files kept as ``path.1`` … ``path.N`` (newest first).
        fsync: ``"never"`` (default) or ``"batch"`` (fsync after every batch).
        mode: permissions of a created file (default 0600: logs hold user data).

    Each batch is one ``write`` to a file opened with ``O_APPEND``, so several processes
    may append to one file without interleaving lines — but give each process its own
    file when rotation is enabled (rotation is not coordinated between processes).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 0,
        backup_count: int = 5,
        fsync: str = "never",
        mode: int = 0o600,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError("FileSink: path must be a non-empty str or path")
        _check_file_path(os.fspath(path))
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigError(f"FileSink: max_bytes must be an int >= 0, got {quote(max_bytes)}")
        if isinstance(backup_count, bool) or not isinstance(backup_count, int) or backup_count < 0:
            raise ConfigError(
                f"FileSink: backup_count must be an int >= 0, got {quote(backup_count)}"
            )
        if fsync not in ("never", "batch"):
            raise ConfigError(f"FileSink: fsync must be 'never' or 'batch', got {quote(fsync)}")
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ConfigError(f"FileSink: mode must be an int like 0o600, got {quote(mode)}")
        # Imported here, in the application's thread, not lazily in the dispatcher's:
        # a fork while the dispatcher imports would leave the child a half-imported
        # module (seen: "partially initialized module 'aiofiles'" in 1 child of 200).
        import aiofiles  # noqa: F401

        self.path = Path(os.fspath(path))
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.fsync = fsync
        self.mode = mode
        self._file: Any = None
        self._size = 0
        self._torn = False
        self._ident: tuple[int, int] | None = None
        #: A batch whose write was cut (cancelled) after its bytes were handed to the
        #: OS: the worker counts it written instead of spilling or retrying it.
        self._asynctrack_landed: Sequence[Log | bytes] | None = None
        #: Times the file was found deleted or moved (``logrotate``, an operator) and
        #: opened again by its path; counted in ``asynctrack.stats().reopened``.
        self.reopened = 0

    @property
    def name(self) -> str:
        return f"file-{self.path.name}"

    async def open(self) -> None:
        import aiofiles

        make_private_dirs(self.path.parent)
        mode = self.mode

        def opener(p: str, flags: int) -> int:
            return _open_append(p, flags, mode)

        # Unbuffered: one write() system call per batch, so appends never interleave.
        # Readable too ("a+"): a write cut short by a full disk is read back and undone.
        self._file = await aiofiles.open(self.path, "a+b", buffering=0, opener=opener)
        st = os.fstat(self._file.fileno())
        self._size = st.st_size
        self._ident = (st.st_dev, st.st_ino)

    def _moved(self) -> bool:
        # Does the path still name the file we hold? (As WatchedFileHandler checks.)
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    @write_lines
    async def write(self, logs: Sequence[Log | bytes]) -> None:
        if self._file is not None and self._moved():
            # Deleted or moved underneath us (#15): writing on would count logs as
            # written into a file nobody can find. Reopen by path (recreating the
            # directory); if that fails, the batch is retried and spilled.
            await self.close()
            self.reopened += 1
            self._torn = False
            report(
                f"reopen:{self.path}",
                f"asynctrack: {self.path} was deleted or moved; opened it again",
            )
        if self._file is None:
            await self.open()
        # Encoded in chunks, the GIL released between them when the dispatcher has held
        # it for a slice (docs/pipeline.md, "The dispatcher's slices").
        data = b"".join(in_slices(encode_logs, logs))
        if self._torn:
            data = b"\n" + data  # end the fragment a failed write left: one bad line only
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            await self._rotate()
        f = self._file
        job = _WriteJob(self, f.fileno(), data)
        try:
            await asyncio.get_running_loop().run_in_executor(None, job.run)
        except (asyncio.CancelledError, TimeoutError):
            if job.forbid():
                raise  # the write never began: nothing of the batch is in the file
            # Cut (shutdown deadline, write timeout) after its thread began writing: the
            # batch lands in the file all the same. Say so, or it would be spilled or
            # retried as well, and counted neither written nor once (#15).
            self._asynctrack_landed = logs
            raise
        self._torn = False
        self._size += len(data)
        if self.fsync == "batch":
            await asyncio.to_thread(os.fsync, f.fileno())

    def _undo_partial(self, fd: int, part: bytes) -> None:
        # A write cut short (disk full): the batch will be retried whole, so remove the
        # part that went through — if it is still the file's tail (no other process
        # appended since). Otherwise end it with a newline at the next write: one
        # unreadable line that read_logs skips, and the first logs of the batch twice.
        try:
            size = os.fstat(fd).st_size
            if size >= len(part) and os.pread(fd, len(part), size - len(part)) == part:
                os.ftruncate(fd, size - len(part))
                return
        except OSError:
            pass
        self._torn = True

    async def _rotate(self) -> None:
        await self.close()
        if self.backup_count:
            for i in range(self.backup_count - 1, 0, -1):
                src = rotated_name(self.path, i)
                if src.exists():
                    os.replace(src, rotated_name(self.path, i + 1))
            os.replace(self.path, rotated_name(self.path, 1))
        else:
            self.path.unlink(missing_ok=True)
        await self.open()

    async def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            await f.close()

    def after_fork(self) -> None:
        self._file = None


class _WriteJob:
    """
    One batch's write, run in an executor thread; once begun it is never abandoned.

    The coroutine awaiting it may be cancelled at any time; ``forbid()`` then tells
    whether the thread had begun (the bytes land) or never will.
    """

    __slots__ = ("_lock", "_state", "data", "fd", "sink")

    def __init__(self, sink: FileSink, fd: int, data: bytes) -> None:
        self.sink = sink
        self.fd = fd
        self.data = data
        self._lock = threading.Lock()
        self._state = "new"

    def run(self) -> None:
        with self._lock:
            if self._state == "forbidden":
                return
            self._state = "begun"
        data = self.data
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, view[done:]) or len(data) - done
        except BaseException:
            if done:
                self.sink._undo_partial(self.fd, data[:done])
            raise

    def forbid(self) -> bool:
        """
        Keep the write from beginning; return False if it has begun already.
        """
        with self._lock:
            if self._state == "begun":
                return False
            self._state = "forbidden"
            return True


def _check_file_path(text: str | bytes) -> None:
    # A path that can never name the file fails now, not as endless failed writes in
    # the background: a directory (existing, or written with a trailing separator,
    # "." or ".."), or a NUL character.
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    shown = quote(text)
    if "\x00" in text:
        raise ConfigError(f"FileSink: path {shown} holds a NUL character")
    separators = (os.sep, os.altsep or os.sep)
    last = os.path.basename(text)
    if text.endswith(separators) or last in ("", ".", "..") or os.path.isdir(text):
        raise ConfigError(
            f"FileSink: path {shown} names a directory; give a file in it, e.g. "
            f"{quote(os.path.join(text, 'track.jsonl'))}"
        )


def _open_append(path: str, flags: int, mode: int) -> int:
    """
    Open the sink's file for appending; a named pipe only while something reads it.

    Opened for reading and writing (as a regular file is, to undo a torn write), a
    named pipe never blocks and swallows up to a pipe's buffer with nobody reading:
    logs counted as written, then lost. Opened write-only and non-blocking, it fails
    (ENXIO) while nobody reads, and the batch is retried and spilled like any failed
    write; with a reader (a log shipper) it is written to as usual.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | os.O_APPEND | nonblock, mode)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            fd = -1
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | nonblock)
        if nonblock:
            os.set_blocking(fd, True)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def _expand(path: str | os.PathLike[str]) -> list[Path]:
    text = os.fspath(path)
    if any(ch in text for ch in "*?["):
        return [Path(p) for p in sorted(_glob.glob(text))]
    # Oldest first: path.N … path.1, then path.
    return [*reversed(rotations(text)), Path(text)]


def read_logs(
    path: str | os.PathLike[str],
    *,
    rotated: bool = True,
    on_error: Callable[[Path, int, str], None] | None = None,
) -> Iterator[Log]:
    """
    Yield the logs of a JSON-lines file written by ``FileSink``, oldest first.

    Args:
        path: the file, or a glob pattern.
        rotated: also read the rotated files ``path.N`` … ``path.1`` (oldest first).
        on_error: called with ``(file, line_number, message)`` for each line that
            cannot be read (a torn last line left by a crash); by default such lines
            are reported once on the ``asynctrack`` logger and skipped.

    Raises:
        FileNotFoundError: the file does not exist.

    .. versionadded:: 0.1
    """
    files = _expand(path) if rotated else [Path(os.fspath(path))]
    if not any(f.exists() for f in files):
        raise FileNotFoundError(f"no such file: {os.fspath(path)}")
    for file in files:
        with contextlib.suppress(FileNotFoundError), open(file, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    log = decode_line(line)
                except Exception as exc:  # any failure skips the line (#14)
                    message = f"line {number} skipped: {exc}"
                    if on_error is not None:
                        on_error(file, number, message)
                    else:
                        report(f"read:{file}", f"asynctrack: {file}: {message}")
                    continue
                yield log


FileSink.__module__ = "asynctrack"
