"""The ``acp_async`` logger. A library logs; the application decides where it goes."""

import logging

log = logging.getLogger("acp_async")
# Without a handler of the application's, records go nowhere (and nothing is printed).
log.addHandler(logging.NullHandler())
