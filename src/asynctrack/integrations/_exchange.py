"""
The observed ``send`` and ``receive`` of one HTTP request of ``TrackMiddleware``.

One object per request rather than two closures over a dozen cells, and the same
object serves as both callables (called with a message it is ``send``, without one
``receive``), so no bound method either: a request holds it at every ``await``, and
each object held by each concurrent request brings the next gen0 collection nearer
(see docs/performance.md, "The garbage collector").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, overload

from asynctrack import CallScope, Tracker

__all__ = ["Exchange"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Exchange(CallScope):
    """
    One HTTP request's ``send`` and ``receive`` (both the object itself), observed.

    ``ex(message)`` sends, ``ex()`` receives: an ASGI application calls ``receive``
    without arguments and ``send`` with one message.

    It is also the request's root call, a :class:`~asynctrack.CallScope` of ``tracker``
    (``level`` an int below ``NONE``, or -1 for ``NONE``): one object rather than two
    held at every ``await``. ``mw`` is the ``TrackMiddleware`` (its ``_routed`` names
    the root call once the request is routed).
    """

    __slots__ = (
        "_method",
        "_mw",
        "_receive",
        "_scope",
        "_send",
        "disconnected",
        "ended",
        "named",
        "recorded",
        "root_path",
        "status",
    )

    def __init__(
        self,
        mw: Any,
        tracker: Tracker,
        function: str,
        level: int,
        params: dict[str, Any] | None,
        scope: Scope,
        method: str,
        send: Send,
        receive: Receive,
        info: dict[str, Any] | None = None,
    ) -> None:
        CallScope.__init__(self, tracker, function, level, params, info)
        self._mw, self._scope, self._method = mw, scope, method
        self._send, self._receive = send, receive
        self.root_path: str = scope.get("root_path", "")
        self.status: int | None = None
        self.recorded: int | None = None  # the status already in the info
        self.ended = self.disconnected = self.named = False

    @overload
    async def __call__(self) -> Message: ...
    @overload
    async def __call__(self, message: Message) -> None: ...
    async def __call__(self, message: Message | None = None) -> Message | None:
        if message is None:  # receive (inline: no second coroutine per read)
            if not self.named:
                self._rename()
            message = await self._receive()
            # Servers answer http.disconnect to reads after the response ended; only a
            # disconnect before the end is the client going away.
            if message["type"] == "http.disconnect" and not self.ended:
                self.disconnected = True
            return message
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message.get("status")
            if not self.named:
                # The usual case: routed by now, so the path and the status go into
                # the info together (one copy of the info dict).
                self.named = self._mw._routed(
                    self, self._scope, self._method, self.root_path, self.status
                )
                if self.named:
                    self.recorded = self.status
        elif not self.named:
            self._rename()
        if (
            kind == "http.response.body" and not message.get("more_body", False)
        ) or kind == "http.response.pathsend":
            self.ended = True
        try:
            await self._send(message)
        except OSError:
            # Servers implementing ASGI spec 2.4 (uvicorn) raise an OSError from send
            # once the client is gone.
            self.disconnected = True
            raise
        return None

    def _rename(self) -> None:
        self.named = self._mw._routed(self, self._scope, self._method, self.root_path, None)
