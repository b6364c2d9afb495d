"""
SQLSink's database URL: parsed, checked and masked when the sink is built.

A URL that cannot work fails here, at construction (so at ``configure()``), with a
``ConfigError`` naming the option and the accepted form — not later in the
background. ``sqlite://track.db`` (two slashes) is the common case: SQLAlchemy reads
``track.db`` as a host name and silently opens an in-memory database (#14).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import URL, make_url

from asynctrack._exceptions import ConfigError, quote

__all__ = ["SQLITE_FORM", "masked", "parse_url"]

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
_SUPPORTED = ("sqlite", "postgresql", "mysql", "mariadb")
_EXAMPLES = (
    "'sqlite+aiosqlite:///track.db', 'postgresql+asyncpg://user:pw@host:5432/db' "
    "or 'mysql+asyncmy://user:pw@host:3306/db'"
)
SQLITE_FORM = (
    "an SQLite URL names its file after three slashes: 'sqlite+aiosqlite:///track.db' "
    "(relative to the working directory) or 'sqlite+aiosqlite:////var/lib/app/track.db' "
    "(absolute)"
)
#: Query parameters whose values are hidden like the password (``?password=…``,
#: ``?sslkey=…``, ``?auth_token=…``).
_SECRET_QUERY = re.compile(
    r"([?&][^=&]*(?:pass|secret|token|key|auth|credential|cookie)[^=&]*=)[^&]*", re.IGNORECASE
)


def masked(url: URL) -> str:
    """
    Render ``url`` for messages: password and secret-looking query values as ``***``.
    """
    text = url.render_as_string(hide_password=True)
    return _SECRET_QUERY.sub(r"\1***", text) if url.query else text


def _raw_masked(text: str) -> str:
    # A URL that does not parse: everything between the user's ':' and the last '@'
    # may be the password (which may itself hold ':', '/' or '@').
    if "@" in text:
        head, _, tail = text.rpartition("@")
        scheme, sep, userinfo = head.partition("://")
        if not sep:
            scheme, userinfo = "", head
        if ":" in userinfo:
            text = f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{tail}"
    return quote(text)


def parse_url(url: Any) -> URL:
    """
    Parse and check ``SQLSink(url=...)``; a URL without a driver gets the async one.

    Raises:
        ConfigError: the URL is not a str or ``URL``, cannot be parsed, names an
            unsupported database or a driver that is not async or not installed, or
            does not have the shape its database needs (an SQLite URL with a host, a
            MySQL/MariaDB URL without a database).
    """
    if isinstance(url, URL):
        parsed = url
    elif isinstance(url, str):
        try:
            parsed = make_url(url)
        except Exception:
            raise ConfigError(
                f"SQLSink(url=...): cannot parse the URL {_raw_masked(url)}; expected "
                f"e.g. {_EXAMPLES}"
            ) from None
    else:
        raise ConfigError(f"SQLSink(url=...) must be a str or URL, got {type(url).__name__}")
    safe = quote(masked(parsed))  # as given, before the driver is filled in
    if "+" not in parsed.drivername and parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise ConfigError(
            f"SQLSink(url={safe}): unsupported database {quote(backend)}; supported: "
            f"sqlite, postgresql, mysql, mariadb (e.g. {_EXAMPLES})"
        )
    _check_shape(parsed, backend, safe)
    try:
        dialect_cls = parsed.get_dialect()
    except Exception:
        raise ConfigError(
            f"SQLSink(url={safe}): unknown driver {quote(parsed.drivername)}; use "
            f"{_DRIVERS[backend]!r}"
        ) from None
    if not getattr(dialect_cls, "is_async", False):
        raise ConfigError(
            f"SQLSink(url={safe}): the driver {quote(parsed.get_driver_name())} is not async; "
            f"use {_DRIVERS[backend]!r}"
        )
    try:
        dialect_cls.import_dbapi()
    except ImportError:
        extra = _EXTRAS.get(backend)
        hint = f" (pip install 'asynctrack[{extra}]')" if extra else ""
        raise ConfigError(
            f"SQLSink(url={safe}): the driver {quote(parsed.get_driver_name())} is not "
            f"installed{hint}"
        ) from None
    return parsed


def _check_shape(url: URL, backend: str, safe: str) -> None:
    if backend == "sqlite":
        if url.host or url.port or url.username or url.password:
            # sqlite://track.db: the file name was read as a host.
            hint = ""
            if url.host and not (url.port or url.username or url.password):
                path = url.host + ("/" + url.database if url.database else "")
                hint = f"; did you mean {quote('sqlite+aiosqlite:///' + path)}?"
            raise ConfigError(
                f"SQLSink(url={safe}): {SQLITE_FORM}, with no host, port or user{hint}"
            )
        return
    if url.database and "@" in url.database:
        # postgresql:///user:pw@host/db: the credentials landed in the database name
        # (so the URL is not quoted: it would show the password).
        raise ConfigError(
            f"SQLSink(url=...): the database name of the {backend} URL holds an '@': "
            f"expected '{url.drivername}://user:pw@host:port/db', with two slashes before "
            "the user"
        )
    if backend in ("mysql", "mariadb") and not url.database:
        raise ConfigError(
            f"SQLSink(url={safe}): a {backend} URL must name its database after the host: "
            f"'{url.drivername}://user:pw@host:3306/db'"
        )
