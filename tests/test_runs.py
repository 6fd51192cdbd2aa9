"""client.runs.list / iter / pages: limits, Link paging, de-duplication and endings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from acp_async import ACPClient, AgentRun, AgentRunList
from acp_async.testing import FakeACPServer

from .conftest import serve_runs

SERVER = "srv-0001"


# `fleet`: one server of 23 runs, served five per page with a Link to the next.
pytestmark = pytest.mark.fleet(servers=1, runs_per_server=23, page_size=5)


async def test_limit_is_sent_and_honoured(fake: FakeACPServer, client: ACPClient) -> None:
    """`limit=2` asks for and returns the two newest runs."""
    runs = await client.runs.list(SERVER, limit=2)
    assert [r.id for r in runs.data] == [r["id"] for r in fake.runs(SERVER)[:2]]
    assert fake.requests[-1].query == {"limit": "2"}


async def test_iter_follows_next_links(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """iter yields every run once across Link-paged responses."""
    ids = [run.id async for run in fleet_client.runs.iter(SERVER, limit=5)]
    assert ids == [r["id"] for r in fleet.runs(SERVER)]
    assert len(fleet.requests) == 5


async def test_pages_yields_each_page(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """pages yields the pages as received."""
    sizes = [len(page) async for page in fleet_client.runs.pages(SERVER, limit=5)]
    assert sizes == [5, 5, 5, 5, 3]


async def test_max_items_caps_the_total(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """max_items stops iter and pages at the cap without fetching more pages."""
    ids = [run.id async for run in fleet_client.runs.iter(SERVER, limit=5, max_items=7)]
    assert ids == [r["id"] for r in fleet.runs(SERVER)[:7]]
    assert len(fleet.requests) == 2
    sizes = [len(page) async for page in fleet_client.runs.pages(SERVER, limit=5, max_items=7)]
    assert sizes == [5, 2]


async def test_single_page_without_link(fake: FakeACPServer, client: ACPClient) -> None:
    """The documented endpoint answers one page: iter stops after it."""
    ids = [run.id async for run in client.runs.iter(SERVER)]
    assert len(ids) == 5
    assert len(fake.requests) == 1


async def test_breaking_out_releases_the_connection(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """Leaving the loop early leaves no connection acquired."""
    async for _ in fleet_client.runs.iter(SERVER, limit=5):
        break
    session = fleet_client._transport._session
    assert session is not None
    connector = session.connector
    assert connector is not None
    assert not connector._acquired  # type: ignore[attr-defined]


@asynccontextmanager
async def scripted(
    pages: Callable[[web.Request], tuple[dict[str, Any], str | None]],
) -> AsyncIterator[str]:
    """A loopback server whose answers (body, Link target) a test scripts per request."""

    async def handler(request: web.Request) -> web.Response:
        body, link = pages(request)
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)

    async with serve_runs(handler) as base_url:
        yield base_url


def runs(*ids: str) -> dict[str, Any]:
    return {"data": [{"id": i} for i in ids]}


async def test_duplicates_across_pages_are_dropped(no_backoff: None) -> None:
    """A run repeated on a later page is yielded once by iter."""
    script = {
        "0": (runs("a", "b"), "?cursor=1"),
        "1": (runs("b", "c"), "?cursor=2"),
        "2": (runs("d"), None),
    }
    async with scripted(lambda r: script[r.query.get("cursor", "0")]) as base:
        async with ACPClient("k", base_url=base) as client:
            ids = [run.id async for run in client.runs.iter(SERVER)]
            pages = [[r.id for r in p.data] async for p in client.runs.pages(SERVER)]
    assert ids == ["a", "b", "c", "d"]
    assert pages == [["a", "b"], ["b", "c"], ["d"]]


async def test_page_adding_nothing_new_ends(no_backoff: None) -> None:
    """A page whose runs were all seen ends the iteration even if it links further."""
    calls = []

    def answer(request: web.Request) -> tuple[dict[str, Any], str | None]:
        calls.append(request.query.get("cursor"))
        cursor = int(request.query.get("cursor", "0"))
        return runs("a", "b") if cursor else runs("a"), f"?cursor={cursor + 1}"

    async with scripted(answer) as base, ACPClient("k", base_url=base) as client:
        ids = [run.id async for run in client.runs.iter(SERVER)]
    assert ids == ["a", "b"]
    assert calls == [None, "1", "2"]


async def test_repeated_link_ends(no_backoff: None) -> None:
    """A next link seen before ends the iteration (no loop between two pages)."""
    script = {"0": (runs("a"), "?cursor=1"), "1": (runs("b"), "?cursor=1")}
    async with scripted(lambda r: script[r.query.get("cursor", "0")]) as base:
        async with ACPClient("k", base_url=base) as client:
            ids = [run.id async for run in client.runs.iter(SERVER)]
    assert ids == ["a", "b"]


async def test_cross_origin_link_is_not_followed(no_backoff: None) -> None:
    """A Link to another origin ends the iteration instead of sending the token there."""
    async with FakeACPServer() as elsewhere:
        target = f"{elsewhere.base_url}/v1/servers/{SERVER}/runtime/agent/runs"
        async with scripted(lambda r: (runs("a"), target)) as base:
            async with ACPClient("k", base_url=base) as client:
                ids = [run.id async for run in client.runs.iter(SERVER)]
        assert elsewhere.requests == []
    assert ids == ["a"]


async def test_empty_first_page_is_yielded(no_backoff: None) -> None:
    """A server with no runs yields one empty page and no runs."""
    async with scripted(lambda r: ({"data": []}, None)) as base:
        async with ACPClient("k", base_url=base) as client:
            pages = [p async for p in client.runs.pages(SERVER)]
            ids = [run async for run in client.runs.iter(SERVER)]
    assert pages == [AgentRunList()]
    assert ids == []


BAD_ARGUMENTS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"limit": 0}, ValueError),
    ({"limit": -3}, ValueError),
    ({"limit": True}, TypeError),
    ({"limit": 2.0}, TypeError),
    ({"limit": "5"}, TypeError),
    ({"max_items": 0}, ValueError),
    ({"max_items": False}, TypeError),
    ({"max_items": 1.5}, TypeError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_ARGUMENTS)
async def test_bad_arguments_fail_before_any_request(
    fake: FakeACPServer, client: ACPClient, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """Bad limit or max_items raise at call time, for list, iter and pages alike."""
    with pytest.raises(error):
        client.runs.iter(SERVER, **kwargs)
    with pytest.raises(error):
        client.runs.pages(SERVER, **kwargs)
    if "limit" in kwargs:
        with pytest.raises(error):
            await client.runs.list(SERVER, **kwargs)
    assert fake.requests == []


@pytest.mark.parametrize("server_id", [5, b"srv"])
async def test_non_string_server_id_is_a_type_error(
    fake: FakeACPServer, client: ACPClient, server_id: Any
) -> None:
    """A server id that is not a str is refused before any request (None is no id: the
    default server id is used, see test_platform_env)."""
    with pytest.raises(TypeError):
        await client.runs.list(server_id)
    with pytest.raises(TypeError):
        client.runs.iter(server_id)
    assert fake.requests == []


def test_run_values_compare_by_content() -> None:
    """Two runs with the same fields are equal (watch diffing relies on it)."""
    assert AgentRun(id="a", title="t") == AgentRun(id="a", title="t")
    assert AgentRun(id="a", title="t") != AgentRun(id="a", title="u")


async def test_empty_pages_with_fresh_links_end(no_backoff: None) -> None:
    """Empty pages that keep linking to new URLs end the iteration instead of spinning."""
    calls = []

    def answer(request: web.Request) -> tuple[dict[str, Any], str | None]:
        cursor = int(request.query.get("cursor", "0"))
        calls.append(cursor)
        return {"data": []}, f"?cursor={cursor + 1}"

    async with scripted(answer) as base, ACPClient("k", base_url=base) as client:
        pages = [p async for p in client.runs.pages(SERVER, max_items=10)]
        ids = [run async for run in client.runs.iter(SERVER)]
    assert pages == [AgentRunList()]
    assert ids == []
    assert calls == [0, 0]


@pytest.mark.parametrize(
    "link",
    [
        "<http://[::1>; rel=next",
        "<mailto:x@y>; rel=next",
        "<http://h:99999/x>; rel=next",
        "<http://xn--xn--/x>; rel=next",
    ],
)
async def test_unparsable_link_header_ends_paging(link: str, no_backoff: None) -> None:
    """A Link header yarl cannot parse is no next page, not a bare ValueError."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "a"}]}, headers={"Link": link})

    async with serve_runs(handler) as base, ACPClient("k", base_url=base) as client:
        ids = [run.id async for run in client.runs.iter(SERVER)]
        assert len((await client.runs.list(SERVER)).data) == 1
    assert ids == ["a"]


async def test_runs_without_ids_do_not_keep_paging(no_backoff: None) -> None:
    """A page of id-less runs shows no progress: its next link is not followed."""
    calls = []

    def answer(request: web.Request) -> tuple[dict[str, Any], str | None]:
        cursor = int(request.query.get("cursor", "0"))
        calls.append(cursor)
        return {"data": [{"title": f"t{cursor}"}]}, f"?cursor={cursor + 1}"

    async with scripted(answer) as base, ACPClient("k", base_url=base) as client:
        titles = [run.title async for run in client.runs.iter(SERVER)]
    assert titles == ["t0"]
    assert calls == [0]
