"""
Nothing on disk may wedge the pipeline (issue #14, section 3): arbitrary bytes and
mutated valid lines fed to the spill replayer, ``read_logs`` and ``asynctrack
stats``/``show``. No exception escapes; each line that cannot be decoded — whatever
decoding it raises, not only ``ValueError`` — is skipped and counted
(``stats().corrupt``, ``on_error``, the CLI's skipped lines), and every valid line is
delivered exactly once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import MemorySink
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_logs
from asynctrack._core.runtime import RUNTIME
from asynctrack.cli.commands import main
from asynctrack.cli.stats import is_sqlite_header
from asynctrack.testing import capture

tr = asynctrack.get_tracker("rel.fuzz_lines")


@tr.probe
def handler(n: int, note: Any = None) -> int:
    asynctrack.add_info("user", f"u{n % 3}")
    return inner(n)


@tr.probe
def inner(n: int) -> int:
    asynctrack.add_data("n", n)
    return n


def _valid_lines() -> list[bytes]:
    with capture() as logs:
        for i in range(6):
            handler(i, note={"deep": [i, str(i)], "big": 2**70 + i})
    return encode_logs(list(logs)).splitlines()


VALID = _valid_lines()

#: Members of the class the issue names, and their neighbours.
HOSTILE = [
    b'{"id": "x", "duration_us": 1e999, "calls": []}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"1e999",
    b"-" + b"9" * 5000,
    b"null",
    b'"text"',
    b"[]",
    b"{}",
    b"\xff\xfe\x00",
    b'{"id": "\\ud800"}',
    # The SQLite magic alone (a JSON-lines file, read as one), and a whole database
    # header with nothing after it (a broken database, refused in one line).
    b"SQLite format 3\x00",
    b"SQLite format 3\x00" + bytes.fromhex("1000010100402020") + bytes(76),
]

_NUMBER = re.compile(rb"-?\d+(\.\d+)?")
_NUMBERS = [b"1e999", b"-1e999", b"9223372036854775808", b"1" + b"0" * 5000, b"NaN", b"0.5"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """
    A valid line with one mutation: a byte changed, cut, bytes inserted, a number
    replaced by a hostile one, a value replaced by deep nesting.
    """
    line = draw(st.sampled_from(VALID))
    kind = draw(st.sampled_from(["flip", "cut", "insert", "number", "nest", "type"]))
    at = draw(st.integers(0, len(line)))
    if kind == "flip" and at < len(line):
        return line[:at] + bytes([draw(st.integers(0, 255))]) + line[at + 1 :]
    if kind == "cut":
        return line[:at]
    if kind == "insert":
        return line[:at] + draw(st.binary(max_size=8)) + line[at:]
    if kind == "number":
        spans = [m.span() for m in _NUMBER.finditer(line)]
        if spans:
            a, b = draw(st.sampled_from(spans))
            return line[:a] + draw(st.sampled_from(_NUMBERS)) + line[b:]
    if kind == "nest":
        depth = draw(st.integers(1, 3000))
        return line.replace(b'"data":{}', b'"data":' + b"[" * depth + b"]" * depth, 1)
    if kind == "type":
        field = draw(st.sampled_from([b"calls", b"info", b"started_at", b"duration_us", b"id"]))
        return re.sub(
            rb'"' + field + rb'":', b'"' + field + b'":' + b"[1,{}]" + b',"_x":', line, count=1
        )
    return line


lines = st.lists(
    st.one_of(
        st.sampled_from(VALID),
        st.sampled_from(HOSTILE),
        mutated(),
        st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    ),
    max_size=12,
)


def _split(content: bytes) -> tuple[list[bytes], list[bytes]]:
    """
    The file's lines that decode and those that do not (blank lines are neither).
    """
    good, bad = [], []
    for line in content.split(b"\n"):
        if not line.strip():
            continue
        try:
            decode_line(line)
        except ValueError:
            bad.append(line)
        else:
            good.append(line)
    return good, bad


def _write(directory: Path, name: str, chosen: list[bytes]) -> tuple[Path, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    content = b"".join(line + b"\n" for line in chosen)
    path = directory / name
    path.write_bytes(content)
    return path, content


class Named(MemorySink):
    """A MemorySink whose name selects the spill file it replays."""

    @property
    def name(self) -> str:
        return "fuzz"


_FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestDecodeLine:
    @pytest.mark.parametrize("line", [pytest.param(x, id=str(i)) for i, x in enumerate(HOSTILE)])
    def test_hostile_members_raise_only_value_error(self, line: bytes) -> None:
        """
        Each line of the issue's class (``1e999``, 5,000 nested brackets, ...) raises
        ``ValueError`` from ``decode_line``, nothing else.
        """
        with pytest.raises(ValueError, match=r"."):
            decode_line(line)

    @_FUZZ
    @given(line=st.one_of(mutated(), st.binary(max_size=200)))
    def test_any_line_decodes_or_raises_value_error(self, line: bytes) -> None:
        """
        Any bytes: ``decode_line`` returns a log or raises ``ValueError``.
        """
        try:
            decode_line(line)
        except ValueError:
            pass


class TestReaders:
    @_FUZZ
    @given(chosen=lines)
    def test_read_logs_skips_and_counts(self, chosen: list[bytes], tmp_path: Path) -> None:
        """
        ``read_logs`` yields every decodable line once, in order, and reports each
        other non-blank line to ``on_error``; nothing escapes.
        """
        path, content = _write(tmp_path / "read", "track.jsonl", chosen)
        good, bad = _split(content)
        errors: list[Any] = []
        got = list(asynctrack.read_logs(path, on_error=lambda *e: errors.append(e)))
        assert [log.to_dict() for log in got] == [decode_line(x).to_dict() for x in good]
        assert len(errors) == len(bad)

    @_FUZZ
    @given(chosen=lines)
    def test_cli_stats_and_show_never_fail(
        self, chosen: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        ``asynctrack stats`` and ``show`` exit 0 on any file: every non-blank line
        is either counted as a log or as a skipped line, every line FileSink wrote
        counted as a log (a line that only the lenient reader accepts, such as a
        duration beyond 64 bits, may be skipped by the statistics). The one
        exception is a file that begins with a whole SQLite header (the magic alone
        is not enough): it is read as a database, and a broken one is refused in
        one line.
        """
        path, content = _write(tmp_path / "cli", "track.jsonl", chosen)
        capsys.readouterr()
        if is_sqlite_header(content[:100]):
            # A file that begins with a whole SQLite header is a database: one that
            # SQLite cannot read is refused with a one-line error.
            for argv in (["stats", str(path)], ["show", str(path)]):
                assert main(argv) in (1, 2)
                err = capsys.readouterr().err
                assert err.startswith("asynctrack: error: ") and err.count("\n") == 1, err
            return
        good = [x for x in content.split(b"\n") if x in VALID]
        nonblank = sum(1 for x in content.split(b"\n") if x.strip())
        assert main(["stats", str(path), "--format", "json", "--by", "user"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["logs"] + report["skipped_lines"] == nonblank
        assert report["logs"] >= len(good)
        code = main(["show", str(path), "--last", "100"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "asynctrack: error" not in out.err


class TestSpillReplay:
    @_FUZZ
    @given(chosen=lines)
    def test_replay_delivers_every_valid_line_once(
        self, chosen: list[bytes], tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """
        A spill file left by an earlier run, holding any mix of valid, mutated and
        random lines, is replayed to the end: each valid line delivered once, each
        other non-blank line counted in ``stats().corrupt``, and the file removed.
        """
        RUNTIME.reset()
        spill_dir = tmp_path_factory.mktemp("spill")
        path, content = _write(spill_dir, "asynctrack-fuzz.spill.jsonl", chosen)
        good, bad = _split(content)
        sink = Named()
        asynctrack.configure(sinks=[sink], spill_dir=spill_dir, max_backoff=0.05)
        asynctrack.flush_sync(timeout=30)
        assert [log.to_dict() for log in sink.logs] == [decode_line(x).to_dict() for x in good]
        st_ = asynctrack.stats()
        assert st_.corrupt == len(bad)
        assert st_.replayed == len(good)
        assert not path.exists()
        RUNTIME.reset()


class TestIssueMembers:
    def test_stats_skips_a_duration_of_2_to_the_63(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        A call whose ``duration_us`` is 2**63 (no 64-bit slot holds it): ``stats``
        exits 0 and counts the line as skipped; the other logs are counted.
        """
        bad = re.sub(rb'"duration_us":\d+', b'"duration_us":9223372036854775808', VALID[0])
        path, _ = _write(tmp_path, "track.jsonl", [VALID[1], bad, VALID[2]])
        assert main(["stats", str(path), "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["logs"] == 2 and report["skipped_lines"] == 1
