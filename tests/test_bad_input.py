"""Bad input: every malformed response is a typed outcome, every bad argument is refused early.

The corpus is served over real HTTP by a scripted loopback server, so decoding,
size caps and error mapping are exercised exactly as in production.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acp_async import (
    ACPClient,
    ACPError,
    AgentRunList,
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    ResponseValidationError,
)
from acp_async.testing import FakeACPServer

from .conftest import assert_no_leftovers

RUN = {
    "id": "run-1",
    "serverId": "srv",
    "threadId": "th-1",
    "title": "t",
    "input": "in",
    "output": "out",
    "mode": "async",
    "status": "completed",
    "error": "e",
    "metadata": {"k": "v"},
    "createdAt": "2026-11-29T06:00:00Z",
    "completedAt": "2026-11-29T06:01:00+02:00",
    "sessionProtocol": "acp/1",
    "threadBacked": True,
    "threadStatus": "idle",
    "threadTitle": "Thread",
}
TOP = {"serverId": "srv", "agentRuntimeId": "rt", "object": "list", "data": [RUN]}
CAP = 1_000_000  # max_response_bytes of the corpus client
SOAK = os.environ.get("ACP_SOAK") == "1"


@attrs.frozen
class Case:
    """One scripted response and the outcome it must produce."""

    name: str
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=lambda: {"Content-Type": "application/json"})
    expect: type[Any] = ResponseValidationError
    match: str | None = None
    raw: bytes | None = None  # bytes written to the socket as the whole response


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _with_run(**fields: Any) -> bytes:
    return _json({**TOP, "data": [{**RUN, **fields}]})


WRONG_TYPES: dict[str, list[Any]] = {
    "string": [5, 1.5, True, [], {}],
    "enum": [5, True, ["completed"], {"v": 1}],
    "bool": ["true", 1, 0, [], {}],
    "object": ["x", 1, [], True],
    "date": [5, True, [], {}, "not a date", "2025-13-45T00:00:00Z", "", "2025-06-02T25:00:00"],
}
FIELD_KINDS = {
    "id": "string",
    "serverId": "string",
    "threadId": "string",
    "title": "string",
    "input": "string",
    "output": "string",
    "mode": "enum",
    "status": "enum",
    "error": "string",
    "metadata": "object",
    "createdAt": "date",
    "completedAt": "date",
    "sessionProtocol": "string",
    "threadBacked": "bool",
    "threadStatus": "string",
    "threadTitle": "string",
}


def _corpus() -> Iterator[Case]:
    yield Case("invalid json", b'{"data": [{"id": "run-')
    yield Case(
        "html with 200", b"<html><body>OK</body></html>", headers={"Content-Type": "text/html"}
    )
    yield Case(
        "json as text/plain",
        _json(TOP),
        headers={"Content-Type": "text/plain"},
        expect=AgentRunList,
    )
    yield Case("json with no content type", _json(TOP), headers={}, expect=AgentRunList)
    yield Case("xml", b"<runs/>", headers={"Content-Type": "application/xml"})
    yield Case("empty 200", b"")
    yield Case("empty 204", b"", status=204)
    yield Case("whitespace", b"  \n ")
    yield Case("json null", b"null", match=r"\$: expected an object")
    yield Case("json list", b"[]", match=r"\$: expected an object")
    yield Case("json string", b'"data"', match=r"\$: expected an object")
    yield Case("json number", b"42")
    yield Case("NaN literal", b'{"data": [], "x": NaN}')
    yield Case("Infinity literal", b'{"data": [], "x": Infinity}')
    yield Case("trailing garbage", _json(TOP) + b"}")
    yield Case("two documents", _json(TOP) + _json(TOP))
    yield Case("huge number id", b'{"data": [{"id": 1e999}]}')
    yield Case("non-utf-8 bytes", b'{"data": [{"id": "r", "title": "\xff\xfe"}]}')
    yield Case("latin-1 body", '{"data": [{"title": "café"}]}'.encode("latin-1"))
    yield Case("utf-16 with bom", _json(TOP).decode().encode("utf-16"))
    yield Case("utf-8 bom", b"\xef\xbb\xbf" + _json(TOP))
    yield Case(
        "lone surrogate escape", b'{"data": [{"id": "r", "title": "\\ud800"}]}', expect=object
    )
    yield Case("deep nesting", b"[" * 100_000 + b"]" * 100_000)
    deep = _with_run(metadata="DEEP")
    yield Case("deep nesting in metadata", deep.replace(b'"DEEP"', _nested(5000)))
    yield Case(
        "moderate nesting in metadata",
        deep.replace(b'"DEEP"', _nested(200)),
        expect=AgentRunList,
    )
    yield Case("huge string", _with_run(title="x" * 900_000), expect=AgentRunList)
    yield Case(
        "huge string over the cap", _with_run(title="x" * (CAP + 1)), match="max_response_bytes"
    )
    yield Case(
        "10k runs",
        _json({"data": [{**RUN, "id": f"r{i}"} for i in range(2000)]}),
        expect=AgentRunList,
    )
    yield Case("data is a string", _json({"data": "x"}), match=r"\$\.data")
    yield Case("data is an object", _json({"data": {}}), match=r"\$\.data")
    yield Case("runs is a number", _json({"runs": 1}), match=r"\$\.runs")
    yield Case("data holds null", _json({"data": [None]}), match=r"\$\.data\[0\]")
    yield Case("data holds a list", _json({"data": [[]]}), match=r"\$\.data\[0\]")
    yield Case("data holds a string", _json({"data": ["run-1"]}), match=r"\$\.data\[0\]")
    for key in ("serverId", "agentRuntimeId", "object"):
        for value in (5, [], {}, True):
            yield Case(f"top {key} is {value!r}", _json({**TOP, key: value}), match=rf"\$\.{key}")
    for key, kind in FIELD_KINDS.items():
        for value in WRONG_TYPES[kind]:
            yield Case(
                f"run {key} is {value!r}", _with_run(**{key: value}), match=rf"\$\.data\[0\]\.{key}"
            )
    # null in every position: a null field is absent, a null list is empty.
    for key in TOP:
        yield Case(f"top {key} null", _json({**TOP, key: None}), expect=AgentRunList)
    yield Case("runs null", _json({**TOP, "runs": None}), expect=AgentRunList)
    for key in RUN:
        yield Case(f"run {key} null", _with_run(**{key: None}), expect=AgentRunList)
    yield Case(
        "null inside metadata", _with_run(metadata={"a": None, "b": [None]}), expect=AgentRunList
    )
    yield Case("every run field null", _json({"data": [dict.fromkeys(RUN)]}), expect=AgentRunList)
    # Sizes and framing.
    bomb = gzip.compress(b" " * (20 * CAP))
    yield Case("gzip bomb", bomb, headers={"Content-Encoding": "gzip"}, match="max_response_bytes")
    # aiohttp inflates a corrupt gzip stream to nothing: an empty, invalid JSON body.
    yield Case(
        "gzip garbage",
        b"\x1f\x8b\x08\x00garbage",
        headers={"Content-Encoding": "gzip"},
        expect=ResponseValidationError,
    )
    yield Case(
        "gzip of valid json",
        gzip.compress(_json(TOP)),
        headers={"Content-Encoding": "gzip"},
        expect=AgentRunList,
    )
    yield Case(
        "Content-Length over the cap",
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999\r\n\r\n{}",
        match="max_response_bytes",
    )
    yield Case(
        "Content-Length longer than the body",
        raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{}",
        expect=APIConnectionError,
    )
    yield Case(
        "Content-Length not a number",
        raw=b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}",
        expect=APIConnectionError,
    )
    yield Case("not HTTP at all", raw=b"SSH-2.0-OpenSSH_9.6\r\n", expect=APIConnectionError)
    yield Case("no response at all", raw=b"", expect=APIConnectionError)
    # Error bodies that do not follow the API's error shape still map by status.
    yield Case(
        "400 with wrong-typed error fields",
        _json({"error": 5, "message": None, "details": "x"}),
        status=400,
        expect=BadRequestError,
    )
    yield Case("500 with invalid json", b"{oops", status=500, expect=InternalServerError)
    yield Case(
        "503 html",
        b"<html>down</html>",
        status=503,
        headers={"Content-Type": "text/html"},
        expect=InternalServerError,
    )
    yield Case(
        "429 with a bad Retry-After",
        b"",
        status=429,
        headers={"Retry-After": "soon"},
        expect=RateLimitError,
    )
    yield Case(
        "429 with a negative Retry-After",
        b"",
        status=429,
        headers={"Retry-After": "-5"},
        expect=RateLimitError,
    )
    yield Case(
        "429 with NaN Retry-After",
        b"",
        status=429,
        headers={"Retry-After": "nan"},
        expect=RateLimitError,
    )
    yield Case("unknown 2xx status 299", _json(TOP), status=299, expect=AgentRunList)
    yield Case("1xx-like 600 status", b"", status=599, expect=APIStatusError)
    # An error page we cannot read is still its status (retried as a 500 is), not a
    # validation error; its body is simply not kept.
    yield Case("error body over the cap", b"x" * (CAP + 10), status=500, expect=InternalServerError)


def _nested(depth: int) -> bytes:
    return b'{"n": ' * depth + b"{}" + b"}" * depth


CORPUS = list(_corpus())


class _Scripted:
    """A loopback server answering every request with the current case."""

    def __init__(self) -> None:
        self.case: Case = CORPUS[0]
        self.body: bytes = b"{}"
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        case = self.case
        if case.raw is not None:
            assert request.transport is not None
            request.transport.write(case.raw)
            request.transport.close()
            return web.Response()
        return web.Response(status=case.status, body=case.body, headers=case.headers)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/servers/{id}/runtime/agent/runs", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_malformed_response_corpus(no_backoff: None) -> None:
    """Each of the corpus' responses gives a page or the right typed error, never a crash."""
    assert len(CORPUS) >= 150
    scripted = _Scripted()
    outcomes: dict[str, object] = {}
    async with scripted as base_url:
        async with ACPClient(
            "k", base_url=base_url, max_retries=1, timeout=2.0, max_response_bytes=CAP
        ) as client:
            for case in CORPUS:
                scripted.case = case
                try:
                    outcome: object = await client.runs.list("srv")
                except ACPError as exc:
                    outcome = exc
                outcomes[case.name] = outcome
                assert isinstance(outcome, case.expect), (case.name, outcome)
                if case.match is not None:
                    assert isinstance(outcome, ACPError)
                    assert re.search(case.match, str(outcome)), (case.name, outcome)
            await assert_no_leftovers(client)
            # The client survives the whole corpus.
            scripted.case = Case("fine", _json(TOP), expect=AgentRunList)
            assert (await client.runs.list("srv")).data[0].id == "run-1"
    assert len(outcomes) == len(CORPUS)  # names are unique


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
run_like = st.fixed_dictionaries({}, optional=dict.fromkeys(RUN, json_values))
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["data", "runs", "serverId", "object"]),
        st.lists(run_like, max_size=3) | json_values,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
    st.lists(run_like, max_size=3).map(lambda runs: json.dumps({"data": runs}).encode()),
)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[asyncio.Runner, _Scripted, ACPClient]]:
    """One loop, server and client for all Hypothesis examples (a sync test drives them)."""
    runner = asyncio.Runner()
    scripted = _Scripted()
    base_url = runner.run(scripted.__aenter__())

    async def make() -> ACPClient:
        return await ACPClient("k", base_url=base_url, max_retries=0).__aenter__()

    client = runner.run(make())
    yield runner, scripted, client
    runner.run(client.close())
    runner.run(scripted.__aexit__())
    runner.close()


