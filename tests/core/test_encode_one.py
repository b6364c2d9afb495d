"""
One log encoded alone (``encode_log``, the path of a log encoded where it completes)
gives the bytes of the batch encoder (``encode_logs``) whatever the log: the single-log
path takes the usual log and hands every other to the batch path (docs/pipeline.md,
"Logs encoded at completion").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._core import encode
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_log, encode_logs
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.encode_one")

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["\u2028", "a\u2029b", "\x85", "https://x/?token=1", "x" * 5000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@tr.probe
def node(value: Any, children: list[Any], data: bool, fail: bool) -> None:
    if data:
        tr.add_data("d", value)
    for child in children:
        try:
            node(*child)
        except ValueError:
            pass
    if fail:
        raise ValueError("failed")


def trees(depth: int) -> st.SearchStrategy[Any]:
    children = st.just([]) if depth == 0 else st.lists(trees(depth - 1), max_size=3)
    return st.tuples(VALUES, children, st.booleans(), st.booleans())


def make_log(tree: Any, info: dict[str, Any], remote: bool, late: bool) -> Log:
    with capture() as logs:
        with tr.call("root") as call:
            if remote:
                call.link_remote("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            if info:
                call.add_info(**info)
            try:
                node(*tree)
            except ValueError:
                pass
    (log,) = logs
    if late:
        # A log that ended before its last call did (``_t1`` unset): the batch path
        # takes the end of the latest call.
        log._t1 = log._t0
    return log


class TestSameBytesAsTheBatch:
    @settings(max_examples=150, deadline=None)
    @given(
        tree=trees(2),
        info=st.dictionaries(st.sampled_from(["user", "path", "status", "x"]), VALUES),
        remote=st.booleans(),
        late=st.booleans(),
        second=st.integers(min_value=-2, max_value=2),
        number=st.sampled_from([None, 1, 2**47, 2**48 + 5]),
    )
    def test_any_log(
        self,
        tree: Any,
        info: dict[str, Any],
        remote: bool,
        late: bool,
        second: int,
        number: int | None,
    ) -> None:
        """
        Property: for logs of any shape (nesting, data, failures, info values with line
        breaks or beyond the limits, a remote parent, a log number past 48 bits, start
        times in other seconds), one log alone encodes to the batch encoder's bytes,
        before and after other lines were encoded in the same thread.
        """
        log = make_log(tree, info, remote, late)
        log._wall_ns += second * 1_000_000_000
        if number is not None:
            log._number = number
        other = make_log(tree, {}, False, False)
        alone = encode_log(log)
        assert alone.endswith(b"\n") and alone.count(b"\n") == 1
        # Batch encodings in another scratch state (threads have their own).
        assert encode_logs([log]) == alone
        assert encode_logs([other, log]) == encode_logs([other]) + alone
        assert encode_log(other) + encode_log(log) == encode_logs([other, log])
        assert decode_line(alone).to_dict() == decode_line(encode_logs([log])).to_dict()

    def test_the_usual_log_takes_the_single_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        The usual log (calls ended well, no data) never reaches the batch loop; one
        with data does, and gets its defaults back for the next line.
        """
        plain = make_log(("v", [("w", [], False, False)], False, False), {"a": 1}, False, False)
        with_data = make_log(("v", [], True, False), {}, False, False)
        expected = encode_logs([plain]), encode_logs([with_data])
        seen: list[int] = []
        batch = encode._encode

        def spy(logs: Any, scratch: Any) -> bytes:
            seen.append(len(list(logs)))
            return batch(logs, scratch)

        monkeypatch.setattr(encode, "_encode", spy)
        assert encode_log(plain) == expected[0]
        assert seen == []
        assert encode_log(with_data) == expected[1]
        assert seen == [1]
        assert encode_log(plain) == expected[0]  # "data" is {} again
        assert seen == [1]

    def test_a_log_still_running_is_written_incomplete(self) -> None:
        """
        A log snapshotted while its calls run (shutdown) has calls without an end: the
        batch path writes it, the same bytes either way.
        """

        async def main() -> Log:
            started = asyncio.Event()
            release = asyncio.Event()

            @tr.probe
            async def slow() -> None:
                started.set()
                await release.wait()

            task = asyncio.ensure_future(slow())
            await started.wait()
            from asynctrack._core import calltree

            (log,) = [lg for lg in calltree.open_logs() if lg._raw[0][0].endswith("slow")]
            snap = log._snapshot_incomplete(time.perf_counter_ns())
            release.set()
            await task
            assert snap is not None
            return snap

        with capture():
            log = asyncio.run(main())
        assert log.complete is False
        assert encode_log(log) == encode_logs([log])

    def test_a_stamp_out_of_range_is_refused_by_both_paths(self) -> None:
        """
        A log stamped past the year 9999 cannot be encoded: alone it fails as the batch
        encoder does, whatever second the thread's last line was in (a half-updated
        clock cache gave it the last line's date), and the next line is right.
        """
        import threading

        far = make_log(("v", [], False, False), {}, False, False)
        far._wall_ns = 300_000_000_000 * 10**9
        near = make_log(("v", [], False, False), {}, False, False)

        def outcome(encode_far: Any) -> Any:
            try:
                return encode_far()
            except (OverflowError, ValueError) as exc:
                return type(exc)

        fresh: list[Any] = []
        other = threading.Thread(target=lambda: fresh.append(outcome(lambda: encode_logs([far]))))
        other.start()
        other.join()
        for encode_far in (lambda: encode_log(far), lambda: encode_logs([far])):
            encode_log(near)  # the thread's scratch holds near's second
            assert outcome(encode_far) == fresh[0]
            assert encode_log(near) == encode_logs([near])
