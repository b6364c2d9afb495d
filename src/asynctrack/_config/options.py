"""
The options of ``configure``, each declared once, and the validation and merging
shared by ``configure()`` and the configuration file reader.

Each key of :class:`Options` is annotated with its type (for type checkers) and its
declaration (an :class:`~asynctrack._config.kinds.Option`: default, bounds, one-line
doc, whether an environment variable or a file may set it). Everything else derives
from these annotations: :data:`OPTIONS`, :data:`DEFAULTS`, :data:`ENV_VARS`,
:func:`validate`, :func:`from_env`, the file reader and the reference table of the
manual (``python -m asynctrack._config.reference``; see docs/configuration.md).

Where a value comes from, highest priority first: a keyword argument of
``configure()`` / ``configure_from_file()``, then an ``ASYNCTRACK_*`` environment
variable, then the configuration file, then the default.
"""

# No `from __future__ import annotations` in this module: the annotations of `Options`
# hold the declarations and are read at import time, without evaluating strings.

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypedDict, get_args

from asynctrack._config.kinds import (
    Choice,
    Directory,
    Flag,
    Functions,
    Int,
    Level,
    LevelMap,
    Names,
    Option,
    Seconds,
    SinkList,
    TrackerClass,
)
from asynctrack._core import tracker as _tracker
from asynctrack._core.levels import DEFAULT
from asynctrack._core.records import Log
from asynctrack._core.values import DEFAULT_REDACT
from asynctrack._exceptions import ConfigError
from asynctrack.sinks._base import Sink

__all__ = [
    "CONFIG_ENV",
    "DEFAULTS",
    "ENV_VARS",
    "MIN_PERIOD",
    "OPTIONS",
    "Layer",
    "Options",
    "from_env",
    "resolve",
    "suggest",
    "validate",
]

#: The pipeline's own periods have a floor of a millisecond: a flush interval or a
#: backoff of ~0 turns the idle dispatcher, or the retries of a sink that is down,
#: into a busy loop that takes the host's CPU (and GIL) and hammers the database
#: (#15: bounded configuration).
MIN_PERIOD = 0.001


class Options(TypedDict, total=False):
    """
    The options of ``configure()``: the type of each for type checkers (so that
    ``configure(levle="INFO")`` is an error), and its declaration for everything else.
    """

    level: Annotated[
        int | str,
        Level(
            DEFAULT,
            "root threshold: a call is tracked when its level is `>=` it",
            example="INFO",
            env_example="DEBUG",
        ),
    ]
    levels: Annotated[
        Mapping[str, int | str],
        LevelMap(
            MappingProxyType({}),
            "thresholds per dotted tracker name (the variable adds to and overrides the "
            "file's entries)",
            file_example='`[asynctrack.levels]` `"shop.db" = "DEBUG"`',
            env_example="shop.db=DEBUG,shop=INFO",
        ),
    ]
    sinks: Annotated[
        Sequence[Sink] | None,
        SinkList(
            None,
            "where logs are written",
            env=False,
            shown_default="`[SQLSink()]` (SQLite `track.db`)",
            file_example="`[[asynctrack.sinks]]` tables",
        ),
    ]
    max_queue: Annotated[
        int, Int(100_000, "completed logs held in memory before `on_full` applies", minimum=1)
    ]
    batch_size: Annotated[int, Int(512, "logs per batch handed to the sinks", minimum=1)]
    flush_interval: Annotated[
        float, Seconds(0.5, "seconds before a partial batch is written", minimum=MIN_PERIOD)
    ]
    on_full: Annotated[
        Literal["drop", "block"],
        Choice(
            "drop",
            'queue full: `"drop"` (counted in `stats().dropped`) or `"block"` the producer',
            example="block",
        ),
    ]
    block_timeout: Annotated[
        float,
        Seconds(1.0, 'longest wait of a producer with `on_full = "block"`, then drop'),
    ]
    spill_dir: Annotated[
        str | os.PathLike[str],
        Directory(".", "directory of the spill files of failing sinks", example="/var/spool/app"),
    ]
    fsync_spill: Annotated[
        bool, Flag(False, "fsync spill files after each append", example=True, env_example="1")
    ]
    exit_timeout: Annotated[
        float,
        Seconds(5.0, "deadline of the flush at exit, of `shutdown()` and of a reconfiguration"),
    ]
    retry_attempts: Annotated[
        int, Int(3, "retries of a failed write before the batch is spilled", minimum=0)
    ]
    max_backoff: Annotated[
        float, Seconds(5.0, "longest pause between retries, in seconds", minimum=MIN_PERIOD)
    ]
    write_timeout: Annotated[
        float,
        Seconds(
            30.0,
            "a sink's `open`/`write`/`close` taking longer has failed",
            minimum=MIN_PERIOD,
        ),
    ]
    max_pending_batches: Annotated[
        int, Int(16, "batches queued per sink before new ones go to its spill file", minimum=1)
    ]
    max_calls_per_log: Annotated[
        int,
        Int(10_000, "calls recorded per log; the rest are counted in `dropped_calls`", minimum=1),
    ]
    max_traceback_frames: Annotated[
        int,
        Int(
            30,
            "frames kept in the traceback of the innermost probed call an exception "
            "passed through; `0` records none",
            minimum=0,
        ),
    ]
    redact: Annotated[
        Iterable[str],
        Names(
            DEFAULT_REDACT,
            "substrings marking a name as sensitive, compared without case and without "
            "the separators `_`, `-`, `.` and spaces (`private_key` marks `privateKey`); "
            "replaces the list: repeat the defaults you keep",
            env=False,
            example=["password", "ssn"],
        ),
    ]
    max_depth: Annotated[int, Int(6, "nesting depth kept in recorded values", minimum=1)]
    max_items: Annotated[int, Int(100, "items kept per list or dict", minimum=1)]
    max_string: Annotated[int, Int(1000, "characters kept per string", minimum=16)]
    tracker_class: Annotated[
        type[_tracker.Tracker] | None,
        TrackerClass(
            None,
            "class of the trackers `get_tracker` returns (see [Customising](#customising))",
            env=False,
            shown_default="`Tracker`",
            example="myapp.tracking:AppTracker",
        ),
    ]
    processors: Annotated[
        Sequence[Callable[[Log], Log | None]],
        Functions(
            (),
            "functions applied in order to each completed log; returning None drops it",
            env=False,
            example=["myapp.tracking:drop_health_checks"],
        ),
    ]


