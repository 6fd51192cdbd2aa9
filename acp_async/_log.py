"""The ``acp_async`` loggers, and text made safe for one log line.

A library logs; the application decides where it goes. The fleet's and the in-process
watch's own lines (a worker started, a server failing or back) go to child loggers, so an
application (the CLI) can show them at INFO while the client's stay at WARNING. A fleet's
retries while Redis is away go to a child of its logger, so they can be shown with the
client's retries (``-v``) rather than with the fleet's own lines.
"""

import logging

log = logging.getLogger("acp_async")
# Without a handler of the application's, records go nowhere (and nothing is printed).
log.addHandler(logging.NullHandler())
fleet_log = logging.getLogger("acp_async.fleet")  # a fleet worker's own lines
# Each retry while Redis is away (INFO): shown with the client's retries, not by default.
fleet_retry_log = logging.getLogger("acp_async.fleet.retries")
watch_log = logging.getLogger("acp_async.watch")  # an in-process watch's own lines

# Every control character (C0, DEL and C1: U+009B is a one-character CSI to some
# terminals) and the Unicode line breaks (U+2028/U+2029 end a line in some viewers as
# surely as "\n" does), each as an escape a person can read: "\x1b", "\n", "\u2028".
_ESCAPES = {
    code: {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}")
    for code in (*range(0x20), *range(0x7F, 0xA0))
} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) and Unicode line break written
    as an escape (``\\n``, ``\\x1b``, ``\\u2028``): a value from a server or from Redis can
    neither forge a log line nor drive a terminal. Other text is left as it is.

    The one escaping function: log lines and the CLI's text output both use it."""
    if text.isprintable():  # the common case: nothing to escape (and no copy)
        return text
    return text.translate(_ESCAPES)


def one_line(text: str, limit: int = 200) -> str:
    """``text`` escaped (see ``escape``) and cut to at most ``limit`` characters, the cut
    marked with an ellipsis: what a fleet keeps as a server's last error."""
    line = escape(text)
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"
