"""
OTLPSink: logs as OTLP spans, checked by a receiver decoding with the official protobuf
classes; retries, Retry-After, spill and replay through an outage; configuration.
"""

from __future__ import annotations

import email.utils
import time
from pathlib import Path
from typing import Any

import pytest

import asynctrack
from asynctrack import ConfigError, Log, MemorySink
from asynctrack.sinks._otlp.mapping import Mapper, any_value, resource_attributes
from asynctrack.sinks._otlp.sink import MAX_RETRY_AFTER, OTLPExportError, _retry_after
from asynctrack.testing import capture
from tests.otlp_receiver import Receiver, attributes, value
from tests.reliability import _support as s

tr = asynctrack.get_tracker("shop")


class PaymentDeclined(Exception):
    pass


@tr.probe
def charge(amount: float, card_token: str) -> None:
    asynctrack.add_data("gateway", {"name": "acme", "tries": 2})
    raise PaymentDeclined("insufficient funds")


@tr.probe(fname="shop.checkout")
def checkout(cart_id: int, items: list[int]) -> None:
    asynctrack.add_info("user", "alice")
    asynctrack.add_data("total", 99.5)
    try:
        charge(99.5, "4111")
    except PaymentDeclined:
        pass


@pytest.fixture
def receiver() -> Any:
    with Receiver() as r:
        yield r


def configure(receiver: Receiver, tmp_path: Path, **options: Any) -> MemorySink:
    memory = MemorySink()
    sink = asynctrack.OTLPSink(receiver.endpoint, service_name="shop-api", headers={"x-k": "v"})
    asynctrack.configure(sinks=[sink, memory], spill_dir=tmp_path, **options)
    return memory


