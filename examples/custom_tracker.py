"""
Customising asynctrack by subclassing Tracker, and with processors.

Every log gets the host and the application version; cache look-ups are left out
of the logs; health checks are not recorded at all. Run it:

    python examples/custom_tracker.py
"""

from __future__ import annotations

import socket

import asynctrack
from asynctrack import Call, Log, Tracker

APP_VERSION = "1.4.2"


class AppTracker(Tracker):
    """
    A tracker that adds deployment info to each log and drops noisy calls.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.host = socket.gethostname()

    def extend_log(self, log: Log) -> None:
        # Called once per completed log, in the thread or task that completed it,
        # before the log is handed to the sinks.
        log.info["host"] = self.host
        log.info["app_version"] = APP_VERSION

    def filter_call(self, call: Call) -> bool:
        # Called for each call of a completed log, on the tracker that recorded it:
        # return False to leave the call out.
        return not call.function.endswith(".cache_get")


def drop_health_checks(log: Log) -> Log | None:
    """
    A processor: returning None drops the log (counted in stats().dropped).
    """
    return None if log.calls[0].function.endswith(".health") else log


sink = asynctrack.MemorySink()
asynctrack.configure(sinks=[sink], tracker_class=AppTracker, processors=[drop_health_checks])
tracker = asynctrack.get_tracker("shop")


@tracker.probe
def cache_get(key: str) -> str | None:
    return None


@tracker.probe
def checkout(cart_id: int) -> str:
    cache_get(f"cart:{cart_id}")
    return "paid"


@tracker.probe
def health() -> str:
    return "ok"


checkout(42)
health()
asynctrack.shutdown_sync()

(log,) = sink.logs
print(log.info["app_version"], [call.function for call in log.calls])
assert log.info == {"host": socket.gethostname(), "app_version": APP_VERSION}
assert [call.function for call in log.calls] == [f"{__name__}.checkout"]
assert asynctrack.stats().dropped == 1
