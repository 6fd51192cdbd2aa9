"""One watch engine (schedule, diff, compact state) over two stores: memory and Redis.

What both stores share lives here: ``_state`` packs what is remembered per server;
``_diff`` compares a page with it; ``_poll`` fetches one server's page (closing gaps);
``_schedule`` says when next; ``_settle`` turns a poll's outcome into what either store
writes, and holds one server's isolation boundary; ``_memory`` is the in-process store
and watch. The Redis store and its worker are ``acp_async.fleet`` (``_store``,
``_worker``). Which errors end a loop is ``_retry.LOOP_ENDING``'s answer, asked by both
stores.
"""

from ._memory import Watcher, WatchState
from ._poll import FetchPage

__all__ = ("FetchPage", "WatchState", "Watcher")
