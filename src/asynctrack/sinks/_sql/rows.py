"""
The rows of a batch for an SQLSink: each log and call as a tuple in the plan's column
order, values that do not fit their column shortened (the exact value kept in JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from asynctrack._core.records import Call, Log
from asynctrack.sinks._sql.plan import WritePlan
from asynctrack.sinks._sql.schema import (
    MISSING,
    RESERVED_KEY,
)
from asynctrack.sinks._sql.upgrade import (
    json_text,
    jsonb_dumps,
    needs_jsonb_care,
)
from asynctrack.sinks._sql.values import (
    dumps,
    fit_json,
    overflow,
    with_reserved,
)

__all__ = ["call_row", "rows"]

#: The call columns whose distinct values are few (names, levels, statuses).
_NAME_COLUMNS = ("function", "tracker", "level", "status")


def rows(
    plan: WritePlan, logs: Sequence[Log], seen: set[str] | None = None
) -> tuple[list[tuple[Any, ...]], list[Any], list[tuple[Log, Exception]]]:
    """
    Build the rows of a batch: ``(log_rows, call_rows, refused)`` in column order;
    ``refused`` holds the logs whose id cannot be stored. ``seen``: the ids of the
    batch's earlier parts (a log whose id is there is left out, as a repeat).
    """
    fits = plan.fits
    fits_id = fits["id"]
    fits_parent = fits["parent_id"]
    started = plan.started
    info_columns = plan.info
    converters = plan.converters
    pairs = list(zip(info_columns, converters, strict=True))
    limits = plan.limits
    info_limit = limits["info"]
    check_json = {k: limits[k].bytes is not None for k in ("info", "params", "data")}
    log_rows: list[tuple[Any, ...]] = []
    call_rows: list[tuple[Any, ...]] = []
    known = plan.known
    known_function = known["function"]
    known_tracker = known["tracker"]
    known_level = known["level"]
    known_status = known["status"]
    fits_error = fits["error"]
    log_defaults = plan.log_defaults
    fast = not plan.call_defaults and not check_json["params"] and not check_json["data"]
    log_optional = plan.log_optional
    jsonb = plan.jsonb
    # The calls of the default schema: parent and traceback after the fixed columns.
    both = plan.call_optional == ["parent_seq", "traceback"]
    fast = fast and (both or not plan.call_optional) and "traceback" not in check_json
    nul_checked = bool(jsonb & {"params", "data"})
    orjson_dumps = orjson.dumps
    seen = set() if seen is None else seen
    refused: list[tuple[Log, Exception]] = []
    for log in logs:
        lid = log.id
        if type(lid) is not str or not fits_id(lid):
            refused.append((log, ValueError(f"log id {lid!r:.50} does not fit the id column")))
            continue
        if lid in seen:
            continue
        seen.add(lid)
        extra: dict[str, Any] | None = None
        parent = log.parent_id
        if parent is not None and (type(parent) is not str or not fits_parent(parent)):
            extra = {"parent_id": parent}
            parent = None
        optional: list[Any] = []
        for col in log_optional:
            value = getattr(log, col)
            if value is not None and (
                type(value) is not int
                if col == "parent_seq"
                else type(value) is not str or not fits[col](value)
            ):
                # Kept exactly in the info JSON, like a parent_id that does not fit.
                extra = {**(extra or {}), col: value}
                value = None
            optional.append(value)
        info = log.info
        values: list[Any] = []
        if pairs:
            rest = dict(info)
            for column, convert in pairs:
                value = rest.pop(column.key, MISSING)
                if value is MISSING:
                    values.append(None)
                    continue
                stored, exact = convert(value)
                values.append(stored)
                if not exact:
                    rest[column.key] = value
            info = rest
        if extra is not None or RESERVED_KEY in info:
            info = with_reserved(info, extra)
        try:
            info_text = orjson_dumps(info).decode()
        except TypeError:
            info_text = dumps(info)
        if "info" in jsonb and needs_jsonb_care(info_text):
            info_text = jsonb_dumps(info)
        if check_json["info"]:
            info_text = fit_json(info_text, info_limit)
        log_rows.append(
            (
                lid,
                parent,
                started(log.started_at),
                log.duration_us,
                bool(log.complete),
                log.dropped_calls,
                info_text,
                *optional,
                *values,
                *[make() for make in log_defaults],
            )
        )
        if fast:
            for call in log.calls:
                # The common case, kept lean: names already known to fit, no error
                # or a short one, JSON that orjson encodes directly (issue #9).
                function = call.function
                tracker = call.tracker
                level = call.level
                status = call.status
                error = call.error
                data = call.data
                if (
                    function in known_function
                    and tracker in known_tracker
                    and level in known_level
                    and status in known_status
                    and (error is None or (type(error) is str and fits_error(error)))
                    and RESERVED_KEY not in data
                ):
                    try:
                        params_text = orjson_dumps(call.params).decode()
                        data_text = orjson_dumps(data).decode()
                        row: tuple[Any, ...] = (
                            lid,
                            call.seq,
                            call.depth,
                            function,
                            tracker,
                            level,
                            params_text,
                            data_text,
                            call.offset_us,
                            call.duration_us,
                            status,
                            error,
                        )
                        if not nul_checked or not (
                            needs_jsonb_care(params_text) or needs_jsonb_care(data_text)
                        ):
                            tb = call.traceback
                            if not both:
                                call_rows.append(row)
                                continue
                            if tb is None:
                                call_rows.append((*row, call.parent, None))
                                continue
                            tb_text = orjson_dumps(tb).decode()
                            if "traceback" not in jsonb or not needs_jsonb_care(tb_text):
                                call_rows.append((*row, call.parent, tb_text))
                                continue
                    except TypeError:
                        pass
                call_rows.append(call_row(plan, lid, call))
        else:
            call_rows.extend(call_row(plan, lid, call) for call in log.calls)
    return log_rows, call_rows, refused


def call_row(plan: WritePlan, lid: str, call: Call) -> tuple[Any, ...]:
    """
    Build one call's row, making every value fit its column (the general path).
    """
    limits = plan.limits
    texts = [call.function, call.tracker, call.level, call.status]
    over: dict[str, Any] | None = None
    for i, column in enumerate(_NAME_COLUMNS):
        text = texts[i]
        known = plan.known[column]
        if text in known:
            continue
        if type(text) is str and plan.fits[column](text):
            if len(known) < 10_000:
                known.add(text)
            continue
        texts[i], over = overflow(column, text, limits[column], over)
    error = call.error
    if error is not None and (type(error) is not str or not plan.fits["error"](error)):
        error, over = overflow("error", error, limits["error"], over)
    data = call.data
    if over is not None or RESERVED_KEY in data:
        data = with_reserved(data, over)
    jsonb = plan.jsonb
    params_text = fit_json(json_text(call.params, "params" in jsonb), limits["params"])
    data_text = fit_json(json_text(data, "data" in jsonb), limits["data"])
    optional: list[Any] = []
    for column in plan.call_optional:
        if column == "parent_seq":
            optional.append(call.parent)
        elif call.traceback is None:
            optional.append(None)
        else:
            text = json_text(call.traceback, "traceback" in jsonb)
            optional.append(fit_json(text, limits["traceback"]))
    return (
        lid,
        call.seq,
        call.depth,
        texts[0],
        texts[1],
        texts[2],
        params_text,
        data_text,
        call.offset_us,
        call.duration_us,
        texts[3],
        error,
        *optional,
        *[make() for make in plan.call_defaults],
    )
