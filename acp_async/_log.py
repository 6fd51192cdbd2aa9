"""The ``acp_async`` loggers, and text made safe for one log line.

A library logs; the application decides where it goes. The fleet's and the in-process
watch's own lines (a worker started, a server failing or back) go to child loggers, so an
application (the CLI) can show them at INFO while the client's stay at WARNING.
"""

import logging

log = logging.getLogger("acp_async")
# Without a handler of the application's, records go nowhere (and nothing is printed).
log.addHandler(logging.NullHandler())
fleet_log = logging.getLogger("acp_async.fleet")  # a fleet worker's own lines
watch_log = logging.getLogger("acp_async.watch")  # an in-process watch's own lines

# U+2028/U+2029 end a line in some viewers as surely as "\n" does.
_LINE_BREAKS = {"\u2028", "\u2029"}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with every control character (C0, DEL, C1) and Unicode line break written
    as an escape (``\\n``, ``\\x1b``, ``\\u2028``): a value from a server or from Redis can
    neither forge a log line nor drive a terminal. Other text is left as it is."""
    if text.isprintable():  # the common case: nothing to escape (and no copy)
        return text
    return "".join(_escaped(c) if _control(c) else c for c in text)


def _control(c: str) -> bool:
    code = ord(c)
    return code < 0x20 or 0x7F <= code < 0xA0 or c in _LINE_BREAKS


def _escaped(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int = 200) -> str:
    """``text`` escaped (see ``escape``) and cut to at most ``limit`` characters, the cut
    marked with an ellipsis: what a fleet keeps as a server's last error."""
    line = escape(text)
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"
