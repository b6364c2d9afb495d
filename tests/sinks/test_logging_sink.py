"""
Tests of LoggingSink: completed logs forwarded to stdlib ``logging`` handlers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import asynctrack
from asynctrack import ConfigError, MemorySink
from asynctrack.sinks._logging import LoggingSink
from tests.conftest import Configure


class ListHandler(logging.Handler):
    """
    Keeps the records it receives.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def activity() -> Iterator[tuple[logging.Logger, ListHandler]]:
    """
    A logger of its own (INFO, not propagating) with a handler keeping its records.
    """
    logger = logging.getLogger(f"test.activity.{uuid.uuid4().hex[:8]}")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def run_checkout(user: str | None = "alice", fail: bool = False) -> None:
    tr = asynctrack.get_tracker("shop")

    @tr.probe
    def reserve(item: int) -> None:
        pass

    @tr.probe(fname="shop.checkout")
    def checkout(cart_id: int) -> None:
        if user is not None:
            asynctrack.add_info("user", user)
        reserve(7)
        if fail:
            raise LookupError("empty cart")

    try:
        checkout(42)
    except LookupError:
        pass


class TestLoggingSink:
    def test_one_record_per_log_with_the_log_in_extra(
        self, configured: Configure, activity: tuple[logging.Logger, ListHandler]
    ) -> None:
        """
        Each completed log becomes one record: readable message, the log dict as
        record.asynctrack, the root function as funcName, the completion time.
        """
        logger, handler = activity
        memory = MemorySink()
        configured(memory, LoggingSink(logger))
        run_checkout()
        run_checkout(user=None)
        asynctrack.flush_sync()
        assert len(handler.records) == 2
        first, second = handler.records
        log = memory.logs[0]
        assert first.levelno == logging.INFO
        assert first.asynctrack == log.to_dict()  # type: ignore[attr-defined]
        assert first.funcName == "shop.checkout"
        assert first.getMessage().startswith("shop.checkout ok in ")
        assert first.getMessage().endswith(", 2 calls, user=alice")
        assert "user=" not in second.getMessage()
        ended = (log.started_at_ns + log.duration_us * 1000) / 1e9
        assert first.created == pytest.approx(ended, abs=1e-6)

    def test_failed_logs_use_error_level(
        self, configured: Configure, activity: tuple[logging.Logger, ListHandler]
    ) -> None:
        """
        A log whose root call failed is emitted at error_level, its error in the message.
        """
        logger, handler = activity
        configured(LoggingSink(logger, error_level="ERROR"))
        run_checkout()
        run_checkout(fail=True)
        asynctrack.flush_sync()
        assert [r.levelno for r in handler.records] == [logging.INFO, logging.ERROR]
        assert "error=LookupError: empty cart" in handler.records[1].getMessage()

    def test_message_template(
        self, configured: Configure, activity: tuple[logging.Logger, ListHandler]
    ) -> None:
        """
        A message template formats the documented fields, info entries included.
        """
        logger, handler = activity
        sink = LoggingSink(logger, message="{user} {function} {status} {calls} {info[tenant]}")
        configured(sink)
        tr = asynctrack.get_tracker("shop")

        @tr.probe(fname="order")
        def order() -> None:
            asynctrack.add_info("user", "bob")
            asynctrack.add_info("tenant", 3)

        order()
        asynctrack.flush_sync()
        assert handler.records[0].getMessage() == "bob order ok 1 3"

    def test_template_failing_on_a_log_falls_back(
        self,
        configured: Configure,
        activity: tuple[logging.Logger, ListHandler],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """
        A template that fails on a log (a missing info key) falls back to the default
        message for it, reported once; the record is still emitted.
        """
        logger, handler = activity
        configured(LoggingSink(logger, message="{info[tenant]}"))
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            run_checkout()
            run_checkout()
            asynctrack.flush_sync()
        assert [r.getMessage().split(" ")[0] for r in handler.records] == ["shop.checkout"] * 2
        reports = [r for r in caplog.records if "message template failed" in r.getMessage()]
        assert len(reports) == 1

    def test_default_logger_and_name(self) -> None:
        """
        By default records go to the "asynctrack.logs" logger; the sink is named after it.
        """
        sink = LoggingSink()
        assert sink.logger is logging.getLogger("asynctrack.logs")
        assert sink.level == logging.INFO
        assert sink.name == "logging-asynctrack.logs"
        assert LoggingSink("app", name="audit").name == "audit"

    def test_disabled_logger_is_reported(
        self,
        configured: Configure,
        activity: tuple[logging.Logger, ListHandler],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """
        A logger that discards the sink's level is reported when the sink opens, with a
        hint; nothing is emitted.
        """
        logger, handler = activity
        logger.setLevel(logging.WARNING)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            configured(LoggingSink(logger))
            run_checkout()
            asynctrack.flush_sync()
        assert handler.records == []
        assert any("discards INFO records" in r.getMessage() for r in caplog.records)

    def test_failing_handler_is_contained(
        self,
        configured: Configure,
        activity: tuple[logging.Logger, ListHandler],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """
        A handler that raises does not make the sink fail or retry (which would repeat
        records to the other handlers): the error is reported once.
        """
        logger, handler = activity

        class Exploding(logging.Handler):
            def handle(self, record: logging.LogRecord) -> bool:
                raise OSError("disk full")

            def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover
                pass

        exploding = Exploding()
        logger.addHandler(exploding)
        try:
            with caplog.at_level(logging.WARNING, logger="asynctrack"):
                configured(LoggingSink(logger))
                run_checkout()
                run_checkout()
                asynctrack.flush_sync()
        finally:
            logger.removeHandler(exploding)
        assert len(handler.records) == 2  # the handler before it received both
        stats = asynctrack.stats()
        assert stats.failed == 0
        assert stats.retried == 0
        emitted = [r.getMessage() for r in caplog.records]
        assert sum("could not emit a log: OSError: disk full" in m for m in emitted) == 1

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param({"logger": 3}, "logger must be a logger name", id="logger"),
            pytest.param({"level": "LOUD"}, "level must be a logging level", id="level"),
            pytest.param({"level": True}, "level must be a logging level", id="level-bool"),
            pytest.param({"error_level": 2.5}, "error_level must be", id="error_level"),
            pytest.param({"message": "{nope}"}, "unknown field {nope}", id="field"),
            pytest.param({"message": "{user"}, "not a valid template", id="syntax"),
            pytest.param({"message": "{duration_ms:q}"}, "not a valid template", id="spec"),
            pytest.param({"extra_key": "msg"}, "is a LogRecord attribute", id="reserved"),
            pytest.param({"extra_key": "a-b"}, "must be an identifier", id="identifier"),
            pytest.param({"name": ""}, "name must be a non-empty str", id="name"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], message: str) -> None:
        """
        Bad arguments are ConfigErrors at construction, naming the argument.
        """
        with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
            LoggingSink(**kwargs)

    def test_custom_extra_key(
        self, configured: Configure, activity: tuple[logging.Logger, ListHandler]
    ) -> None:
        """
        extra_key names the record attribute holding the log dict.
        """
        logger, handler = activity
        configured(LoggingSink(logger, extra_key="track"))
        run_checkout()
        asynctrack.flush_sync()
        assert handler.records[0].track["info"] == {"user": "alice"}  # type: ignore[attr-defined]
