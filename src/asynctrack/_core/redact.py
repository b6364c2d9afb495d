"""
Redaction of URL passwords in free text, in time linear in the text.

``postgresql://app:s3cret@db/prod`` becomes ``postgresql://app:[REDACTED]@db/prod``
wherever it appears in a recorded string, a ``repr`` or an error message, whatever the
length of the password (cloud IAM tokens used as database passwords run to kilobytes).

The user-info is read the way SQLAlchemy reads a URL: the user name runs up to the
first ``:`` (it may hold ``@``, as in Azure's ``bob@server``), the password from there
to the ``@`` before the host (it may hold ``/``, ``:``, ``?`` and ``@``). Two readings keep ordinary
text intact: a password never spans whitespace (``see http://h:80 or mail a@b``), and
``host:port/`` is a port (``https://h:443/path?mail=a@b``).

:func:`clip` also cuts the text to a length, and never cuts first: a password that
straddles the cut is redacted, so no prefix of it is written.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "clip", "clip_bytes", "hide_url_secrets", "mask_url", "scrub", "url_secrets"]

REDACTED = "[REDACTED]"
_R = len(REDACTED)

# The user name: anything but "/", whitespace and ":", then the ":" that ends it.
_USER = re.compile(r"[^/\s:]*:")
# A port after "host:", which is not a password.
_PORT = re.compile(r"\d{1,5}[/?#]")
_SPACE = re.compile(r"\s")
# The host part after "@": an unencoded "@" in it still belongs to the password
# (``u:p@ss@host``), read as urllib does (up to the last "@" before the host's end).
_HOST = re.compile(r"[^/?#\s]*")
_HOST_END = re.compile(r"[/?#\s]")


def scrub(text: str) -> str:
    """
    Return ``text`` with the password of every URL with user-info redacted.
    """
    if "://" not in text:
        return text
    # No cut: each redaction may lengthen the text (an empty password becomes ten
    # characters), so the output is bounded by three times the input.
    return _redact(text, 3 * len(text) + 16)[0]


def clip(text: str, limit: int) -> str:
    """
    Return ``text`` with URL passwords redacted, cut to ``limit`` characters.

    A cut string ends with ``"…[+N chars]"`` (N characters of the redacted text dropped).
    Only the part of ``text`` that can reach the output is examined, so a huge string
    costs little more than its first ``limit`` characters (and one search for ``@``).
    """
    if len(text) <= limit and "://" not in text:
        return text
    out, total = _redact(text, limit)
    if total <= limit:
        return out
    return f"{out[:limit]}…[+{total - limit} chars]"


_ASCII_SPACES = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _has_space(s: str, start: int, end: int) -> bool:
    # Whitespace in s[start:end], at memchr speed when the text is ASCII (a flag
    # CPython keeps): this may run over a long password past the cut.
    if s.isascii():
        return any(s.find(c, start, end) >= 0 for c in _ASCII_SPACES)
    part = s[start:end]
    if not part:
        return False
    words = part.split(None, 1)  # C speed, unlike a regex scan of wide characters
    return len(words) != 1 or len(words[0]) != len(part)


def clip_bytes(data: bytes | bytearray | memoryview, limit: int) -> str:
    """
    Return the ``repr`` of the first ``limit`` bytes, URL passwords redacted first.

    A cut value ends with ``"…[+N bytes]"``.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    n = len(data)
    if b"://" not in data[: limit + 3]:
        text = repr(bytes(data[:limit]))
        return f"{text}…[+{n - limit} bytes]" if n > limit else text
    # Bytes are read as latin-1 (one character per byte) up to the last "@" (the end
    # of the last possible password) and enough after it to fill the output.
    end = max(data.rfind(b"@") + 1, 0) + limit + 1
    out, total = _redact(bytes(data[:end]).decode("latin-1"), limit)
    total += max(0, n - end)
    text = repr(out[:limit].encode("latin-1"))
    return f"{text}…[+{total - limit} bytes]" if total > limit else text