def _declarations() -> dict[str, Option]:
    options: dict[str, Option] = {}
    for name, annotation in Options.__annotations__.items():
        type_, *declared = get_args(annotation)
        (option,) = (d for d in declared if isinstance(d, Option))
        option.bind(name, type_)
        options[name] = option
    return options


#: Every option of ``configure``, by name, in the order of the reference table.
OPTIONS: dict[str, Option] = _declarations()

#: The default of each option.
DEFAULTS: dict[str, Any] = {name: option.default for name, option in OPTIONS.items()}

#: Environment variables overriding single options: ``ASYNCTRACK_<OPTION>``.
ENV_VARS: dict[str, str] = {
    option.env_var: name for name, option in OPTIONS.items() if option.env_var is not None
}

#: The environment variable naming the configuration file read by ``configure()``.
CONFIG_ENV = "ASYNCTRACK_CONFIG"


@dataclass
class Layer:
    """
    Options from one source (a file, the environment) and how to name each in errors.
    """

    options: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


# -- validation ------------------------------------------------------------------------------


def suggest(word: str, choices: Iterable[str]) -> str:
    """
    Return ``" (did you mean 'x'?)"`` for a close match of ``word``, else ``""``.
    """
    import difflib  # only on the error path: keeps `import asynctrack` light

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(options: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """
    Check options and return them completed with defaults.

    Args:
        options: option name to value, as ``configure`` takes them.
        labels: how to name an option in error messages when it did not come from a
            keyword argument (``"track.toml: asynctrack.batch_size"``).

    Returns:
        Every option of :data:`OPTIONS`, normalised (levels as ints, ``spill_dir`` a
        ``Path``, ``redact`` and ``processors`` tuples, ``sinks`` a list or None).

    Raises:
        ConfigError: an unknown option or a bad value, naming the option and what it
            accepts.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        hint = suggest(unknown[0], OPTIONS) if len(unknown) == 1 else ""
        raise ConfigError(
            f"configure(): unknown option(s) {', '.join(unknown)}{hint}; "
            f"accepted: {', '.join(sorted(OPTIONS))}"
        )
    labels = labels or {}
    return {
        name: option.check(
            options[name] if name in options else option.default,
            labels.get(name) or f"configure(): {name}",
        )
        for name, option in OPTIONS.items()
    }


# -- the environment --------------------------------------------------------------------------


def from_env(environ: Mapping[str, str] | None = None) -> Layer:
    """
    Read the ``ASYNCTRACK_*`` variables that override single options.

    An empty variable counts as unset. Values are parsed here (ints, numbers,
    booleans ``1/0/true/false/yes/no/on/off``, ``ASYNCTRACK_LEVELS`` as
    ``name=LEVEL,name=LEVEL``); ranges are checked by :func:`validate`.

    Raises:
        ConfigError: a value that cannot be parsed, naming the variable.
    """
    env = os.environ if environ is None else environ
    layer = Layer()
    for var, name in ENV_VARS.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        label = f"environment variable {var}"
        layer.labels[name] = label
        layer.options[name] = OPTIONS[name].parse_env(raw, label)
    return layer


def resolve(
    kwargs: Mapping[str, Any],
    file: Layer | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """
    Merge the sources (keyword arguments > environment > file > defaults) and validate.

    A mapping option from the environment (``ASYNCTRACK_LEVELS``) adds to (and
    overrides entries of) the file's; a keyword argument replaces both.

    Raises:
        ConfigError: as :func:`validate` and :func:`from_env`.
    """
    merged: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if file is not None:
        merged.update(file.options)
        labels.update(file.labels)
    env = from_env(environ)
    for name, value in env.options.items():
        if name in kwargs:
            continue
        if isinstance(OPTIONS[name], LevelMap) and isinstance(merged.get(name), Mapping):
            value = {**merged[name], **value}
        merged[name] = value
        labels[name] = env.labels[name]
    for name, value in kwargs.items():
        merged[name] = value
        labels.pop(name, None)
    return validate(merged, labels)
