"""What a watch remembers of one server, packed into a few bytes per run.

Per run: a digest of its id, a digest of its fields (the fingerprint), its status and
its change number; per server: whether it was ever polled, and its schedule counters.
The same bytes live in the in-process ``WatchState`` and in Redis, so memory per server
does not grow with the size of runs' ``input``/``output``.

Format 1 (the first byte: the version in its high nibble, flags in its low one:
"polled", "busy" and "busy is set": a state packed before that flag existed is read
whole, and a reader older than the flag ignores it): a 13-byte header, then
12 bytes a run (5-byte id digest, 6-byte fingerprint, status code), then each run's
change number as a LEB128 varint (one byte below 128 changes), then the text of any
status this version does not know. 50 runs take 663 bytes, so the value Redis keeps
(with its ``token:`` prefix) falls in the allocator's 768-byte class, not the 896 one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import attrs

from .. import _json
from ..errors import ResponseValidationError
from ..models import TERMINAL_STATUSES, RunStatus

__all__ = ("Seen", "ServerState", "UnreadableState", "body_digest", "fingerprint", "id_digest")

_page_hash: Callable[[bytes], bytes] | None = None


# 48 bits: a change is missed only if the changed run's fingerprint equals the one
# remembered for that run, odds 2**-48 (~3.6e-15) a change: at 1,000,000 servers with one
# change each a minute, about one missed change in 5,000 years.
DIGEST_SIZE = 6
# 40 bits tell apart the runs of one page: two of 1,000 ids (a gap-closing page at the
# largest limit) collide with odds ~1000**2 / 2 / 2**40 = 4.5e-7.
ID_DIGEST_SIZE = 5
# The JSON keys the model reads: a field the model ignores cannot make a run "updated".
_FIELD_KEYS = (
    "id",
    "serverId",
    "threadId",
    "title",
    "input",
    "output",
    "mode",
    "status",
    "error",
    "metadata",
    "createdAt",
    "completedAt",
    "sessionProtocol",
    "threadBacked",
    "threadStatus",
    "threadTitle",
)
_TIME_POSITIONS = (_FIELD_KEYS.index("createdAt"), _FIELD_KEYS.index("completedAt"))
_HEADER = struct.Struct(">BBBH8s")  # version+flags, quiet polls, errors, run count, page
_RECORD = struct.Struct(f">{ID_DIGEST_SIZE}s{DIGEST_SIZE}sB")  # id, fields, status
_POLLED = 1
_BUSY = 2  # a run is not terminal: the cadence is known without reading the runs ...
_BUSY_KNOWN = 4  # ... when this flag says _BUSY was written (else the runs are read)
_VERSION = 1  # the high nibble of the first byte; format 0 (16-byte records) is refused
_STATUSES: tuple[RunStatus | None, ...] = (None, *RunStatus)
_CODES = {status: code for code, status in enumerate(_STATUSES)}
_OTHER = 255  # a status this version does not know: its text follows the records


def body_digest(body: bytes) -> bytes:
    """A digest of a page's raw bytes, so an identical page is neither decoded nor
    structured; b"" without the ``speed`` extra's xxhash (then every page is diffed run
    by run). Only ever compared with itself: a mismatch just means a full diff."""
    global _page_hash  # noqa: PLW0603 - looked up once, on first use
    if _page_hash is None:
        _page_hash = _xxh3()
    return _page_hash(body)


def _no_hash(data: bytes) -> bytes:
    return b""


def _xxh3() -> Callable[[bytes], bytes]:
    """Imported when first needed, so ``import acp_async`` loads no optional package."""
    try:
        import xxhash  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised when the `speed` extra is absent
        return _no_hash
    return xxhash.xxh3_64_digest


def id_digest(run_id: str) -> bytes:
    return hashlib.blake2b(run_id.encode(), digest_size=ID_DIGEST_SIZE).digest()


def fingerprint(item: dict[str, Any]) -> bytes:
    """A digest of a decoded run's fields: equal fields, equal fingerprint, in any process
    (with or without the ``speed`` extra: both encoders write the same bytes).

    Times count by the moment they name, not their spelling (``Z`` or ``+00:00``,
    milliseconds or microseconds), as the model compares them. Fields the encoder refuses
    (nested deeper than 254 levels) are a ResponseValidationError: that server's data.
    """
    fields = [item.get(key) for key in _FIELD_KEYS]
    for at in _TIME_POSITIONS:
        fields[at] = _moment(fields[at])
    try:
        encoded = _json.dumps_sorted(fields)
    except _json.ENCODE_ERRORS as exc:
        raise ResponseValidationError(f"its fields cannot be fingerprinted: {exc}") from None
    return hashlib.blake2b(encoded, digest_size=DIGEST_SIZE).digest()


def _moment(value: Any) -> Any:
    if type(value) is not str:
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # left as it is: structuring will say what is wrong with it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class UnreadableState(ValueError):
    """Bytes that are not a packed state of this format (or whose runs are cut short)."""


class Seen(NamedTuple):
    """One run as remembered: fingerprint, status and how many changes were reported.

    A named tuple, not an attrs class: a worker builds 50 of these for every server it
    claims, and a tuple is made several times faster."""

    fingerprint: bytes
    status: RunStatus | str | None
    changes: int

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@attrs.define(eq=False)
class ServerState:
    """One server: its runs by id digest (oldest first) and its schedule counters.

    A state unpacked from bytes keeps its runs packed until they are read: a poll whose
    page is the last one's, byte for byte, never reads them and packs them again by
    copying, so a watch's steady state costs a digest of the page, not 50 records."""

    _runs: dict[bytes, Seen] | None = attrs.Factory(dict)  # None: still in _packed
    polled: bool = False
    quiet_polls: int = 0
    errors: int = 0
    page: bytes = b""  # body_digest of the last page (b"": none)
    _packed: bytes = attrs.field(default=b"", init=False, repr=False)  # runs, as packed
    _count: int = attrs.field(default=0, init=False, repr=False)
    _packed_busy: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def runs(self) -> dict[bytes, Seen]:
        """Read from the packed bytes on first use (UnreadableState if they are malformed)."""
        if self._runs is None:
            self._runs = _read_runs(self._packed, self._count)
            self._packed = b""
        return self._runs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerState):
            return NotImplemented
        return self.pack() == other.pack()  # read or still packed, the same runs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def unchanged(self) -> ServerState:
        """The state after a poll whose page is the last one's: the same runs, unread."""
        return self.rescheduled(quiet_polls=self.quiet_polls, errors=self.errors)

    def rescheduled(self, *, quiet_polls: int, errors: int) -> ServerState:
        """A copy with these schedule counters: the same runs (still packed if they were),
        ``self`` left as it is."""
        state = ServerState(
            self._runs, polled=self.polled, quiet_polls=quiet_polls, errors=errors, page=self.page
        )
        state._keep(self._packed, self._count, self._packed_busy)
        return state

    def _keep(self, packed: bytes, count: int, busy: bool) -> None:
        self._packed, self._count, self._packed_busy = packed, count, busy

    def busy(self) -> bool:
        """A run not yet terminal: the server is polled at the busy cadence."""
        if self._runs is None:
            return self._packed_busy
        return any(not seen.is_terminal for seen in self._runs.values())

    def pack(self) -> bytes:
        flags = _VERSION << 4 | _BUSY_KNOWN | (_BUSY if self.busy() else 0)
        flags |= _POLLED if self.polled else 0
        quiet, errors = min(self.quiet_polls, 255), min(self.errors, 255)
        if self._runs is None:
            header = _HEADER.pack(flags, quiet, errors, self._count, self.page)
            return header + self._packed
        parts = [_HEADER.pack(flags, quiet, errors, len(self._runs), self.page)]
        numbers = bytearray()
        others = []
        for digest, seen in self._runs.items():
            code = _CODES.get(seen.status, _OTHER)  # type: ignore[arg-type]
            if code == _OTHER:
                text = str(seen.status).encode()[:255]
                others.append(bytes((len(text),)) + text)
            parts.append(_RECORD.pack(digest, seen.fingerprint, code))
            _put_varint(numbers, seen.changes)
        return b"".join([*parts, numbers, *others])

    @classmethod
    def unpack(cls, blob: bytes) -> ServerState:
        """The header now, the runs when first read. Raises UnreadableState when ``blob``
        is not a packed state of this format (``runs`` raises it for a malformed run)."""
        try:
            flags, quiet, errors, count, page = _HEADER.unpack_from(blob)
        except struct.error as exc:
            raise UnreadableState(f"not a packed watch state: {exc}") from None
        version = flags >> 4
        if version != _VERSION:
            raise UnreadableState(f"not a packed watch state of format {_VERSION}: {version}")
        if len(blob) < _HEADER.size + count * (_RECORD.size + 1):  # a change number each
            raise UnreadableState("not a packed watch state: truncated")
        state = cls(
            None,
            polled=bool(flags & _POLLED),
            quiet_polls=quiet,
            errors=errors,
            page=b"" if page == bytes(8) else page,
        )
        state._keep(blob[_HEADER.size :], count, bool(flags & _BUSY))
        if not flags & _BUSY_KNOWN:
            state.runs  # noqa: B018 - read now: only its runs say whether it is busy
        return state