@settings(
    max_examples=3000 if SOAK else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_arbitrary_bytes_over_http_are_a_page_or_a_validation_error(
    live: tuple[asyncio.Runner, _Scripted, ACPClient], body: bytes
) -> None:
    """Any 200 body, JSON or not, gives an AgentRunList or ResponseValidationError over HTTP."""
    runner, scripted, client = live
    scripted.case = Case("hypothesis", body)
    try:
        page = runner.run(client.runs.list("srv"))
    except ResponseValidationError:
        return
    assert isinstance(page, AgentRunList)


# -- bad arguments: refused before any request -----------------------------------------------

BAD_IDS = [
    ("", ValueError),
    (".", ValueError),
    ("..", ValueError),
    ("srv\n2026-12-03 INFO forged", ValueError),  # C0 and DEL: never part of an id
    ("\x1b[2J", ValueError),
    ("srv\x7f", ValueError),
    ("\x00", ValueError),
    (None, TypeError),
    (5, TypeError),
    (b"srv", TypeError),
]
BAD_LIMITS = [
    (0, ValueError),
    (-1, ValueError),
    (True, TypeError),
    (1.5, TypeError),
    ("10", TypeError),
    (float("nan"), TypeError),
]
BAD_SECONDS = [
    (0, ValueError),
    (-1.0, ValueError),
    (float("inf"), ValueError),
    (float("nan"), ValueError),
    (True, TypeError),
    ("5", TypeError),
    (None, TypeError),
]
BAD_CONCURRENCY = [
    (0, ValueError),
    (-3, ValueError),
    (2.0, TypeError),
    (True, TypeError),
    (None, TypeError),
]


async def _drain(iterator: AsyncIterator[Any]) -> None:
    async for _ in iterator:
        pass


def _bad_calls(
    fake: FakeACPServer, client: ACPClient
) -> Iterator[tuple[str, Callable[[], Any], type[Exception]]]:
    sid = fake.server_ids[0]
    runs = client.runs
    for bad, error in BAD_IDS:
        # Ids taken from an iterable (list_many, watch) raise ValueError from the iterator.
        # None is no id at all for list, iter and pages: the default server id is used,
        # and with none configured that is a ValueError naming COMPUTER_AGENTS_SERVER_ID.
        one_server_error = ValueError if bad is None else error
        yield f"list id={bad!r}", lambda b=bad: runs.list(b), one_server_error
        yield f"iter id={bad!r}", lambda b=bad: _drain(runs.iter(b)), one_server_error
        yield f"pages id={bad!r}", lambda b=bad: _drain(runs.pages(b)), one_server_error
        yield f"list_many id={bad!r}", lambda b=bad: _drain(runs.list_many([b, sid])), ValueError
        yield f"watch id={bad!r}", lambda b=bad: _drain(runs.watch([b, sid])), ValueError
        yield f"wait_for id={bad!r}", lambda b=bad: runs.wait_for(b, "run-1"), error
    for bad in ("", None, 5):
        yield f"wait_for run_id={bad!r}", lambda b=bad: runs.wait_for(sid, b), ValueError
    for ids in ("srv-0001", b"srv-0001"):
        yield f"list_many ids={ids!r}", lambda i=ids: _drain(runs.list_many(i)), TypeError
        yield f"watch ids={ids!r}", lambda i=ids: _drain(runs.watch(i)), TypeError
    for bad, error in BAD_LIMITS:
        yield f"list limit={bad!r}", lambda b=bad: runs.list(sid, limit=b), error
        yield f"iter limit={bad!r}", lambda b=bad: _drain(runs.iter(sid, limit=b)), error
        yield f"iter max_items={bad!r}", lambda b=bad: _drain(runs.iter(sid, max_items=b)), error
        yield f"pages max_items={bad!r}", lambda b=bad: _drain(runs.pages(sid, max_items=b)), error
        yield (
            f"list_many limit={bad!r}",
            lambda b=bad: _drain(runs.list_many([sid], limit=b)),
            error,
        )
        yield f"watch limit={bad!r}", lambda b=bad: _drain(runs.watch([sid], limit=b)), error
        yield f"wait_for limit={bad!r}", lambda b=bad: runs.wait_for(sid, "r", limit=b), error
    for bad, error in BAD_SECONDS:
        yield f"watch interval={bad!r}", lambda b=bad: _drain(runs.watch([sid], interval=b)), error
        yield f"wait_for interval={bad!r}", lambda b=bad: runs.wait_for(sid, "r", interval=b), error
        yield f"wait_for timeout={bad!r}", lambda b=bad: runs.wait_for(sid, "r", timeout=b), error
    for bad, error in BAD_CONCURRENCY:
        yield (
            f"list_many concurrency={bad!r}",
            lambda b=bad: _drain(runs.list_many([sid], concurrency=b)),
            error,
        )
        yield (
            f"watch concurrency={bad!r}",
            lambda b=bad: _drain(runs.watch([sid], concurrency=b)),
            error,
        )


async def test_bad_arguments_are_refused_before_any_request(
    fake: FakeACPServer, client: ACPClient
) -> None:
    """Bad ids, limits, intervals, timeouts and concurrency raise ValueError/TypeError, unsent."""
    calls = list(_bad_calls(fake, client))
    assert len(calls) >= 80
    for name, call, error in calls:
        with pytest.raises(error):
            await asyncio.wait_for(call(), 2)
        assert fake.requests == [], name
    await assert_no_leftovers(client)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("timeout", 0, ValueError),
        ("timeout", float("nan"), ValueError),
        ("timeout", "1", TypeError),
        ("connect_timeout", -1, ValueError),
        ("max_retries", -1, ValueError),
        ("max_retries", 1.0, TypeError),
        ("max_connections", 0, ValueError),
        ("max_response_bytes", 0, ValueError),
        ("max_response_bytes", True, TypeError),
        ("base_url", "ftp://x", ValueError),
        ("base_url", "http://", ValueError),
        ("api_key", "a\r\nX-Evil: 1", ValueError),
    ],
)
def test_bad_client_options_are_refused_at_construction(
    option: str, value: Any, error: type[Exception]
) -> None:
    """Bad client options fail at construction with ValueError or TypeError."""
    kwargs: dict[str, Any] = {"api_key": "k", option: value}
    with pytest.raises(error):
        ACPClient(**kwargs)
