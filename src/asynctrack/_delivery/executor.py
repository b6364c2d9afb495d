"""
The default executor of the dispatcher's loop: it keeps accepting work at exit.

Sinks run blocking calls through the loop's default executor (aiofiles for every
file operation, ``asyncio.to_thread`` for fsync). Python's ``ThreadPoolExecutor``
refuses new work once ``concurrent.futures`` has run its exit hook ("cannot schedule
new futures after interpreter shutdown"), and its threads stop after their current
job — but logs still complete after that point (non-daemon threads, atexit handlers)
and must be written. This executor's daemon threads serve until it is shut down.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ExitProofExecutor"]

_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None


class ExitProofExecutor(ThreadPoolExecutor):
    """
    A small pool of daemon threads, independent of ``concurrent.futures``' exit hook.

    It subclasses ``ThreadPoolExecutor`` only because asyncio requires that type of
    its default executor; none of the parent's machinery is used.
    """

    def __init__(self, workers: int = 2) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="asynctrack-io")
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._size = workers
        self._started: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args, kwargs))
        if len(self._started) < self._size:
            self._grow()
        return future

    def _grow(self) -> None:
        with self._guard:
            if len(self._started) >= self._size or self._closed:
                return
            thread = threading.Thread(
                target=self._serve, name=f"asynctrack-io-{len(self._started)}", daemon=True
            )
            thread.start()
            self._started.append(thread)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del job, future, fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._closed = True
            threads = list(self._started)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
