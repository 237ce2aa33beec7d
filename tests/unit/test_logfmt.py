"""The node's log lines: JSON objects with UTC time, level, logger, message and event fields,
or the text lines of old."""

import json
import logging
import re

import pytest

from bureau import logfmt


def _record(**extra) -> logging.LogRecord:
    logger = logging.getLogger("bureau.test")
    return logger.makeRecord("bureau.test", logging.WARNING, __file__, 1, "operator action %s refused: %s",
                             ("top_up", "unknown_wallet"), None, extra=extra)


def test_json_lines_carry_time_level_logger_message_and_event_fields():
    line = logfmt.JsonFormatter().format(_record(event="operator_action_refused", operator="operator-1",
                                                 action="top_up", reason="unknown_wallet"))
    doc = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["time"])
    assert (doc["level"], doc["logger"]) == ("WARNING", "bureau.test")
    assert doc["message"] == "operator action top_up refused: unknown_wallet"
    assert {k: doc[k] for k in ("event", "operator", "action", "reason")} == {
        "event": "operator_action_refused", "operator": "operator-1", "action": "top_up", "reason": "unknown_wallet"}
    assert "\n" not in line


def test_an_exception_goes_into_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        rec = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = json.loads(logfmt.JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exception"]


def test_configure_picks_the_format_and_refuses_others(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logfmt.configure("json")
        logging.getLogger("bureau.x").info("hello %d", 1, extra={"event": "greeting"})
        doc = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert (doc["message"], doc["event"]) == ("hello 1", "greeting")
        logfmt.configure("text")
        logging.getLogger("bureau.x").info("hello %d", 2)
        assert re.search(r" bureau\.x INFO hello 2$", capsys.readouterr().err.strip())
        with pytest.raises(ValueError):
            logfmt.configure("xml")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