def _redact(s: str, limit: int) -> tuple[str, int]:
    """
    Redact URL passwords among the first ``limit`` output characters.

    Returns the redacted text (at least its first ``limit`` characters) and the length
    the whole redacted text would have.
    """
    n = len(s)
    parts: list[str] = []
    pos = 0  # s[:pos] is handled: its output is in parts
    room = limit  # output characters still visible
    at = -2  # first "@" after the last place searched (-1: none, -2: not searched)
    # Whitespace search state: none in s[ws_from:ws_to]; a space at ws_to if ws_hit.
    ws_from = ws_to = 0
    ws_hit = False
    far = (-1, -1, False)  # (cut, at, whitespace in s[cut:at]) last computed
    i = s.find("://", 0, room + 3)
    while i >= 0:
        cut = pos + room  # the source index where the output is cut
        user = _USER.match(s, i + 3, cut)
        if user is None:  # no ":" before "/", a space or the cut: no visible password
            i = s.find("://", i + 3, cut + 3)
            continue
        colon = user.end() - 1
        if at < colon:
            if at == -1:
                break  # no "@" anywhere after an earlier point: no password after it
            at = s.find("@", colon + 1)
            if at < 0:
                break
        # Is there whitespace in s[colon + 1 : end)? Searched up to the cut only, with
        # one pointer for all URLs (linear): beyond the cut see below.
        end = min(at, cut)
        start = colon + 1
        if ws_hit and start <= ws_to:
            spaced = ws_to < end
        else:
            if not (ws_from <= start <= ws_to):
                ws_from = ws_to = start
                ws_hit = False
            if ws_to < end:
                found = _SPACE.search(s, ws_to, end)
                if found is None:
                    ws_to = end
                else:
                    ws_to = found.start()
                    ws_hit = True
            spaced = ws_hit and ws_to < end
        if not spaced and at > cut and room > start - pos + _R:
            # The password runs past the cut, and text after it would be shown: it is
            # a password only if no whitespace lies beyond the cut either.
            if far[0] != cut or far[1] != at:
                far = (cut, at, _has_space(s, cut, at))
            spaced = far[2]
        if spaced or _PORT.match(s, start, at) is not None:
            i = s.find("://", start, cut + 3)
            continue
        parts.append(s[pos:start])
        parts.append(REDACTED)
        room -= start - pos + _R
        pos = at
        if room <= 0:
            break
        # An "@" further in the host part still belongs to the password (urllib's
        # reading): move to the last one. Each pass scans at most the visible text
        # after pos, or jumps to the next "@" of the same host part: linear.
        while True:
            cut = pos + room  # where the output is now cut, in the source
            end = _HOST.match(s, pos + 1, cut + 1).end()  # type: ignore[union-attr]
            last = s.rfind("@", pos + 1, end)
            if last >= 0:
                pos = last
                continue
            if end > cut and end < n:
                more = s.find("@", end)
                if more >= 0 and _HOST_END.search(s, end, more) is None:
                    pos = more
                    continue
            break
        i = s.find("://", pos, pos + room + 3)
    total = (limit - room) + (n - pos)
    if not parts:
        return s[: limit + 1] if total > limit else s, total
    if room > 0:
        parts.append(s[pos : pos + room + 1])
    return "".join(parts), total


# Query parameters whose values are secrets (``?password=…``, ``?sslkey=…``, ``&pwd=…``).
_SECRET_QUERY = re.compile(
    r"[?&;][^=&;#]*(?:pass|pwd|secret|token|key|auth|credential|cookie|session)[^=&;#]*="
    r"([^&;#]*)",
    re.IGNORECASE,
)
_AUTHORITY_END = re.compile(r"[/?#]")
_DELIMITERS = re.compile(r"[@:/?#&;=\[\]]")
# Shorter pieces of a password are not hidden on their own: hiding every "a" of a
# message would make it unreadable, for two characters of a secret at most.
_PIECE = 3


def url_secrets(url: str) -> list[str]:
    """
    Return the parts of a database URL's text that may be secret, as written.

    Read generously, so that no reading of the URL (SQLAlchemy's, urllib's, a
    driver's) shows a secret the others hide: everything from the first ``:`` before
    the last ``@`` to that ``@`` (a password holding an unencoded ``@``, ``/`` or
    ``:``; ``scheme:///:pw@host/db``), a "port" after the last ``@`` that is not a
    number (``user:pw/db``, whose ``@host`` was forgotten), and the values of
    secret-looking query parameters.
    """
    # Without "://" (``user:pw@host/db``) only the user-info reading applies.
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url
    found: list[str] = []
    at = rest.rfind("@")
    if at >= 0:
        colon = rest.find(":", 0, at)
        if colon >= 0:
            found.append(rest[colon + 1 : at])
    end = _AUTHORITY_END.search(rest, at + 1)
    authority = rest[at + 1 : end.start()] if end else rest[at + 1 :]
    if authority and sep:
        # After an IPv6 literal's "]"; a "[" elsewhere is no literal.
        host_port = authority.partition("]")[2] if authority[0] == "[" else authority
        port = host_port.partition(":")[2]
        if not port.isdigit():
            found.append(port)
    found += [m[1] for m in _SECRET_QUERY.finditer(url)]
    from urllib.parse import quote, quote_plus, unquote

    secrets = {x for x in found if x}
    for x in list(secrets):
        # Each piece between delimiters too: a reader that stops at one shows the rest
        # elsewhere (``Can't connect to server on 'ss@host'``, a database ``ss``).
        secrets.update(p for p in _DELIMITERS.split(x) if len(p) >= _PIECE)
    for x in list(secrets):
        # Also as a reader that decoded it would show it, and as a URL renderer
        # (SQLAlchemy's: a database name quoted with " +/" safe, query values
        # quote_plus'd) would.
        secrets |= {unquote(x), quote(x, safe=" +"), quote(x, safe=" +/"), quote_plus(x)}
    return sorted(secrets, key=len, reverse=True)


def hide_url_secrets(text: str, url: str) -> str:
    """
    Return ``text`` (a message that may quote ``url`` or parts of it) with every
    secret part of ``url`` replaced by ``***``.
    """
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def mask_url(url: str) -> str:
    """
    Return a database URL's text for messages: its password and secret-looking
    query values shown as ``***``, however the URL is malformed.
    """
    return hide_url_secrets(url, url)
