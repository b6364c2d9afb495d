"""
SQLSink's database URL: parsed, checked and masked when the sink is built.

A URL that cannot work fails here, at construction (so at ``configure()``), with a
``ConfigError`` naming the option and the accepted form — not later in the
background. ``sqlite://track.db`` (two slashes) is the common case: SQLAlchemy reads
``track.db`` as a host name and silently opens an in-memory database (#14).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url

from asynctrack._core.redact import hide_url_secrets, mask_url
from asynctrack._exceptions import ConfigError, quote

__all__ = ["SQLITE_FORM", "masked", "parse_url", "shown_url"]

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


def masked(url: URL) -> str:
    """
    Render ``url`` for messages: password and secret-looking query values as ``***``.
    """
    # The text-level masking also covers what SQLAlchemy does not read as a password
    # (an unencoded '@' in it leaves its tail in the host).
    return mask_url(url.render_as_string(hide_password=True))


def shown_url(parsed: URL, given: Any) -> str:
    """
    Render ``parsed`` for messages, hiding also every secret part of the text it was
    parsed from (``given``): a string SQLAlchemy misreads (``sqlite:///:pw@host/db``,
    a file name to it) is rendered percent-encoded, past the reach of ``masked``.
    """
    text = masked(parsed)
    return hide_url_secrets(text, given) if isinstance(given, str) else text


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
                f"SQLSink(url=...): cannot parse the URL {quote(mask_url(url))}; expected "
                f"e.g. {_EXAMPLES}"
            ) from None
    else:
        raise ConfigError(f"SQLSink(url=...) must be a str or URL, got {type(url).__name__}")
    # As given, before the driver is filled in; the secrets of the text as written are
    # hidden too (SQLAlchemy's rendering may show part of a password it misread).
    safe = quote(shown_url(parsed, url))
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
    if url.host and "@" in url.host:
        # postgresql://u:p@ss@host/db: an unencoded '@' in the password; the driver
        # would look up the password's tail as a host name (and say it in errors).
        raise ConfigError(
            f"SQLSink(url={safe}): the host holds an '@': a password with '@' (or ':', "
            "'/') must be percent-encoded ('@' as %40), e.g. with "
            "urllib.parse.quote(password, safe='')"
        )
    if backend in ("mysql", "mariadb") and not url.database:
        raise ConfigError(
            f"SQLSink(url={safe}): a {backend} URL must name its database after the host: "
            f"'{url.drivername}://user:pw@host:3306/db'"
        )
