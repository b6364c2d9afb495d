"""
The sink protocol: ``open``, ``write(logs)``, ``close``.
"""

from __future__ import annotations

from collections.abc import Sequence

from asynctrack._core.records import Log

__all__ = ["Sink"]


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
