"""The node's log format: text lines (the default) or, with the setting log_format=json
(BUREAU_LOG_FORMAT=json), one JSON object per line:

    {"time": "2026-12-01T12:00:00.123Z", "level": "WARNING", "logger": "bureau.node",
     "message": "operator action top_up by operator-1 refused: ...", "event": "operator_action_refused",
     "action": "top_up", "operator": "operator-1", "reason": "unknown_wallet", ...}

time is UTC; the fields after message are the line's event fields, given as
`log.info(..., extra={"event": ..., ...})`; a line with an exception adds "exception"."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone


from .config import LOG_FORMATS as FORMATS
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# what every LogRecord has: anything else on a record came in through `extra`
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def event_fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, tz=timezone.utc)
               .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for k, v in event_fields(record).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger writes to stderr in `log_format`."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in ("httpx", "httpcore"):  # a line per request the dashboard makes to the peers
        logging.getLogger(chatty).setLevel(logging.WARNING)
