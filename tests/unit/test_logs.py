"""Log lines are JSON and carry the current trace and span ids."""

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from genai_platform.logs import JsonFormatter


def test_a_log_line_carries_the_active_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    formatter = JsonFormatter("demo")
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("you",), "document_id": "d1"}
    )
    with tracer.start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
        context = span.get_span_context()
    assert line["message"] == "hello you"
    assert line["app_id"] == "demo"
    assert line["document_id"] == "d1"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_a_log_line_outside_a_trace_has_no_ids() -> None:
    record = logging.makeLogRecord({"name": "x", "levelname": "WARNING", "msg": "plain"})
    line = json.loads(JsonFormatter("demo").format(record))
    assert "trace_id" not in line and line["level"] == "warning"
