"""
Tests of ``configure()``: validation, environment variables, reconfiguration at run time.
"""

from __future__ import annotations

import inspect
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import ConfigError, FileSink, Log, MemorySink, Sink, read_logs
from asynctrack._config.options import (
    CONFIG_ENV,
    ENV_VARS,
    MIN_PERIOD,
    OPTIONS,
    resolve,
    validate,
)
from tests.conftest import Configure
from tests.helpers import config_docs, wait_for


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Run each test in its own directory with no ASYNCTRACK_* variable set.
    """
    for var in [*ENV_VARS, CONFIG_ENV]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


class StrictSink(Sink):
    """
    Records log ids, and every write that reaches it while it is not open.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self.state = "new"
        self.ids: list[str] = []
        self.violations: list[str] = []
        self.opens = 0

    @property
    def name(self) -> str:
        return self._name

    async def open(self) -> None:
        self.state = "open"
        self.opens += 1

    async def write(self, logs: Sequence[Log]) -> None:
        if self.state != "open":
            self.violations.append(f"write of {len(logs)} logs while {self.state}")
            raise RuntimeError(f"{self._name} is {self.state}")
        self.ids.extend(log.id for log in logs)

    async def close(self) -> None:
        self.state = "closed"


class _BytesPath:
    """
    An os.PathLike whose path is bytes, which Path() refuses.
    """

    def __fspath__(self) -> bytes:
        return b"spool"


