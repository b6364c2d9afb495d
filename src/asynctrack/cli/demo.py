"""
``asynctrack demo``: a simulated collaborative application, tracked for real.

A shared-document editor: concurrent users log in, open, edit, comment on, search
and share documents. Each user action is one probed top-level call, hence one log,
with nested probed calls beneath it (permission checks, storage, the search index,
notifications sent from tasks that outlive the request) and a realistic share of
failures (wrong passwords, denied permissions, storage timeouts, conflicts). Users
are recorded with ``add_info("user", ...)``, results with ``add_data``.

The logs go through the real pipeline to a SQL sink (SQLite by default) or a
JSON-lines file, then the statistics of what was written are printed.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import asynctrack

__all__ = ["Editor", "run_demo", "simulate"]

api = asynctrack.get_tracker("demo.api")
auth = asynctrack.get_tracker("demo.auth")
docs = asynctrack.get_tracker("demo.docs")
storage = asynctrack.get_tracker("demo.storage")
search_index = asynctrack.get_tracker("demo.search")
notify = asynctrack.get_tracker("demo.notify")

_NAMES = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter yvonne"
).split()
_WORDS = (
    "budget roadmap launch minutes draft review design api onboarding retro hiring "
    "pricing security incident report plan notes spec faq"
).split()


class ConflictError(Exception):
    """Raised when an edit is based on an outdated version of the document."""


class StorageTimeoutError(TimeoutError):
    """Raised when the (simulated) storage does not answer in time."""


@dataclass
class Document:
    """One shared document."""

    id: int
    title: str
    owner: str
    text: str = ""
    version: int = 0
    shared_with: set[str] = field(default_factory=set)
    comments: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Session:
    """A logged-in user."""

    user: str
    token: str


class Editor:
    """
    The simulated application: documents in memory, latencies from a random source.

    Args:
        rnd: the random source of latencies and failures.
        speed: latency multiplier (smaller is faster; tests use 0.05).
    """

    def __init__(self, rnd: random.Random, speed: float = 1.0) -> None:
        self.rnd = rnd
        self.speed = speed
        self.documents: dict[int, Document] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.actions = 0
        self.failures = 0

    async def pause(self, ms: float) -> None:
        """Sleep for a log-normally distributed time around ``ms`` milliseconds."""
        await asyncio.sleep(self.rnd.lognormvariate(0, 0.5) * ms * self.speed / 1000)

    # -- storage (nested, called by the document functions) --------------------------
    @storage.probe(fname="demo.storage.load")
    async def load(self, doc_id: int) -> Document:
        await self.pause(2)
        if self.rnd.random() < 0.01:
            raise StorageTimeoutError(f"load of document {doc_id} timed out")
        return self.documents[doc_id]

    @storage.probe(fname="demo.storage.save")
    async def save(self, doc_id: int, version: int) -> None:
        await self.pause(4)
        if self.rnd.random() < 0.015:
            raise StorageTimeoutError(f"save of document {doc_id} v{version} timed out")

    # -- the actions (each one a top-level call: one log) ------------------------------
    @auth.probe(fname="demo.auth.login")
    async def login(self, user: str, password: str) -> Session:
        await self.pause(15)
        self.check_password(user, password)
        asynctrack.add_data("method", "password")
        return Session(user, f"tok-{user}-{self.rnd.randrange(10**6)}")

    @auth.probe(fname="demo.auth.check_password")
    def check_password(self, user: str, password: str) -> None:
        # A sync probe inside an async one; the password is recorded as "[REDACTED]".
        hashlib.pbkdf2_hmac("sha256", password.encode(), user.encode(), 500)
        if self.rnd.random() < 0.04:
            raise PermissionError(f"wrong password for {user}")

    @docs.probe(fname="demo.docs.create")
    async def create_document(self, session: Session, title: str) -> int:
        doc = Document(len(self.documents) + 1, title, session.user)
        self.documents[doc.id] = doc
        await self.save(doc.id, 0)
        asynctrack.add_data("doc_id", doc.id)
        return doc.id

    @docs.probe(fname="demo.docs.check_permission")
    def check_permission(self, user: str, doc_id: int, action: str) -> None:
        doc = self.documents[doc_id]
        if user != doc.owner and user not in doc.shared_with and action != "read":
            raise PermissionError(f"{user} may not {action} document {doc_id}")

    @docs.probe(fname="demo.docs.open")
    async def open_document(self, session: Session, doc_id: int) -> Document:
        doc = await self.load(doc_id)
        self.check_permission(session.user, doc_id, "read")
        asynctrack.add_data("version", doc.version)
        asynctrack.add_data("chars", len(doc.text))
        return doc

    @docs.probe(fname="demo.docs.edit", exc=("text",))
    async def edit_document(self, session: Session, doc_id: int, text: str) -> int:
        doc = await self.open_document(session, doc_id)
        self.check_permission(session.user, doc_id, "edit")
        base = doc.version
        await self.pause(3)
        if self.rnd.random() < 0.03:
            raise ConflictError(f"document {doc_id} changed since version {base}")
        doc.text += text
        doc.version += 1
        await self.save(doc_id, doc.version)
        asynctrack.add_data("version", doc.version)
        await self._notify_all(doc, session.user, "edit")
        return doc.version

    @docs.probe(fname="demo.docs.comment", exc=("text",))
    async def comment(self, session: Session, doc_id: int, text: str) -> None:
        doc = await self.open_document(session, doc_id)
        doc.comments.append((session.user, text))
        await self.save(doc_id, doc.version)
        asynctrack.add_data("comments", len(doc.comments))
        await self._notify_all(doc, session.user, "comment")

    @docs.probe(fname="demo.docs.share")
    async def share(self, session: Session, doc_id: int, with_user: str) -> None:
        doc = await self.load(doc_id)
        if doc.owner != session.user:
            raise PermissionError(f"only {doc.owner} can share document {doc_id}")
        doc.shared_with.add(with_user)
        await self.save(doc_id, doc.version)
        await self._notify_all(doc, session.user, "share")

    @search_index.probe(fname="demo.search.search")
    async def search(self, session: Session, query: str) -> list[int]:
        hits = await asyncio.to_thread(self.query_index, query)
        await self.pause(5)
        asynctrack.add_data("hits", len(hits))
        return hits

    @search_index.probe(fname="demo.search.query_index")
    def query_index(self, query: str) -> list[int]:
        # Runs in a worker thread: the context (and the log) follows asyncio.to_thread.
        return [d.id for d in list(self.documents.values()) if query in d.title][:20]

    # -- notifications: tasks that outlive the request, still in its log ---------------
    async def _notify_all(self, doc: Document, author: str, event: str) -> None:
        # Fire and forget: the request does not wait for the pushes. They start before
        # it returns, so they join its log, which completes when the last one ends.
        for user in sorted({doc.owner, *doc.shared_with} - {author}):
            task = asyncio.create_task(self.send_notification(user, doc.id, event))
            self.tasks.add(task)
            task.add_done_callback(self._forget)
        await asyncio.sleep(0)

    def _forget(self, task: asyncio.Task[None]) -> None:
        # A failed notification is recorded in the log; the app just moves on.
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()

    @notify.probe(fname="demo.notify.send")
    async def send_notification(self, user: str, doc_id: int, event: str) -> None:
        await self.pause(20)
        if self.rnd.random() < 0.02:
            raise ConnectionError(f"push service unreachable for {user}")

    # -- one simulated user ---------------------------------------------------------------
    async def user_session(self, name: str, deadline: float) -> None:
        """
        Log in, then act until ``deadline`` (``time.monotonic()``): one log per action.
        """
        rnd = self.rnd
        asynctrack.add_info("user", name)  # outside any log: every later log gets it
        asynctrack.add_info("plan", rnd.choice(("free", "team", "enterprise")))
        session = None
        while time.monotonic() < deadline:
            try:
                if session is None:
                    session = await self.login(name, "correct horse")
                elif not any(d.owner == name for d in self.documents.values()):
                    await self.create_document(session, f"{rnd.choice(_WORDS)} {name}")
                else:
                    await self._act(session)
            except Exception:
                self.failures += 1  # the app answers 4xx/5xx; the log recorded it
            self.actions += 1
            await self.pause(40)

    def _pick(self, user: str, own: bool) -> int:
        # Mostly documents the user may write to (their own, or shared with them); now
        # and then any document, which is how permission errors happen.
        allowed = [
            d.id
            for d in self.documents.values()
            if d.owner == user or (not own and user in d.shared_with)
        ]
        if allowed and self.rnd.random() < 0.92:
            return self.rnd.choice(allowed)
        return self.rnd.randrange(1, len(self.documents) + 1) if self.documents else 0

    async def _act(self, session: Session) -> None:
        rnd = self.rnd
        action = rnd.choices(
            ("open", "edit", "comment", "search", "share", "create"), (35, 25, 12, 18, 6, 4)
        )[0]
        doc_id = self._pick(session.user, own=action == "share")
        if action == "create" or not doc_id:
            await self.create_document(session, f"{rnd.choice(_WORDS)} {rnd.choice(_WORDS)}")
        elif action == "open":
            await self.open_document(session, doc_id)
        elif action == "edit":
            await self.edit_document(session, doc_id, rnd.choice(_WORDS) + " ")
        elif action == "comment":
            await self.comment(session, doc_id, f"{rnd.choice(_WORDS)}?")
        elif action == "search":
            await self.search(session, rnd.choice(_WORDS))
        else:
            await self.share(session, doc_id, rnd.choice(_NAMES))


def user_names(n: int) -> list[str]:
    """Return ``n`` distinct user names: alice, bob, ..., alice2, bob2, ..."""
    return [
        _NAMES[i % len(_NAMES)] + (str(i // len(_NAMES) + 1) if i >= len(_NAMES) else "")
        for i in range(n)
    ]


async def simulate(
    users: int,
    seconds: float,
    *,
    seed: int | None = None,
    speed: float = 1.0,
    progress: TextIO | None = None,
) -> Editor:
    """
    Run ``users`` concurrent simulated users for ``seconds``; return the application.

    Args:
        users: number of concurrent users.
        seconds: how long they act.
        seed: seed of the random source (None: a fresh one).
        speed: latency multiplier.
        progress: where to draw a one-line progress counter (None: nowhere).
    """
    editor = Editor(random.Random(seed), speed)
    deadline = time.monotonic() + seconds
    ticker = asyncio.create_task(_progress(editor, users, deadline, progress))
    try:
        await asyncio.gather(*(editor.user_session(name, deadline) for name in user_names(users)))
        while editor.tasks:  # notifications still being sent
            await asyncio.gather(*list(editor.tasks), return_exceptions=True)
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    if progress is not None:
        tty = progress.isatty()
        done = _status(editor, users, 0.0, "done")
        progress.write(f"\r{done}\033[K\n" if tty else f"{done}\n")
        progress.flush()
    return editor


def _status(editor: Editor, users: int, left: float, what: str) -> str:
    return f"  demo: {users} users · {editor.actions:,} actions · {editor.failures:,} failed · " + (
        f"{left:4.1f} s left" if what == "left" else what
    )


async def _progress(editor: Editor, users: int, deadline: float, out: TextIO | None) -> None:
    if out is None:
        return
    # A terminal gets one line redrawn in place; a log file a line every two seconds.
    tty = out.isatty()
    while True:
        left = max(0.0, deadline - time.monotonic())
        line = _status(editor, users, left, "left")
        out.write("\r" + line + "\033[K" if tty else line + "\n")
        out.flush()
        await asyncio.sleep(0.2 if tty else 2.0)


async def _run(users: int, seconds: float, sink: str, out: TextIO) -> None:
    if "://" in sink:
        target: asynctrack.Sink = asynctrack.SQLSink(sink, columns={"user": "string(64)"})
    else:
        target = asynctrack.FileSink(sink)
    asynctrack.configure(sinks=[target])
    try:
        out.write(f"Simulating {users} users of a shared-document editor for {seconds:g} s…\n")
        out.flush()
        await simulate(users, seconds, progress=out)
    finally:
        await asynctrack.shutdown()


def run_demo(users: int, seconds: float, sink: str, out: TextIO | None = None) -> int:
    """
    Run the demo: simulate, write through the pipeline, print the statistics.

    Args:
        users: concurrent simulated users.
        seconds: how long they act.
        sink: a database URL (``sqlite+aiosqlite:///track.db``) or a JSON-lines path.
        out: where progress goes (default stderr); the statistics go to stdout.

    Returns:
        The exit code (0).
    """
    from asynctrack.cli.stats import StatsQuery, compute_stats, format_report

    progress = out if out is not None else sys.stderr
    started = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=1)
    asyncio.run(_run(users, seconds, sink, progress))
    written = asynctrack.stats().written
    progress.write(f"  wrote {sum(written.values()):,} logs to {sink}\n\n")
    progress.flush()
    query = StatsQuery(by="user", since=started)
    report = compute_stats(sink, query, lambda m: print(m, file=sys.stderr))
    sys.stdout.write(format_report(report, "table"))
    source = sink.replace("+aiosqlite", "") if "://" in sink else sink
    sys.stdout.write(
        "\nExplore further:\n"
        f"  asynctrack stats {source} --by user --since 1h\n"
        f"  asynctrack stats {source} --function 'demo.docs.*' --format json\n"
        f"  asynctrack show {source} --last 3\n"
    )
    return 0
