"""
What the ASGI and WSGI ``TrackMiddleware`` share: argument checks, path exclusions and
the once-per-middleware warning when nothing is configured (see docs/web.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import asynctrack
from asynctrack import DEFAULT, NONE, CallScope, Tracker

_logger = logging.getLogger("asynctrack")


class WebMiddleware:
    """
    The part of a web ``TrackMiddleware`` that does not depend on the protocol.

    Subclasses name their kind of application (``KIND``, with its article) and what
    their hooks receive (``HOOK_ARG``) for the error messages.
    """

    KIND = "a web"
    HOOK_ARG = "request"

    def __init__(
        self,
        app: Any,
        *,
        tracker: str | Tracker,
        exclude_paths: Iterable[str] = (),
        info: Any = None,
        level: int | str = DEFAULT,
        route: Any = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"TrackMiddleware(): app must be {self.KIND} application, not {app!r}")
        if isinstance(tracker, str):
            tracker = asynctrack.get_tracker(tracker)
        elif not isinstance(tracker, Tracker):
            raise TypeError(
                "TrackMiddleware(): tracker must be a tracker name (str) or an "
                f"asynctrack.Tracker, not {type(tracker).__name__}"
            )
        if info is not None and not callable(info):
            raise TypeError(
                f"TrackMiddleware(): info must be a callable({self.HOOK_ARG}) -> dict, not {info!r}"
            )
        if route is not None and not callable(route):
            raise TypeError(
                f"TrackMiddleware(): route must be a callable({self.HOOK_ARG}) -> str | None, "
                f"not {route!r}"
            )
        try:
            tracker.call("TrackMiddleware", level=level)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"TrackMiddleware(): level: {exc}") from None
        self.tracker = tracker
        self.level = level
        self._info = info
        self._route = route
        self._exact, self._prefixes = parse_excludes(exclude_paths)
        #: Whether the first request checked that something is configured.
        self._checked = False
        #: How many times the ``info`` or ``route`` hook raised or returned something unusable.
        self.info_errors = 0
        #: How many times the middleware's own bookkeeping failed (never raised).
        self.internal_errors = 0
        #: How many requests carried a malformed ``traceparent`` header (ignored).
        self.malformed_traceparent = 0

    def _check_configured(self) -> None:
        # A middleware in front of an application that never configured asynctrack
        # records nothing, silently (#14): say so once, at the first request (the
        # application may configure between building the middleware and serving).
        self._checked = True
        tracker = self.tracker
        # Not enabled with a level below NONE: nothing is configured or capturing (a
        # level of NONE is a deliberate silence).
        if not tracker.enabled and tracker.level < NONE:
            _logger.warning(
                "asynctrack: TrackMiddleware got a request but nothing is configured, so "
                "nothing is recorded. Call asynctrack.configure(sinks=[...]) at start-up "
                "(before serving), or serve inside 'async with asynctrack.tracking(...)'"
            )

    def _excluded(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    # -- bookkeeping: never raises into the application ------------------------------------
    def _finish(self, call: CallScope, request: Any, status: int | None) -> None:
        # The status (unless already recorded), then the info hook's items.
        try:
            if status is not None:
                call.add_info(status=status)
        except Exception:
            self.internal_errors += 1
        hook = self._info
        if hook is not None:
            try:
                extra = hook(request)
                if extra is not None:
                    call.add_info(**extra)
            except Exception as exc:
                self._hook_failed("info", hook, exc)

    def _hook_failed(self, kind: str, hook: Any, exc: Exception) -> None:
        self.info_errors += 1
        if self.info_errors == 1:
            _logger.warning(
                "asynctrack: TrackMiddleware %s hook %r failed: %r "
                "(counted in info_errors; reported once)",
                kind,
                hook,
                exc,
            )

    def _data(self, call: CallScope, key: str, value: Any) -> None:
        try:
            call.add_data(key, value)
        except Exception:
            self.internal_errors += 1


def parse_excludes(paths: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """
    Split ``exclude_paths`` into exact paths and prefixes (entries ending in ``*``).
    """
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise TypeError(
            f"TrackMiddleware(): exclude_paths must be a list of str, not {type(paths).__name__}"
        )
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in paths:
        if not isinstance(entry, str):
            raise TypeError(
                f"TrackMiddleware(): exclude_paths entries must be str, not {type(entry).__name__}"
            )
        if not entry.startswith("/"):
            raise ValueError(f"TrackMiddleware(): exclude_paths entry {entry!r} must start with /")
        if "*" in entry[:-1]:
            raise ValueError(
                f"TrackMiddleware(): exclude_paths entry {entry!r}: '*' is only allowed at the end"
            )
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            exact.add(entry)
    return frozenset(exact), tuple(prefixes)