def _read_runs(packed: bytes, count: int) -> dict[bytes, Seen]:
    """The runs part of a packed state: records, change numbers, unknown statuses' text."""
    end = count * _RECORD.size
    records = list(_RECORD.iter_unpack(packed[:end]))
    small = packed[end : end + count]
    if len(small) == count and (not small or max(small) < 0x80):
        numbers: list[int] = list(small)  # the usual case: every run changed < 128 times
        offset = end + count
    else:
        numbers, offset = [], end
        for _ in records:
            number, offset = _get_varint(packed, offset)
            numbers.append(number)
    if offset == len(packed) and (not records or max(r[2] for r in records) < len(_STATUSES)):
        return {  # fast path: only statuses this version knows
            digest: Seen(fields, _STATUSES[code], changes)
            for (digest, fields, code), changes in zip(records, numbers, strict=True)
        }
    return _with_other_statuses(records, numbers, packed, offset)


def _with_other_statuses(
    records: list[tuple[bytes, bytes, int]], numbers: list[int], blob: bytes, offset: int
) -> dict[bytes, Seen]:
    """The runs when some status is one this version does not know (its text follows)."""
    runs = {}
    for (digest, fields, code), changes in zip(records, numbers, strict=True):
        status: RunStatus | str | None
        if code == _OTHER:
            size = blob[offset] if offset < len(blob) else 0
            status = blob[offset + 1 : offset + 1 + size].decode(errors="replace")
            offset += 1 + size
        elif code < len(_STATUSES):
            status = _STATUSES[code]
        else:
            raise UnreadableState(f"not a packed watch state: status code {code}")
        runs[digest] = Seen(fields, status, changes)
    return runs


def _put_varint(out: bytearray, number: int) -> None:
    """LEB128: seven bits a byte, low first; the high bit says another byte follows."""
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)


def _get_varint(blob: bytes, offset: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        if offset >= len(blob) or shift > 63:
            raise UnreadableState("not a packed watch state: a change number is cut short")
        byte = blob[offset]
        offset += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            return number, offset
        shift += 7