class TestValidate:
    def test_defaults_complete_every_option(self) -> None:
        """
        validate({}) returns every option, normalised, with its documented default.
        """
        o = validate({})
        assert set(o) == set(OPTIONS)
        assert o["level"] == asynctrack.DEFAULT
        assert o["spill_dir"] == Path(".")
        assert o["sinks"] is None
        assert o["processors"] == ()

    def test_values_are_normalised(self) -> None:
        """
        Level names become ints, paths become Path, redaction entries lower case.
        """
        o = validate(
            {
                "level": "debug",
                "levels": {"shop.db": "INFO", "shop": 25},
                "spill_dir": "spool",
                "redact": ["SSN", "Card"],
                "flush_interval": 1,
            }
        )
        assert o["level"] == asynctrack.DEBUG
        assert o["levels"] == {"shop.db": 20, "shop": 25}
        assert o["spill_dir"] == Path("spool")
        assert o["redact"] == ("ssn", "card")
        assert o["flush_interval"] == 1.0

    def test_unknown_option_names_it_and_lists_accepted(self) -> None:
        """
        An unknown option is a ConfigError naming it, suggesting a close match and
        listing the accepted options.
        """
        with pytest.raises(ConfigError) as info:
            asynctrack.configure(bach_size=10)
        message = str(info.value)
        assert "bach_size" in message
        assert "did you mean 'batch_size'?" in message
        assert "accepted: " in message
        assert "max_queue" in message

    @given(
        option=st.sampled_from(["flush_interval", "max_backoff", "write_timeout"]),
        value=st.one_of(st.floats(), st.integers(-10, 10), st.floats(0, 0.01)),
    )
    @settings(max_examples=200, deadline=None)
    def test_no_period_of_the_pipeline_can_make_it_spin(self, option: str, value: float) -> None:
        """
        The pipeline's own periods (the flush interval, the longest backoff, the
        write timeout) accept only finite values of at least a millisecond: anything
        near 0 would make the idle dispatcher, or the retries of a sink that is down,
        a busy loop taking the host's CPU. Anything else is a ConfigError naming it.
        """
        if isinstance(value, float) and math.isfinite(value) and MIN_PERIOD <= value < 2**63:
            assert validate({option: value})[option] == value
        elif isinstance(value, int) and value >= 1:
            assert validate({option: value})[option] == value
        else:
            with pytest.raises(ConfigError, match=option):
                validate({option: value})

    @pytest.mark.parametrize(
        ("option", "value", "expected"),
        [
            pytest.param("level", "LOUD", "unknown level 'LOUD'", id="level-name"),
            pytest.param("level", 1.5, "must be a Level, an int or a level name", id="level-type"),
            pytest.param("level", True, "not bool", id="level-bool"),
            pytest.param("levels", ["shop"], "a mapping of tracker name to level", id="levels"),
            pytest.param("levels", {"shop": "LOUD"}, "levels['shop']", id="levels-entry"),
            pytest.param("batch_size", 0, "an int >= 1", id="batch_size-range"),
            pytest.param("batch_size", "512", "an int >= 1", id="batch_size-type"),
            pytest.param("max_queue", True, "an int >= 1", id="max_queue-bool"),
            pytest.param("max_string", 3, "an int >= 16", id="max_string"),
            pytest.param("retry_attempts", -1, "an int >= 0", id="retry_attempts"),
            pytest.param("flush_interval", 0, "number of seconds >= 0.001", id="flush_interval"),
            pytest.param("flush_interval", 1e-300, "seconds >= 0.001", id="flush_interval-tiny"),
            pytest.param("max_backoff", 0, "seconds >= 0.001", id="max_backoff-zero"),
            pytest.param("write_timeout", 1e-9, "seconds >= 0.001", id="write_timeout-tiny"),
            pytest.param("exit_timeout", float("inf"), "a finite number", id="exit_timeout-inf"),
            pytest.param("block_timeout", float("nan"), "a finite number", id="nan"),
            pytest.param("write_timeout", "30", "a finite number", id="write_timeout-type"),
            pytest.param("on_full", "wait", "'drop' or 'block'", id="on_full"),
            pytest.param("fsync_spill", 1, "a bool", id="fsync_spill"),
            pytest.param("spill_dir", "", "a directory path", id="spill_dir"),
            pytest.param("spill_dir", _BytesPath(), "a directory path", id="spill_dir-bytes"),
            pytest.param("redact", "password", "a list of str", id="redact-str"),
            pytest.param("redact", ["ok", ""], "non-empty str", id="redact-empty"),
            pytest.param("redact", {"password": True}, "a list of str", id="redact-mapping"),
            pytest.param("tracker_class", object, "a subclass of asynctrack.Tracker", id="tc"),
            pytest.param("processors", print, "a list of callables", id="processors-type"),
            pytest.param("processors", [1], "a list of callables", id="processors-item"),
            pytest.param("sinks", MemorySink(), "a list of asynctrack.Sink", id="sinks-single"),
            pytest.param("sinks", ["file.jsonl"], "sinks[0] must be an asynctrack.Sink", id="s0"),
        ],
    )
    def test_bad_values_name_option_and_expectation(
        self, option: str, value: Any, expected: str
    ) -> None:
        """
        A wrong type or value is a ConfigError naming the option and what it accepts.
        """
        with pytest.raises(ConfigError) as info:
            asynctrack.configure(**{option: value})
        assert option in str(info.value)
        assert expected in str(info.value)

    def test_duplicate_sink_names(self) -> None:
        """
        Two sinks with the same name (it names spill files and counters) are refused.
        """
        with pytest.raises(ConfigError, match=r"sinks\[0\] and sinks\[1\] are both named"):
            asynctrack.configure(sinks=[MemorySink(), MemorySink()])

    def test_tracker_class_must_accept_a_name(self) -> None:
        """
        A Tracker subclass whose constructor cannot take (name) is refused up front.
        """

        class Needy(asynctrack.Tracker):
            def __init__(self, name: str, host: str) -> None:
                super().__init__(name)
                self.host = host

        with pytest.raises(ConfigError, match="tracker_class must be a Tracker subclass whose"):
            asynctrack.configure(sinks=[MemorySink()], tracker_class=Needy)

    def test_a_failed_configure_changes_nothing(self) -> None:
        """
        Validation happens before anything is applied: the running setup stays.
        """
        sink = MemorySink()
        asynctrack.configure(sinks=[sink], level="INFO")
        with pytest.raises(ConfigError):
            asynctrack.configure(sinks=[MemorySink("other")], level="DEBUG", batch_size=-1)
        assert asynctrack.get_tracker("t").level == asynctrack.INFO
        tr = asynctrack.get_tracker("t")

        @tr.probe
        def f() -> None:
            pass

        f()
        asynctrack.flush_sync()
        assert len(sink.logs) == 1

    def test_configure_from_a_sink_is_refused(self) -> None:
        """
        configure() called inside a sink (the dispatcher thread) raises ConfigError
        instead of deadlocking on its own thread.
        """
        errors: list[BaseException] = []

        class Reconfiguring(Sink):
            async def write(self, logs: Sequence[Log]) -> None:
                try:
                    asynctrack.configure(sinks=[MemorySink()])
                except ConfigError as exc:
                    errors.append(exc)

        asynctrack.configure(sinks=[Reconfiguring()])
        tr = asynctrack.get_tracker("t")
        tr.probe(lambda: None)()
        asynctrack.flush_sync()
        assert len(errors) == 1
        assert "cannot be called from a sink" in str(errors[0])


