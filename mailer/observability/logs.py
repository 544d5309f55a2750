"""Log lines as JSON objects, one a line, when ``NEWSLETTER_LOG_FORMAT=json``: for every process (the CLI,
each web process, each worker), with whatever the call site gave as ``extra=`` (``campaign_id``,
``delivery_id``, ``message_id``, ``sns_message_id``, ...) as fields of their own.

The default, ``text``, changes nothing: each process logs the way it always did (uvicorn's and Celery's
formats, the CLI's warnings on stderr).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from mailer.settings import Settings

__all__ = ["JsonFormatter", "configure_logging"]

# attributes every LogRecord has: anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
}
# loggers that bring their own handlers and stop propagating (uvicorn's); in JSON mode they go through ours
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery.task", "celery.redirected")


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC), level, logger, message, process, pid, the extras and the
    exception's traceback, if any."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def _is_ours(handler: logging.Handler) -> bool:
    return isinstance(handler.formatter, JsonFormatter)


def configure_logging(settings: Settings, process: str, *, level: int | None = logging.INFO) -> None:
    """JSON lines on stderr for this whole process (idempotent), at ``level`` (None: keep the root's, as
    Celery's --loglevel set it), when the settings ask for them; nothing at all in text mode. ``process``
    names the kind of process in every line (cli, web, worker)."""
    if settings.log_format != "json":
        return
    root = logging.getLogger()
    if not any(_is_ours(h) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(process))
        root.handlers = [handler]
        if level is not None:
            root.setLevel(level)
        logging.captureWarnings(True)  # Python's warnings as log lines too, not raw text on stderr
    for name in _OWN_HANDLERS:  # (again: Celery gives its task logger a handler after the root's)
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
