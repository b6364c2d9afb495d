"""
The layout of a live log's calls and of frames (``_core/layout.py``): the names are
the only way to reach a field, so they must agree with the order the fields are
written in.
"""

from __future__ import annotations

import pytest

from asynctrack._core import layout


class TestLayout:
    def test_offsets_follow_the_declared_order(self) -> None:
        """
        Each offset is its field's position in FIELDS, and REC is their number.
        """
        names = {
            "meta": layout.META,
            "depth": layout.DEPTH,
            "params": layout.PARAMS,
            "data": layout.DATA,
            "start": layout.START,
            "end": layout.END,
            "status": layout.STATUS,
            "error": layout.ERROR,
            "parent": layout.PARENT,
            "traceback": layout.TRACEBACK,
        }
        assert [layout.FIELDS[i] for i in names.values()] == list(names)
        assert layout.REC == len(layout.FIELDS) == len(names)

    def test_fields_source_puts_each_value_at_its_offset(self) -> None:
        """
        The generated source of a starting call's fields, evaluated, holds each given
        value at its field's offset and the initial values elsewhere, like STARTED.
        """
        source = layout.fields_source(meta="'m'", depth="3", params="{}", start="7", parent="20")
        fields = eval(f"[{source}]")
        assert len(fields) == layout.REC
        assert fields[layout.META] == "m" and fields[layout.DEPTH] == 3
        assert fields[layout.START] == 7 and fields[layout.PARENT] == 20
        started = layout.STARTED.copy()
        for name in ("meta", "depth", "params", "start", "parent"):
            started[layout.FIELDS.index(name)] = fields[layout.FIELDS.index(name)]
        assert started == fields
        assert fields[layout.END] == 0 and fields[layout.STATUS] == "ok"

    def test_fields_source_refuses_unknown_names(self) -> None:
        """
        A name that is not a field is an error, not a silently dropped value.
        """
        with pytest.raises(KeyError, match="stop"):
            layout.fields_source(stop="1")

    def test_records_and_slot_of_read_whole_calls(self) -> None:
        """
        records() yields one tuple per call; slot_of finds a call by its start object.
        """
        t1, t2 = 10**12 + 1, 10**12 + 2
        raw = layout.STARTED.copy() + layout.STARTED.copy()
        raw[layout.START], raw[layout.REC + layout.START] = t1, t2
        assert [rec[layout.START] for rec in layout.records(raw)] == [t1, t2]
        assert layout.slot_of(raw, t2) == layout.REC and layout.slot_of(raw, t1) == 0