class TestEnvironment:
    @pytest.mark.parametrize(
        ("var", "raw", "option", "expected"),
        [
            pytest.param("ASYNCTRACK_LEVEL", "debug", "level", 10, id="level-name"),
            pytest.param("ASYNCTRACK_LEVEL", "25", "level", 25, id="level-int"),
            pytest.param(
                "ASYNCTRACK_LEVELS",
                "shop.db=DEBUG, shop=info",
                "levels",
                {"shop.db": 10, "shop": 20},
                id="levels",
            ),
            pytest.param("ASYNCTRACK_BATCH_SIZE", "64", "batch_size", 64, id="batch_size"),
            pytest.param("ASYNCTRACK_MAX_QUEUE", "1_000", "max_queue", 1000, id="max_queue"),
            pytest.param("ASYNCTRACK_FLUSH_INTERVAL", "0.25", "flush_interval", 0.25, id="fi"),
            pytest.param("ASYNCTRACK_ON_FULL", "block", "on_full", "block", id="on_full"),
            pytest.param(
                "ASYNCTRACK_SPILL_DIR", "/var/spool", "spill_dir", Path("/var/spool"), id="spill"
            ),
            pytest.param("ASYNCTRACK_EXIT_TIMEOUT", "2", "exit_timeout", 2.0, id="exit_timeout"),
            pytest.param("ASYNCTRACK_FSYNC_SPILL", "yes", "fsync_spill", True, id="fsync-yes"),
            pytest.param("ASYNCTRACK_FSYNC_SPILL", "OFF", "fsync_spill", False, id="fsync-off"),
            pytest.param("ASYNCTRACK_MAX_STRING", "200", "max_string", 200, id="max_string"),
        ],
    )
    def test_variables_set_options(self, var: str, raw: str, option: str, expected: Any) -> None:
        """
        Each ASYNCTRACK_<OPTION> variable sets its option, parsed to the option's type.
        """
        assert resolve({}, None, {var: raw})[option] == expected

    def test_every_scalar_option_has_a_variable(self) -> None:
        """
        All options but code objects and the redaction list can come from the environment.
        """
        assert set(ENV_VARS.values()) == set(OPTIONS) - {
            "sinks",
            "tracker_class",
            "processors",
            "redact",
        }
        assert all(var == f"ASYNCTRACK_{opt.upper()}" for var, opt in ENV_VARS.items())

    @pytest.mark.parametrize(
        ("var", "raw", "expected"),
        [
            pytest.param("ASYNCTRACK_BATCH_SIZE", "lots", "must be an int", id="int"),
            pytest.param("ASYNCTRACK_BATCH_SIZE", "0", "must be an int >= 1", id="range"),
            pytest.param("ASYNCTRACK_FLUSH_INTERVAL", "fast", "a number of seconds", id="float"),
            pytest.param("ASYNCTRACK_FSYNC_SPILL", "maybe", "a boolean", id="bool"),
            pytest.param("ASYNCTRACK_ON_FULL", "wait", "'drop' or 'block'", id="choice"),
            pytest.param("ASYNCTRACK_LEVEL", "LOUD", "unknown level 'LOUD'", id="level"),
            pytest.param("ASYNCTRACK_LEVELS", "shop.db", "name=LEVEL pairs", id="levels-form"),
            pytest.param("ASYNCTRACK_LEVELS", "shop=LOUD", "unknown level", id="levels-level"),
            # str.isdigit() is true for "²", which int() refuses.
            pytest.param("ASYNCTRACK_LEVEL", "²", "unknown level '²'", id="level-superscript"),
            pytest.param(
                "ASYNCTRACK_LEVELS", "shop=²", "unknown level '²'", id="levels-superscript"
            ),
        ],
    )
    def test_bad_values_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, var: str, raw: str, expected: str
    ) -> None:
        """
        A bad environment value is a ConfigError naming the variable, not the option.
        """
        monkeypatch.setenv(var, raw)
        with pytest.raises(ConfigError) as info:
            asynctrack.configure(sinks=[MemorySink()])
        assert f"environment variable {var}" in str(info.value)
        assert expected in str(info.value)

    def test_empty_variable_is_unset(self) -> None:
        """
        An empty variable is ignored (the default applies).
        """
        assert resolve({}, None, {"ASYNCTRACK_BATCH_SIZE": " "})["batch_size"] == 512

    def test_variables_apply_to_options_not_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        configure(sinks=...) takes the options it was not given from the environment.
        """
        monkeypatch.setenv("ASYNCTRACK_LEVEL", "DEBUG")
        asynctrack.configure(sinks=[MemorySink()])
        assert asynctrack.get_tracker("shop").level == asynctrack.DEBUG

    def test_keyword_arguments_override_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        What the code passes explicitly wins over the environment.
        """
        monkeypatch.setenv("ASYNCTRACK_LEVEL", "DEBUG")
        monkeypatch.setenv("ASYNCTRACK_LEVELS", "shop=DEBUG")
        asynctrack.configure(sinks=[MemorySink()], level="INFO", levels={})
        assert asynctrack.get_tracker("shop").level == asynctrack.INFO

    def test_variable_applies_to_a_probe(
        self, configured: Configure, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        ASYNCTRACK_LEVELS turns on a DEBUG probe of one tracker only.
        """
        monkeypatch.setenv("ASYNCTRACK_LEVELS", "shop.db=DEBUG")
        sink = MemorySink()
        configured(sink)
        db = asynctrack.get_tracker("shop.db")
        web = asynctrack.get_tracker("shop.web")

        @db.probe(level="DEBUG")
        def query() -> None:
            pass

        @web.probe(level="DEBUG")
        def render() -> None:
            pass

        query()
        render()
        asynctrack.flush_sync()
        assert [log.calls[0].tracker for log in sink.logs] == ["shop.db"]


class TestReconfigure:
    def test_sinks_are_swapped_after_the_old_ones_close(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        A second configure() flushes and closes the old sinks; later logs go to the new.
        """
        tr = asynctrack.get_tracker("shop")

        @tr.probe
        def act(n: int) -> int:
            return n

        old = StrictSink("old")
        configured(old, flush_interval=60)  # nothing flushes on a timer
        act(1)
        new = FileSink(tmp_path / "new.jsonl")
        configured(new)
        assert old.state == "closed"
        assert len(old.ids) == 1
        act(2)
        asynctrack.shutdown_sync()
        assert [log.calls[0].params for log in read_logs(tmp_path / "new.jsonl")] == [{"n": 2}]
        assert old.violations == []

    def test_the_same_sink_instance_can_stay(self, configured: Configure) -> None:
        """
        A sink kept across configurations is closed by the old pipeline before the new
        one opens it again, and never written while closed.
        """
        tr = asynctrack.get_tracker("shop")
        f = tr.probe(lambda: None)
        sink = StrictSink("kept")
        configured(sink)
        f()
        configured(sink, batch_size=4)
        f()
        asynctrack.shutdown_sync()
        assert len(sink.ids) == 2
        assert sink.opens == 2
        assert sink.violations == []

    def test_levels_apply_to_calls_that_start_afterwards(self, configured: Configure) -> None:
        """
        A new root level changes what is tracked from the next call on.
        """
        tr = asynctrack.get_tracker("shop")

        @tr.probe(level="INFO")
        def detail() -> None:
            pass

        sink = MemorySink()
        configured(sink, level="DEFAULT")
        detail()
        configured(sink, level="INFO")
        detail()
        asynctrack.shutdown_sync()
        assert len(sink.logs) == 1

    def test_reconfigure_while_four_threads_log(
        self, configured: Configure, tmp_path: Path
    ) -> None:
        """
        Reconfiguring six times while 4 threads log: every log is written exactly once
        per configuration's sinks, none is lost and none reaches a closed sink.
        """
        tr = asynctrack.get_tracker("load")

        @tr.probe
        def work(thread: int, i: int) -> int:
            return i

        stop = threading.Event()
        produced = [0] * 4

        def producer(t: int) -> None:
            i = 0
            while not stop.is_set():
                work(t, i)
                i += 1
                produced[t] = i
                time.sleep(0.0002)  # an application does other work between requests

        configs: list[tuple[StrictSink, MemorySink, Path]] = []

        def configure(k: int, strict: StrictSink | None = None) -> None:
            strict = strict or StrictSink(f"strict{k}")
            memory = MemorySink(f"memory{k}")
            path = tmp_path / f"f{k}.jsonl"
            configured(
                strict,
                memory,
                FileSink(path),
                batch_size=64,
                flush_interval=0.01,
                on_full="block",  # "drop" would be a legitimate loss under overload
                block_timeout=30.0,
            )
            configs.append((strict, memory, path))

        configure(0)
        threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        try:
            for k in range(1, 7):
                target = sum(produced) + 400
                # The lambda runs within this iteration, so it sees this round's target.
                wait_for(lambda: sum(produced) >= target, 30, interval=0.005)  # noqa: B023
                # Configuration 4 keeps configuration 3's StrictSink instance.
                configure(k, configs[-1][0] if k == 4 else None)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert asynctrack.shutdown_sync(10.0)

        total = sum(produced)
        assert total > 2400
        strict_sinks = {id(s): s for s, _, _ in configs}.values()
        strict_ids = [i for s in strict_sinks for i in s.ids]
        memory_ids = [log.id for _, m, _ in configs for log in m.logs]
        file_ids = [log.id for _, _, p in configs if p.exists() for log in read_logs(p)]
        for ids in (strict_ids, memory_ids, file_ids):
            assert len(ids) == total
            assert len(set(ids)) == total
        assert set(strict_ids) == set(memory_ids) == set(file_ids)
        assert all(s.violations == [] for s in strict_sinks)
        assert all(s.state == "closed" for s in strict_sinks)


class TestDocumentation:
    def test_every_option_is_in_the_reference(self) -> None:
        """
        The configuration reference documents every option and environment variable.
        """
        text = config_docs()
        table = text.split("\n## Reference\n", 1)[1].split("\n## ", 1)[0]
        rows = {
            m.group(1): m.group(0).split(" | ")
            for m in re.finditer(r"^\| `(\w+)` \|.*$", table, flags=re.MULTILINE)
        }
        assert set(rows) == set(OPTIONS)
        variables = {option: var for var, option in ENV_VARS.items()}
        for option, columns in rows.items():
            var = variables.get(option)
            assert columns[4].startswith(f"`{var}" if var else "—"), option
        assert f"`{CONFIG_ENV}`" in text

    def test_every_option_is_in_the_docstring(self) -> None:
        """
        help(asynctrack.configure) describes every option.
        """
        doc = inspect.getdoc(asynctrack.configure) or ""
        for option in OPTIONS:
            assert f"\n    {option}: " in doc
