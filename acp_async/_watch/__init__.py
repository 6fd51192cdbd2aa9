"""One watch engine (schedule, diff, compact state) over two stores: memory and Redis.

``_state`` packs what is remembered per server; ``_diff`` compares a page with it;
``_poll`` fetches one server's page (closing gaps); ``_schedule`` says when next;
``_settle`` turns a poll's outcome into what either store writes, and holds one
server's isolation boundary; ``_memory`` is the in-process watch; ``_redis`` keeps the
same state in Redis for ``acp_async.fleet``. Which errors end a loop is
``_retry.LOOP_ENDING``'s answer, asked by both stores.
"""

from ._memory import Watcher, WatchState
from ._poll import FetchPage

__all__ = ("FetchPage", "WatchState", "Watcher")
