"""
The ``asynctrack`` command line: ``stats``, ``show``, ``report`` and ``demo``.

Exit codes: 0 success, 1 runtime failure, 2 usage or input error (bad option,
missing file, bad URL, missing tables). Errors are one line on stderr.

.. versionadded:: 0.1
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from collections.abc import Sequence

__all__ = ["main", "run"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}
DEFAULT_SINK = "sqlite+aiosqlite:///track.db"


def parse_time(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """
    Parse a ``--since``/``--until`` value: ISO 8601 (naive is UTC) or ``30m``, ``2h``, ``7d``.

    Raises:
        argparse.ArgumentTypeError: the value is neither.
    """
    match = _RELATIVE.match(text.strip())
    if match:
        now = now or _dt.datetime.now(_dt.UTC)
        return now - _dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601 (2026-11-28, 2026-11-28T17:35) "
            "or a duration ago (30m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.astimezone(_dt.UTC)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value > 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 86400, got {text!r}")
    return value


_DURATION_UNITS = {"us": 1, "µs": 1, "ms": 1000, "s": 1_000_000, "m": 60_000_000}


def _duration_us(text: str) -> int:
    """
    Parse ``50ms``, ``1.5s``, ``200us`` or ``2m`` (a bare number is milliseconds).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 50ms, 1.5s, 200us, 2m)"
        )
    return round(float(match.group(1)) * _DURATION_UNITS[match.group(2) or "ms"])


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asynctrack")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """
    Return the argument parser of the ``asynctrack`` command.
    """
    parser = argparse.ArgumentParser(
        prog="asynctrack",
        description="Statistics, call trees and HTML reports from asynctrack logs; a demo "
        "application.",
        epilog="SOURCE is a JSON-lines file (rotated files path.1, path.2, ... included), "
        "a quoted glob, an SQLite database file (track.db), or a database URL such as "
        "sqlite:///track.db or "
        "postgresql://user@host/db.",
    )
    parser.add_argument("--version", action="version", version=f"asynctrack {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    stats = sub.add_parser(
        "stats",
        help="activity and latency statistics",
        description="Per-function calls, errors and p50/p95/p99/max durations; "
        "per-key activity with --by.",
    )
    stats.add_argument(
        "source", metavar="SOURCE", help="JSON-lines file, glob, SQLite file or database URL"
    )
    stats.add_argument("--by", metavar="KEY", help="group logs by this info key (e.g. user)")
    stats.add_argument("--since", metavar="T", type=parse_time, help="logs started at or after T")
    stats.add_argument("--until", metavar="T", type=parse_time, help="logs started before T")
    stats.add_argument(
        "--function",
        metavar="PATTERN",
        action="append",
        default=[],
        help="only functions matching this glob (* and ?); repeat for several",
    )
    stats.add_argument("--top", metavar="N", type=_positive, help="only the N busiest rows")
    stats.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format: aligned table (default), json, or csv",
    )
    stats.add_argument(
        "--exact",
        action="store_true",
        help="exact percentiles (default: histogram estimate within 3.2 %%)",
    )
    stats.add_argument("--table-prefix", metavar="P", default="track_", help="SQL table prefix")

    show = sub.add_parser(
        "show",
        help="print logs as call trees",
        description="Print logs as indented call trees with durations, params, data and errors.",
    )
    show.add_argument(
        "source", metavar="SOURCE", help="JSON-lines file, glob, SQLite file or database URL"
    )
    which = show.add_mutually_exclusive_group()
    which.add_argument("--id", metavar="ID", help="the log with this id")
    which.add_argument("--last", metavar="N", type=_positive, help="the N latest logs (10)")
    show.add_argument("--user", metavar="VALUE", help="only logs whose info 'user' is VALUE")
    show.add_argument(
        "--status",
        choices=("ok", "error", "cancelled"),
        help="only logs whose root call ended so",
    )
    show.add_argument(
        "--function", metavar="GLOB", help="only logs with a call matching GLOB (* and ?)"
    )
    show.add_argument(
        "--min-duration",
        metavar="D",
        type=_duration_us,
        help="only logs that lasted at least D (50ms, 1.5s, 200us)",
    )
    show.add_argument("--since", metavar="T", type=parse_time, help="logs started at or after T")
    show.add_argument("--until", metavar="T", type=parse_time, help="logs started before T")
    show.add_argument(
        "--where",
        metavar="KEY=VALUE",
        type=_key_value,
        action="append",
        default=[],
        help="only logs whose info KEY is VALUE (repeatable)",
    )
    show.add_argument(
        "--trace", metavar="TRACE_ID", help="a request with all its continuations, by trace id"
    )
    show.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text trees (default) or JSON lines, one Log.to_dict() per line",
    )
    show.add_argument("--table-prefix", metavar="P", default="track_", help="SQL table prefix")

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML page of the activity",
        description="Write an HTML page (charts, function and user tables, the slowest and "
        "failed requests with their call waterfalls) that opens from disk, offline.",
    )
    report.add_argument("source", metavar="SOURCE", help="JSON-lines file, glob or database URL")
    report.add_argument(
        "-o", "--output", metavar="PATH", default="report.html", help="where to write (report.html)"
    )
    report.add_argument("--by", metavar="KEY", default="user", help="info key of users (user)")
    report.add_argument("--since", metavar="T", type=parse_time, help="logs started at or after T")
    report.add_argument("--until", metavar="T", type=parse_time, help="logs started before T")
    report.add_argument(
        "--function",
        metavar="PATTERN",
        action="append",
        default=[],
        help="only functions matching this glob in the function figures; repeat for several",
    )
    report.add_argument("--title", metavar="TEXT", default="asynctrack report", help="page title")
    report.add_argument("--table-prefix", metavar="P", default="track_", help="SQL table prefix")

    demo = sub.add_parser(
        "demo",
        help="run a simulated collaborative application, then print its stats",
        description="Simulate users of a shared-document editor for a few seconds, "
        "record them with asynctrack, then print the statistics of what was written.",
    )
    demo.add_argument("--users", metavar="N", type=_positive, default=12, help="users (12)")
    demo.add_argument("--seconds", metavar="S", type=_seconds, default=8.0, help="duration (8)")
    demo.add_argument(
        "--sink", metavar="URL", default=DEFAULT_SINK, help=f"where to write ({DEFAULT_SINK})"
    )
    return parser


def _warn(message: str) -> None:
    print(f"asynctrack: warning: {message}", file=sys.stderr)


def _stats(args: argparse.Namespace) -> int:
    from asynctrack.cli.stats import StatsQuery, compute_stats, format_report

    query = StatsQuery(
        by=args.by,
        since=args.since,
        until=args.until,
        functions=tuple(args.function),
        exact=args.exact,
        table_prefix=args.table_prefix,
    )
    report = compute_stats(args.source, query, _warn, top=args.top)
    sys.stdout.write(format_report(report, args.format))
    return 0


def _show(args: argparse.Namespace) -> int:
    from asynctrack.cli.stats import LogSelection, render_logs, select_logs

    selection = LogSelection(
        id=args.id,
        # A trace is shown whole unless --last says otherwise.
        last=args.last or (10_000 if args.trace is not None else 10),
        user=args.user,
        status=args.status,
        function=args.function,
        min_duration_us=args.min_duration,
        since=args.since,
        until=args.until,
        where=tuple(args.where),
        trace=args.trace,
        table_prefix=args.table_prefix,
    )
    logs = select_logs(args.source, selection, _warn)
    if args.format == "json":
        from asynctrack._core.encode import encode_logs

        # The bytes FileSink writes: exact (ints beyond 64 bits included), one per line.
        sys.stdout.write(encode_logs(logs).decode())
    else:
        sys.stdout.write(render_logs(logs))
    if args.id is not None and not logs:
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from asynctrack.cli.report import ReportQuery, write_report
    from asynctrack.cli.stats import StatsQuery

    query = ReportQuery(
        stats=StatsQuery(
            by=args.by,
            since=args.since,
            until=args.until,
            functions=tuple(args.function),
            table_prefix=args.table_prefix,
        ),
        title=args.title,
    )
    try:
        write_report(args.source, args.output, query, _warn)
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"asynctrack: error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(args.output)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from asynctrack.cli.demo import run_demo

    return run_demo(users=args.users, seconds=args.seconds, sink=args.sink)


#: Options whose value is data (an info value, a glob): it may start with "-".
_DATA_OPTIONS = frozenset({"--user", "--where", "--function", "--trace", "--by", "--id"})


def _joined(argv: list[str]) -> list[str]:
    # argparse takes "--user -1e+16" for two options; "--user=-1e+16" is unambiguous.
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _DATA_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        if arg == "--":
            out += argv[i:]
            break
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code.
    """
    from asynctrack.cli.stats import SourceError

    parser = build_parser()
    try:
        args = parser.parse_args(_joined(sys.argv[1:] if argv is None else list(argv)))
        if args.command == "show" and args.id is not None:
            for name in ("user", "status", "function", "min_duration", "since", "until", "trace"):
                if getattr(args, name) is not None:
                    flag = "--" + name.replace("_", "-")
                    parser.error(f"argument {flag}: not allowed with argument --id")
            if args.where:
                parser.error("argument --where: not allowed with argument --id")
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    handler = {"stats": _stats, "show": _show, "report": _report, "demo": _demo}[args.command]
    try:
        return handler(args)
    except SourceError as exc:
        print(f"asynctrack: error: {_hide(str(exc), args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asynctrack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`asynctrack show ... | head`): not an error worth a trace.
        return 0
    except Exception as exc:
        text = _hide(str(exc), args).strip().splitlines()
        detail = f": {text[0]}" if text else ""
        print(f"asynctrack: error: {type(exc).__name__}{detail}", file=sys.stderr)
        return 1


def _hide(message: str, args: argparse.Namespace) -> str:
    # A driver's error may quote any part of the URL, including a password it misread
    # as a host or a database name: hide every secret part of the URL as written.
    from asynctrack._core.redact import hide_url_secrets

    url = getattr(args, "source", None) or getattr(args, "sink", None)
    return hide_url_secrets(message, url) if isinstance(url, str) else message


def run() -> None:
    """
    Entry point of the ``asynctrack`` console script.
    """
    sys.exit(main())
