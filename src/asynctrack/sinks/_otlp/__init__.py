"""
The OTLP sink: logs as OpenTelemetry spans (``opentelemetry-proto`` messages over HTTP).
"""

from __future__ import annotations
