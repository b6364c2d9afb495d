"""
The sink protocol: ``open``, ``write(logs)``, ``close``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asynctrack._core.records import Log

__all__ = ["Sink", "takes_lines", "write_lines"]

_F = TypeVar("_F", bound=Callable[..., Any])


def write_lines(write: _F) -> _F:
    """
    Mark a sink's ``write`` as taking each log as its JSON line (``bytes``) as well.

    When every sink of a pipeline takes lines, logs are encoded when they complete and
    queued as bytes: a buffered log is then nothing the garbage collector counts or
    visits (docs/pipeline.md, "Logs encoded at completion"). A subclass that overrides
    ``write`` is not marked.
    """
    write._asynctrack_lines = True  # type: ignore[attr-defined]
    return write


def takes_lines(sink: Sink) -> bool:
    """
    Whether ``sink``'s ``write`` takes logs as JSON lines (:func:`write_lines`).

    A ``write`` set on the instance itself (a test's ``mock.patch.object``) hides the
    class's: it is not taken to take lines.
    """
    if "write" in getattr(sink, "__dict__", ()):
        return False
    return getattr(type(sink).write, "_asynctrack_lines", False) is True


class Sink:
    """
    Where completed logs go. Subclass it and override :meth:`write`.

    The dispatcher calls ``open()`` once before the first write, ``write(logs)`` with
    batches of logs, and ``close()`` at shutdown, all from its own thread and event
    loop. Raising in ``write`` means "retry this batch": it is retried with backoff,
    then spilled to disk and replayed when the sink recovers, so ``write`` must be
    idempotent for logs it already wrote (log ids are unique).

    Import the modules ``write`` needs in ``__init__`` (the application's thread), not
    lazily inside ``open``: a process forked while the dispatcher thread is importing
    leaves its child a half-imported module.

    .. versionadded:: 0.1
    """

    @property
    def name(self) -> str:
        """
        A stable name for this sink: it names its spill file and its counters.
        """
        return type(self).__name__.lower()

    async def open(self) -> None:
        """
        Acquire resources (files, connections). Called once, in the dispatcher's loop.
        """

    async def write(self, logs: Sequence[Log]) -> None:
        """
        Write a batch of logs; raise to have the batch retried.
        """
        raise NotImplementedError(f"{type(self).__name__}.write() is not implemented")

    async def close(self) -> None:
        """
        Release resources. Called once at shutdown or when the sink is replaced.
        """

    def after_fork(self) -> None:
        """
        Forget resources inherited from the parent process, without closing them.

        Called in a forked child before the child's dispatcher calls ``open()`` again.
        """

    def __str__(self) -> str:
        """
        How asynctrack's warnings name this sink: its :attr:`name`, unless a subclass
        says more (``SQLSink`` adds its URL, password hidden). Never include a secret.
        """
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


Sink.__module__ = "asynctrack"
