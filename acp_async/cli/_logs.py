"""Where the library's log lines go in the CLI: stderr, one line each, safe to read.

Every line carries its time and level name. Control characters in a message (a server id
or an error from a server or from Redis) are escaped, so data can neither forge a line
nor drive the terminal; known secrets are blanked. By default the fleet's and the watch's
own lines (a worker started or stopped, a server failing or back) show at INFO and the
client's at WARNING; ``-v`` adds retries (the client's, and the fleet's while Redis is
away) and tracebacks, ``-vv`` every request (DEBUG); ``-q`` only warnings and errors.
"""

from __future__ import annotations

import logging
import sys
import traceback

from .. import _log
from ._report import redact

__all__ = ("OWN_LOGGERS", "configure")

# The command's own lines (the fleet worker's, the in-process watch's): INFO by default.
OWN_LOGGERS = ("acp_async.fleet", "acp_async.watch")
# Retries under the command's own loggers: shown as the client's are (from -v on).
RETRY_LOGGERS = ("acp_async.fleet.retries",)


def configure(verbose: int, quiet: bool) -> None:
    """Send ``acp_async``'s records to stderr at the levels the flags ask; once, at start."""
    handler = _StderrNow()
    handler.setFormatter(LineFormatter(tracebacks=verbose >= 1))
    library = logging.getLogger("acp_async")  # ours only: asyncio's chatter stays out
    for old in [h for h in library.handlers if isinstance(h, _StderrNow)]:
        library.removeHandler(old)  # main() called again in one process: one handler
    library.addHandler(handler)
    if quiet:
        client, own = logging.WARNING, logging.WARNING
    elif verbose >= 2:
        client, own = logging.DEBUG, logging.DEBUG
    elif verbose == 1:
        client, own = logging.INFO, logging.INFO
    else:
        client, own = logging.WARNING, logging.INFO
    library.setLevel(client)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    for name in RETRY_LOGGERS:
        logging.getLogger(name).setLevel(client)


class LineFormatter(logging.Formatter):
    """``2026-05-04 09:14:03,120 WARNING fleet: srv-1 is failing: ...``, escaped.

    The message is escaped once its arguments are in it, so an argument holding "\\n"
    cannot start a line of its own. With ``tracebacks``, an exception's traceback follows,
    each of its lines escaped; without, its type and message end the line.
    """

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        when = self.formatTime(record)
        line = f"{when} {record.levelname} {_log.escape(record.message)}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and self._tracebacks:
            line = "\n".join([line, *_traceback_lines(exc)])
        elif exc is not None:
            line += _log.escape(f" ({type(exc).__name__}: {exc})")
        return redact(line)


def _traceback_lines(exc: BaseException) -> list[str]:
    """``exc``'s traceback as lines, each escaped: a frame's own lines stay lines, while an
    exception's message (which may hold anything, "\\n" included) stays on one."""
    lines: list[str] = []
    for chunk in traceback.TracebackException.from_exception(exc).format():
        if chunk.startswith("  File "):
            lines.extend(_log.escape(each) for each in chunk.splitlines())
        elif chunk.strip():
            lines.append(_log.escape(chunk.strip("\n")))
    return lines


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was at start-up.

    While the progress bar is drawn, rich swaps ``sys.stderr`` for a proxy that prints
    above the bar; a handler holding the original stream would scribble over it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
