"""Split a fleet across N worker processes without coordination (rendezvous hashing)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from hashlib import blake2b

from . import _validate

__all__ = ("shard", "shard_of")

MAX_SHARDS = 10_000


def _score(server_id: str, shard_index: int) -> int:
    digest = blake2b(f"{shard_index}\x00{server_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(server_id: str, count: int) -> int:
    """The shard (0 to count-1) that owns ``server_id``: the one with the highest score.

    Going from N to N+1 shards moves only the ids whose new shard wins: about 1/(N+1).
    """
    return max(range(count), key=lambda index: _score(server_id, index))


def shard(server_ids: Iterable[str], index: int, count: int) -> Iterator[str]:
    """The ids of ``server_ids`` that worker ``index`` of ``count`` owns, lazily.

    Rendezvous hashing: the answer is the same on every host and run, needs no
    coordination, and going from N to N+1 workers moves only about 1/(N+1) of the ids.

    Args:
        server_ids: an iterable of server ids (not a single ``str``).
        index: this worker's number, ``0 <= index < count``.
        count: how many workers share the ids, ``1 <= count <= 10,000``.

    Raises:
        ValueError, TypeError: a bad ``index`` or ``count`` (at once), or a bad id (while
            iterating).

    Example::

        mine = list(shard(all_server_ids, index=2, count=4))   # worker 2 of 4
    """
    ids = _validate.server_id_iterable(server_ids)
    count = _validate.int_at_least("count", count, 1)
    if count > MAX_SHARDS:
        raise ValueError(f"count must be <= {MAX_SHARDS} (each id is scored once per shard)")
    index = _validate.int_at_least("index", index, 0)
    if index >= count:
        raise ValueError(f"index must be < count ({count}), got {index}")
    return (sid for sid in ids if shard_of(_validate.taken_server_id(sid), count) == index)