class TestMapping:
    def test_tree_attributes_status_and_events(self, receiver: Receiver, tmp_path: Path) -> None:
        """
        One log is one trace: a span per call with the call's span id, the parent's
        span as parent, params/data/info as attributes (non-scalars as JSON), the
        error as status ERROR with an exception event carrying the stack trace, the
        resource's service.name and the asynctrack scope.
        """
        memory = configure(receiver, tmp_path)
        checkout(42, [1, 2])
        assert asynctrack.flush_sync(timeout=30)
        (log,) = memory.logs
        spans = {span.name: span for span in receiver.spans()}
        assert set(spans) == {"shop.checkout", "tests.sinks.otlp.test_otlp_sink.charge"}
        root, child = spans["shop.checkout"], spans["tests.sinks.otlp.test_otlp_sink.charge"]
        assert root.trace_id.hex() == child.trace_id.hex() == log.trace_id
        assert root.span_id.hex() == log.calls[0].span_id
        assert child.span_id.hex() == log.calls[1].span_id
        assert root.parent_span_id == b"" and child.parent_span_id == root.span_id
        assert attributes(root) == {
            "asynctrack.param.cart_id": 42,
            "asynctrack.param.items": "[1, 2]",
            "asynctrack.data.total": 99.5,
            "asynctrack.tracker": "shop",
            "asynctrack.info.user": "alice",
            "asynctrack.log_id": log.id,
            "enduser.id": "alice",
        }
        child_attrs = attributes(child)
        assert child_attrs["asynctrack.param.card_token"] == "[REDACTED]"
        assert child_attrs["asynctrack.data.gateway"] == '{"name": "acme", "tries": 2}'
        assert root.status.code == 0
        assert child.status.code == 2  # STATUS_CODE_ERROR
        assert child.status.message == "PaymentDeclined: insufficient funds"
        (event,) = child.events
        assert event.name == "exception"
        ev = attributes(event)
        assert ev["exception.type"] == "PaymentDeclined"
        assert ev["exception.message"] == "insufficient funds"
        assert ev["exception.stacktrace"].startswith("Traceback (most recent call last):")
        assert ", in charge\n" in ev["exception.stacktrace"]
        start = log.started_at_ns
        assert root.start_time_unix_nano == start
        assert root.end_time_unix_nano == start + log.calls[0].duration_us * 1000
        assert child.start_time_unix_nano == start + log.calls[1].offset_us * 1000
        (resource,) = set(map(lambda r: tuple(sorted(r.items())), receiver.resources()))
        assert dict(resource)["service.name"] == "shop-api"
        scope = receiver.requests[0].resource_spans[0].scope_spans[0].scope
        assert scope.name == "asynctrack"
        assert receiver.headers[0]["content-type"] == "application/x-protobuf"
        assert receiver.headers[0]["x-k"] == "v"

    def test_continuation_and_remote_parent(self) -> None:
        """
        A continuation's first span hangs under the spawning call's span
        (``parent_id`` + ``parent_seq``); a request's root span under the remote
        caller's span (``remote_parent``); both keep their log's trace id.
        """
        parent = Log.from_dict(_log_dict("0" * 31 + "a", calls=2, trace="cd" * 16))
        remote = Log.from_dict(
            _log_dict("0" * 31 + "b", calls=1, remote_parent="00f067aa0ba902b7", trace="ab" * 16)
        )
        cont = Log.from_dict(
            _log_dict(
                "0" * 31 + "c", calls=1, parent_id=parent.id, parent_seq=1, trace=parent.trace_id
            )
        )
        mapper = Mapper(resource={"service.name": "x"}, user_key=None, version="0")
        (remote_root,) = mapper.spans(remote)
        assert remote_root.parent_span_id.hex() == "00f067aa0ba902b7"
        assert remote_root.trace_id.hex() == remote.trace_id
        (cont_root,) = mapper.spans(cont)
        assert cont_root.parent_span_id.hex() == parent.calls[1].span_id
        assert cont_root.trace_id.hex() == parent.trace_id
        assert attributes(cont_root)["asynctrack.parent_log_id"] == parent.id
        (old,) = mapper.spans(Log.from_dict(_log_dict("0" * 31 + "d", calls=1)))
        assert len(old.trace_id) == 16 and any(old.trace_id)  # no trace id: derived

    @pytest.mark.anyio
    async def test_live_continuation_hangs_under_the_spawning_call(self) -> None:
        """
        A task spawned by a call and running after its log completed opens a
        continuation; its first span's parent is the spawning call's span, in the
        same trace.
        """
        import anyio

        started = anyio.Event()
        done = anyio.Event()

        @tr.probe
        async def background() -> None:
            done.set()

        @tr.probe
        async def spawn(tg: Any) -> None:
            tg.start_soon(later)

        async def later() -> None:
            await started.wait()
            await background()

        with capture() as logs:
            async with anyio.create_task_group() as tg:
                await spawn(tg)
                started.set()
                await done.wait()
        first, cont = logs
        assert cont.parent_id == first.id and cont.parent_seq == 0
        mapper = Mapper(resource={}, user_key=None, version="0")
        (root,) = mapper.spans(first)
        (child,) = mapper.spans(cont)
        assert child.trace_id == root.trace_id
        assert child.parent_span_id == root.span_id

    def test_a_long_batch_maps_in_chunks_in_order(self) -> None:
        """
        A request for 100 logs (mapped in chunks, #20) holds every log's spans in order,
        from a list or any iterable.
        """
        logs = [Log.from_dict(_log_dict(f"{n:032x}", calls=2)) for n in range(1, 101)]
        mapper = Mapper(resource={}, user_key=None, version="0")
        expected = [span for log in logs for span in mapper.spans(log)]
        for given in (logs, iter(logs)):
            (resource,) = mapper.request(given).resource_spans
            assert list(resource.scope_spans[0].spans) == expected

    def test_a_call_whose_parent_was_left_out_hangs_under_the_first(self) -> None:
        """
        When a call's parent is not in the log (removed by a filter_call hook), its
        span hangs under the log's first span: the trace stays one tree.
        """
        d = _log_dict("0" * 31 + "9", calls=3)
        del d["calls"][1]
        spans = Mapper(resource={}, user_key=None, version="0").spans(Log.from_dict(d))
        assert spans[1].parent_span_id == spans[0].span_id
        assert spans[0].parent_span_id == b""

    def test_web_request_root_span_uses_semantic_conventions(self) -> None:
        """
        A web request's root span is a SERVER span with http.request.method,
        url.path, http.route, http.response.status_code and client.address; the
        incoming tracestate becomes the span's trace_state, not an attribute.
        """
        d = _log_dict("0" * 31 + "d", calls=1)
        d["calls"][0]["function"] = "GET /items/{item_id}"
        d["info"] = {
            "method": "GET",
            "path": "/items/7",
            "status": 404,
            "client": "10.0.0.1",
            "tracestate": "vendor=abc",
        }
        mapper = Mapper(resource={}, user_key="user", version="0")
        (root,) = mapper.spans(Log.from_dict(d))
        attrs = attributes(root)
        assert root.kind == 2  # SPAN_KIND_SERVER
        assert attrs["http.request.method"] == "GET"
        assert attrs["url.path"] == "/items/7"
        assert attrs["http.route"] == "/items/{item_id}"
        assert attrs["http.response.status_code"] == 404
        assert attrs["client.address"] == "10.0.0.1"
        assert root.trace_state == "vendor=abc"
        assert "asynctrack.info.tracestate" not in attrs
        assert "enduser.id" not in attrs

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param(True, True, id="bool"),
            pytest.param(7, 7, id="int"),
            pytest.param(2**70, str(2**70), id="int-beyond-64-bits"),
            pytest.param(0.25, 0.25, id="float"),
            pytest.param("x", "x", id="str"),
            pytest.param(None, "null", id="none"),
            pytest.param({"a": [1, "é"]}, '{"a": [1, "é"]}', id="dict-as-json"),
        ],
    )
    def test_attribute_values(self, raw: Any, expected: Any) -> None:
        """
        Scalars keep their type; containers and huge ints become text.
        """
        assert value(any_value(raw)) == expected

    def test_service_name_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        service.name comes from the argument, else OTEL_SERVICE_NAME, else the
        script's name; OTEL_RESOURCE_ATTRIBUTES and ``resource`` add attributes.
        """
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,bad")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        attrs = resource_attributes(None, {"team": "pay"})
        assert attrs["service.name"] == "from-env"
        assert attrs["deployment.environment"] == "prod" and attrs["team"] == "pay"
        assert resource_attributes("given", None)["service.name"] == "given"
        monkeypatch.delenv("OTEL_SERVICE_NAME")
        monkeypatch.setattr("sys.argv", ["/srv/app/worker.py"])
        assert resource_attributes(None, None)["service.name"] == "worker"


def _log_dict(
    log_id: str,
    *,
    calls: int,
    parent_id: str | None = None,
    parent_seq: int | None = None,
    remote_parent: str | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    return {
        "id": log_id,
        "trace_id": trace,
        "parent_id": parent_id,
        "parent_seq": parent_seq,
        "remote_parent": remote_parent,
        "started_at": "2026-11-28T17:35:20.123456+00:00",
        "duration_us": 100,
        "complete": True,
        "info": {},
        "calls": [
            {
                "seq": i,
                "parent": None if i == 0 else i - 1,
                "depth": i,
                "function": f"f{i}",
                "tracker": "t",
                "level": "DEFAULT",
                "params": {},
                "data": {},
                "offset_us": i,
                "duration_us": 10,
                "status": "ok",
                "error": None,
                "traceback": None,
            }
            for i in range(calls)
        ],
    }


class TestDelivery:
    def test_outage_of_503s_loses_and_duplicates_nothing(
        self, receiver: Receiver, tmp_path: Path
    ) -> None:
        """
        While the receiver answers 503, batches are retried and spilled; once it is
        back, every span arrives exactly once.
        """
        receiver.refuse = 503
        memory = configure(
            receiver,
            tmp_path,
            batch_size=10,
            flush_interval=0.05,
            retry_attempts=1,
            max_backoff=0.1,
        )
        for i in range(60):
            checkout(i, [i])
        assert s.wait_for(lambda: asynctrack.stats().spilled > 0, timeout=30)
        assert receiver.refused > 0
        receiver.refuse = None
        for i in range(60, 80):
            checkout(i, [i])
        asynctrack.flush_sync(timeout=60)
        # A flush may leave logs durably spilled; the replay delivers them once the
        # receiver answers again.
        assert s.wait_for(
            lambda: (st := asynctrack.stats()).replayed == st.spilled and st.pending == 0,
            timeout=60,
        ), asynctrack.stats()
        expected = sorted(call.span_id for log in memory.logs for call in log.calls)
        got = sorted(span.span_id.hex() for span in receiver.spans())
        assert len(expected) == 160
        assert got == expected
        stats = asynctrack.stats()
        assert stats.spilled > 0 and stats.dropped == 0 and stats.dead_lettered == 0

    @pytest.mark.anyio
    async def test_retry_after_is_honoured(self, receiver: Receiver, anyio_backend: str) -> None:
        """
        A 429 with Retry-After fails the write; until that time has passed further
        writes fail at once without a request reaching the receiver.
        """
        if anyio_backend != "asyncio":
            pytest.skip("sinks run in the dispatcher's asyncio loop")
        sink = asynctrack.OTLPSink(receiver.endpoint, service_name="x")
        log = Log.from_dict(_log_dict("0" * 31 + "e", calls=1))
        receiver.refuse, receiver.retry_after = 429, "120"
        try:
            with pytest.raises(OTLPExportError, match="429"):
                await sink.write([log])
            receiver.refuse = None
            with pytest.raises(OTLPExportError, match="Retry-After"):
                await sink.write([log])
            assert receiver.refused == 1 and receiver.spans() == []
            sink._not_before = 0.0  # the time has come
            await sink.write([log])
            assert len(receiver.spans()) == 1
        finally:
            await sink.close()

    @pytest.mark.anyio
    async def test_connection_refused_raises(self, anyio_backend: str) -> None:
        """
        A receiver that is not listening is a failed write (retried by the pipeline).
        """
        if anyio_backend != "asyncio":
            pytest.skip("sinks run in the dispatcher's asyncio loop")
        sink = asynctrack.OTLPSink(f"http://127.0.0.1:{s.free_port()}/v1/traces", timeout=5)
        log = Log.from_dict(_log_dict("0" * 31 + "f", calls=1))
        try:
            with pytest.raises(Exception, match=r"(?i)connect"):
                await sink.write([log])
        finally:
            await sink.close()

    def test_retry_after_values(self) -> None:
        """
        Retry-After is read as seconds or an HTTP date, capped, and ignored when
        unreadable.
        """
        assert _retry_after("3") == 3.0
        assert _retry_after(None) is None and _retry_after("soon") is None
        assert _retry_after("99999") == MAX_RETRY_AFTER
        assert _retry_after("-5") == 0.0
        date = email.utils.formatdate(time.time() + 60, usegmt=True)
        got = _retry_after(date)
        assert got is not None and 0 < got <= 61


class TestConfiguration:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"endpoint": 3}, "endpoint", id="endpoint-type"),
            pytest.param({"endpoint": "ftp://x/v1/traces"}, "endpoint", id="endpoint-scheme"),
            pytest.param({"headers": {"a": 1}}, "headers", id="headers"),
            pytest.param({"service_name": ""}, "service_name", id="service-name"),
            pytest.param({"resource": {1: "x"}}, "resource", id="resource"),
            pytest.param({"timeout": 0}, "timeout", id="timeout"),
            pytest.param({"user_key": 5}, "user_key", id="user-key"),
            pytest.param({"name": "a b"}, "name", id="name"),
        ],
    )
    def test_bad_options_are_config_errors(self, kwargs: dict[str, Any], match: str) -> None:
        """
        Each bad option is a ConfigError naming it, at construction.
        """
        with pytest.raises(ConfigError, match=match):
            asynctrack.OTLPSink(**kwargs)

    def test_toml_type_otlp(self, tmp_path: Path) -> None:
        """
        A configuration file builds an OTLPSink from ``type = "otlp"`` and its keys.
        """
        path = tmp_path / "track.toml"
        path.write_text(
            '[asynctrack]\n[[asynctrack.sinks]]\ntype = "otlp"\n'
            'endpoint = "http://collector:4318/v1/traces"\nservice_name = "svc"\n'
            'headers = { authorization = "Bearer x" }\n',
            encoding="utf-8",
        )
        from asynctrack._config.file import load

        options = load(path)
        (sink,) = options.options["sinks"]
        assert isinstance(sink, asynctrack.OTLPSink)
        assert sink.endpoint == "http://collector:4318/v1/traces"
        assert sink.name == "otlp-collector-4318"
