"""
Errors of the trace model v2 (#17): the traceback on the innermost probed call only,
bounded by ``max_traceback_frames``, a ``raise … from`` cause appended to ``error``,
passwords in URLs scrubbed from both.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import MemorySink
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.tracebacks")


class Boom(Exception):
    pass


def _chain(plan: list[bool], i: int = 0) -> None:
    # plan[i]: whether level i is a probed call; the last level raises.
    if i == len(plan):
        raise Boom("bottom")
    (_probed if plan[i] else _plain)(plan, i)


@tr.probe(exc=("plan",))
def _probed(plan: list[bool], i: int) -> None:
    _chain(plan, i + 1)


def _plain(plan: list[bool], i: int) -> None:
    _chain(plan, i + 1)


def _mixed(plan: list[int], i: int = 0) -> None:
    # plan[i]: 0 a plain function, 1 a probed call, 2 a ``tracker.call`` block.
    if i == len(plan):
        raise Boom("bottom")
    if plan[i] == 1:
        _probed_mixed(plan, i)
    elif plan[i] == 2:
        with tr.call("block"):
            _mixed(plan, i + 1)
    else:
        _mixed(plan, i + 1)


@tr.probe(exc=("plan",))
def _probed_mixed(plan: list[int], i: int) -> None:
    _mixed(plan, i + 1)


class TestInnermostOnly:
    @settings(max_examples=80, deadline=None)
    @given(plan=st.lists(st.booleans(), min_size=1, max_size=12).filter(any))
    def test_only_the_innermost_probed_call_has_the_traceback(self, plan: list[bool]) -> None:
        """
        Whatever mix of probed and plain functions an exception passes through, every
        probed call records the error, and only the innermost one its traceback: from
        its own function down to the raise, innermost last.
        """
        with capture() as logs:
            with pytest.raises(Boom):
                _chain(plan)
        (log,) = logs
        calls = log.calls
        assert len(calls) == sum(plan)
        assert all((c.status, c.error) == ("error", "Boom: bottom") for c in calls)
        assert [c.traceback is not None for c in calls] == [False] * (len(calls) - 1) + [True]
        tb = calls[-1].traceback
        assert tb is not None
        inner = max(i for i, p in enumerate(plan) if p)
        names = [f for _, _, f in tb]
        # The innermost probed function, the plain ones below it, the raise.
        below = len(plan) - inner - 1
        assert names == ["_probed", *["_chain", "_plain"] * below, "_chain"]
        assert all(file == __file__ for file, _, _ in tb)

    @settings(max_examples=80, deadline=None)
    @given(plan=st.lists(st.integers(0, 2), min_size=1, max_size=12).filter(any))
    def test_tracker_call_blocks_count_as_calls(self, plan: list[int]) -> None:
        """
        With ``tracker.call`` blocks mixed in (as the SQLAlchemy and httpx integrations
        record their calls), still only the innermost tracked call has the traceback,
        ending at the raise; the calls it rose through keep the error alone.
        """
        with capture() as logs:
            with pytest.raises(Boom):
                _mixed(plan)
        (log,) = logs
        calls = log.calls
        assert len(calls) == sum(1 for p in plan if p)
        assert all((c.status, c.error) == ("error", "Boom: bottom") for c in calls)
        assert [c.traceback is not None for c in calls] == [False] * (len(calls) - 1) + [True]
        tb = calls[-1].traceback
        assert tb is not None and tb[-1][2] == "_mixed"

    @pytest.mark.anyio
    async def test_innermost_is_found_across_tasks(self) -> None:
        """
        An exception raised in a probed call inside a task and re-raised by gather in
        the parent: the task's call keeps the traceback, the parent has none.
        """

        @tr.probe
        async def child() -> None:
            await asyncio.sleep(0)
            raise Boom("in task")

        @tr.probe
        async def parent() -> None:
            await asyncio.gather(child())

        with capture() as logs:
            with pytest.raises(Boom):
                await parent()
        (log,) = logs
        outer, inner = log.calls
        assert inner.parent == outer.seq
        assert outer.traceback is None and outer.error == "Boom: in task"
        assert inner.traceback is not None and inner.traceback[-1][2] == "child"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestErrorText:
    def test_cause_is_appended_and_passwords_scrubbed(self) -> None:
        """
        ``raise … from`` appends '; caused by Type: message' (its own cause too); URL
        passwords are scrubbed from every part.
        """

        @tr.probe
        def connect() -> None:
            try:
                try:
                    raise OSError("refused by postgresql://app:hunter2@db/prod")
                except OSError as exc:
                    raise KeyError("pool") from exc
            except KeyError as exc:
                raise RuntimeError("no database at mysql://root:s3cret@h/x") from exc

        with capture() as logs:
            with pytest.raises(RuntimeError):
                connect()
        error = logs[0].calls[0].error
        assert error is not None
        assert error.startswith("RuntimeError: no database at mysql://root:")
        assert "; caused by KeyError: 'pool'; caused by OSError: refused by" in error
        assert "hunter2" not in error and "s3cret" not in error

    def test_cancellation_has_no_traceback(self) -> None:
        """
        A cancelled call is recorded as cancelled, without a traceback.
        """

        @tr.probe
        async def waits() -> None:
            await asyncio.sleep(10)

        async def main() -> None:
            task = asyncio.ensure_future(waits())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        with capture() as logs:
            asyncio.run(main())
        (call,) = logs[0].calls
        assert call.status == "cancelled" and call.traceback is None


class TestMaxFrames:
    @pytest.mark.parametrize(("limit", "kept"), [(2, 2), (0, 0), (30, 12)])
    def test_max_traceback_frames(self, limit: int, kept: int) -> None:
        """
        max_traceback_frames keeps the innermost frames (0 records none).
        """
        asynctrack.configure(sinks=[MemorySink()], max_traceback_frames=limit)
        with capture() as logs:
            with pytest.raises(Boom):
                _chain([True] + [False] * 5)
        tb = logs[0].calls[0].traceback
        assert (len(tb) if tb else 0) == kept
        if tb:
            assert tb[-1][2] == "_chain"

    def test_bad_value_is_a_config_error(self) -> None:
        """
        A negative or non-integer max_traceback_frames is a ConfigError naming it.
        """
        for bad in (-1, "many", 2.5):
            with pytest.raises(asynctrack.ConfigError, match="max_traceback_frames"):
                asynctrack.configure(sinks=[MemorySink()], max_traceback_frames=bad)


@tr.probe(level=asynctrack.DEBUG)
def _quiet_probe() -> None:
    raise Boom("below the threshold")


@tr.probe
def _tracked_caller() -> None:
    _quiet_probe()


def test_a_probe_below_the_threshold_leaves_the_traceback_to_its_caller() -> None:
    """
    A probed call that is not tracked (below the threshold) records nothing, so the
    tracked call above it is the innermost one and keeps the traceback.
    """
    with capture() as logs:
        with pytest.raises(Boom):
            _tracked_caller()
    (call,) = logs[0].calls
    assert call.traceback is not None
    assert [f for _, _, f in call.traceback] == ["_tracked_caller", "_quiet_probe"]
