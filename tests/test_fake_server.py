"""Behaviour of FakeACPServer, seen from a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
import pytest
from yarl import URL

from acp_async import ACPClient
from acp_async._fake import _server as fake_server
from acp_async.testing import FakeACPServer, RecordedRequest

from .conftest import wait_until

TOKEN = "test-token"
RUNTIME_TOKEN = "test-runtime-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeACPServer]:
    async with FakeACPServer() as fake:
        yield fake


def runs_url(fake: FakeACPServer, server_id: str, **params: object) -> URL:
    """The endpoint URL with the id sent as one percent-encoded segment."""
    path = f"/v1/servers/{quote(server_id, safe='')}/runtime/agent/runs"
    url = URL(fake.base_url + path, encoded=True)
    return url.with_query({key: str(value) for key, value in params.items()})


async def get_json(
    session: aiohttp.ClientSession, url: URL | str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json(), response


# -- seeded data -------------------------------------------------------------


def test_same_seed_gives_same_data_and_other_seed_differs() -> None:
    """Seeded servers and runs depend only on the constructor arguments."""
    first, second, other = FakeACPServer(seed=7), FakeACPServer(seed=7), FakeACPServer(seed=8)
    assert first.server_ids == second.server_ids == ["srv-0001", "srv-0002", "srv-0003"]
    for server_id in first.server_ids:
        assert first.runs(server_id) == second.runs(server_id)
    assert first.runs("srv-0001") != other.runs("srv-0001")


def test_server_ids_come_from_a_count_or_an_iterable() -> None:
    """`servers` is a count of generated ids or the ids themselves."""
    assert FakeACPServer(servers=2).server_ids == ["srv-0001", "srv-0002"]
    fake = FakeACPServer(servers=["alpha", "beta"], runs_per_server=4)
    assert fake.server_ids == ["alpha", "beta"]
    assert [len(fake.runs(server_id)) for server_id in fake.server_ids] == [4, 4]
    with pytest.raises(TypeError):
        FakeACPServer(servers="alpha")


def test_seeded_runs_are_realistic() -> None:
    """Runs carry the API's fields, a status mix, and status-consistent timestamps."""
    fake = FakeACPServer(servers=4, runs_per_server=10)
    runs = [run for server_id in fake.server_ids for run in fake.runs(server_id)]
    assert {run["status"] for run in runs} == {
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
    }
    for run in runs:
        assert re.fullmatch(r"run-[0-9a-f]{12}", run["id"])
        assert run["mode"] in {"sync", "async"}
        assert ISO_MS.match(run["createdAt"])
        assert isinstance(run["metadata"]["labels"], dict)
        assert isinstance(run["threadBacked"], bool)
        terminal = run["status"] in {"completed", "failed", "cancelled"}
        assert ("completedAt" in run) == terminal
        if terminal:
            assert ISO_MS.match(run["completedAt"])
            assert run["completedAt"] >= run["createdAt"]
        assert ("error" in run) == (run["status"] == "failed")
    assert len({run["id"] for run in runs}) == len(runs)


def test_runs_returns_a_copy_newest_first() -> None:
    """`runs()` is newest first and mutating it does not touch the server."""
    fake = FakeACPServer(runs_per_server=6)
    runs = fake.runs("srv-0001")
    created = [run["createdAt"] for run in runs]
    assert created == sorted(created, reverse=True)
    runs[0]["status"] = "mangled"
    runs.clear()
    assert fake.runs("srv-0001")[0]["status"] != "mangled"


# -- the endpoint ----------------------------------------------------------------


async def test_list_returns_the_envelope_newest_first(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A GET answers the API's list envelope with runs newest first as JSON."""
    status, body, response = await get_json(session, runs_url(fake, "srv-0002"))
    assert status == 200
    assert response.content_type == "application/json"
    assert body["serverId"] == "srv-0002"
    assert body["object"] == "list"
    assert body["agentRuntimeId"].startswith("rt-")
    assert body["data"] == fake.runs("srv-0002")


async def test_limit_defaults_to_20_and_returns_the_newest(
    session: aiohttp.ClientSession,
) -> None:
    """Without `limit` the 20 newest come back; with it, the N newest."""
    async with FakeACPServer(servers=1, runs_per_server=30) as fake:
        _, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
        assert body["data"] == fake.runs("srv-0001")[:20]
        _, body, _ = await get_json(session, runs_url(fake, "srv-0001", limit=3))
        assert body["data"] == fake.runs("srv-0001")[:3]
        _, body, _ = await get_json(session, runs_url(fake, "srv-0001", limit=1000))
        assert len(body["data"]) == 30


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", "", " 5", "٣"])
async def test_invalid_limit_is_a_400_json_error(
    fake: FakeACPServer, session: aiohttp.ClientSession, limit: str
) -> None:
    """`limit` outside the integers 1..1000 is refused in the API's error form."""
    status, body, _ = await get_json(session, runs_url(fake, "srv-0001", limit=limit))
    assert status == 400
    assert body["error"] == "invalid_request"
    assert body["code"] == "invalid_limit"
    assert "limit" in body["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_missing_or_wrong_token_is_401(
    fake: FakeACPServer, authorization: str | None
) -> None:
    """Only `Authorization: Bearer <token>` gets through."""
    headers = {} if authorization is None else {"Authorization": authorization}
    async with aiohttp.ClientSession(headers=headers) as session:
        status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 401
    assert body["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("headers", "auth"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, "bearer"),
        ({"X-Computer-Agents-Runtime-Token": RUNTIME_TOKEN}, "runtime"),
        ({"x-computer-agents-runtime-token": RUNTIME_TOKEN}, "runtime"),
        (
            {"Authorization": "Bearer wrong", "X-Computer-Agents-Runtime-Token": RUNTIME_TOKEN},
            "runtime",
        ),
        (
            {"Authorization": f"Bearer {TOKEN}", "X-Computer-Agents-Runtime-Token": "wrong"},
            "bearer",
        ),
    ],
)
async def test_bearer_or_runtime_token_gets_through_and_is_recorded(
    fake: FakeACPServer, headers: dict[str, str], auth: str
) -> None:
    """Either right credential is a 200; the log says which one, and never holds it."""
    async with aiohttp.ClientSession(headers=headers) as session:
        status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200, body
    (record,) = fake.requests
    assert record.auth == auth
    assert TOKEN not in repr(attrs.evolve(record, headers={}))
    assert RUNTIME_TOKEN not in repr(attrs.evolve(record, headers={}))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Computer-Agents-Runtime-Token": "wrong"},
        {"X-Computer-Agents-Runtime-Token": TOKEN},  # the API key is not a runtime token
        {"Authorization": f"Bearer {RUNTIME_TOKEN}"},  # nor the other way round
        {"X-Computer-Agents-Runtime-Token": f"Bearer {RUNTIME_TOKEN}"},
    ],
)
async def test_wrong_runtime_token_is_401_and_recorded_as_no_auth(
    fake: FakeACPServer, headers: dict[str, str]
) -> None:
    """A missing or wrong runtime token is refused like a wrong API key; `auth` is None."""
    async with aiohttp.ClientSession(headers=headers) as session:
        status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 401
    assert body["error"] == "unauthorized"
    assert [r.auth for r in fake.requests] == [None]


async def test_log_tells_how_the_client_authenticated(no_backoff: None) -> None:
    """ACPClient(api_key) is recorded as "bearer", ACPClient(runtime_token=...) as "runtime"."""
    async with FakeACPServer() as fake:
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            await client.runs.list("srv-0001")
        async with ACPClient(runtime_token=fake.runtime_token, base_url=fake.base_url) as client:
            await client.runs.list("srv-0001")
        bearer, runtime = fake.requests
    assert (bearer.auth, runtime.auth) == ("bearer", "runtime")
    assert (bearer.status, runtime.status) == (200, 200)
    assert "Authorization" not in runtime.headers


async def test_runtime_token_is_an_option() -> None:
    """`runtime_token=` sets the accepted runtime token; the default one is then refused."""
    async with FakeACPServer(runtime_token="rt-secret") as fake:
        assert fake.runtime_token == "rt-secret"
        for value, expected in [("rt-secret", 200), (RUNTIME_TOKEN, 401)]:
            headers = {"X-Computer-Agents-Runtime-Token": value}
            async with aiohttp.ClientSession(headers=headers) as session:
                status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
            assert status == expected


async def test_bearer_scheme_is_case_insensitive(fake: FakeACPServer) -> None:
    """The auth scheme is matched case-insensitively, the token exactly."""
    async with aiohttp.ClientSession(headers={"Authorization": f"bearer {TOKEN}"}) as session:
        status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200


async def test_unknown_server_is_404(fake: FakeACPServer, session: aiohttp.ClientSession) -> None:
    """An id the fake does not know gets a JSON 404."""
    status, body, _ = await get_json(session, runs_url(fake, "srv-9999"))
    assert status == 404
    assert body == {
        "error": "not_found",
        "message": "Server 'srv-9999' not found",
        "code": "server_not_found",
    }


async def test_other_paths_and_methods_get_json_errors(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """Unknown paths are a JSON 404 and other methods a JSON 405, both recorded."""
    status, body, _ = await get_json(session, fake.base_url + "/v1/servers")
    assert (status, body["code"]) == (404, "route_not_found")
    async with session.post(runs_url(fake, "srv-0001")) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
    assert [(r.server_id, r.method, r.status) for r in fake.requests] == [
        (None, "GET", 404),
        ("srv-0001", "POST", 405),
    ]


@pytest.mark.parametrize(
    ("shape", "keys"), [("data", {"data"}), ("runs", {"runs"}), ("both", {"data", "runs"})]
)
async def test_shape_chooses_the_list_key(
    session: aiohttp.ClientSession, shape: Any, keys: set[str]
) -> None:
    """shape="data"/"runs"/"both" puts the same list under those keys."""
    async with FakeACPServer(shape=shape) as fake:
        _, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert keys <= body.keys()
    assert not ({"data", "runs"} - keys) & body.keys()
    assert all(body[key] == body[next(iter(keys))] for key in keys)


async def test_default_page_lists_runs_under_data_and_runs(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """By default a page carries both `data` and `runs`, the same runs, as the API documents."""
    _, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert body["data"] == body["runs"] == fake.runs("srv-0001")


async def test_every_response_has_a_unique_request_id(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """X-Request-Id is on successes and errors alike, and never repeats."""
    fake.fail("status", status=500)
    ids = []
    for server_id in ["srv-0001", "srv-0001", "nope"]:
        async with session.get(runs_url(fake, server_id)) as response:
            ids.append(response.headers["X-Request-Id"])
    assert len(set(ids)) == 3
    assert [r.request_id for r in fake.requests] == ids


async def test_prefix_is_part_of_base_url(session: aiohttp.ClientSession) -> None:
    """A path prefix is served under base_url and nowhere else."""
    async with FakeACPServer(prefix="/acp/") as fake:
        assert fake.base_url.endswith("/acp")
        status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
        assert status == 200
        root = fake.base_url.removesuffix("/acp")
        async with session.get(root + "/v1/servers/srv-0001/runtime/agent/runs") as response:
            assert response.status == 404


async def test_link_header_pages_with_a_cursor(session: aiohttp.ClientSession) -> None:
    """With page_size, pages follow a same-origin rel="next" Link until the end."""
    async with FakeACPServer(servers=1, runs_per_server=5, page_size=2, prefix="/acp") as fake:
        url: URL | None = runs_url(fake, "srv-0001", limit=10)
        pages, links = [], []
        while url is not None:
            async with session.get(url) as response:
                pages.append([run["id"] for run in (await response.json())["data"]])
                link = response.headers.get("Link")
                links.append(link)
                nxt = response.links.get("next")
                url = None if nxt is None else response.url.join(URL(str(nxt["url"])))
        assert [len(page) for page in pages] == [2, 2, 1]
        assert [run_id for page in pages for run_id in page] == [
            run["id"] for run in fake.runs("srv-0001")
        ]
        assert links[0] == (
            '</acp/v1/servers/srv-0001/runtime/agent/runs?limit=10&cursor=2>; rel="next"'
        )
        assert links[-1] is None
        assert [r.query.get("cursor") for r in fake.requests] == [None, "2", "4"]


async def test_limit_smaller_than_page_size_sets_the_page(
    session: aiohttp.ClientSession,
) -> None:
    """A page holds min(limit, page_size) runs."""
    fake = FakeACPServer(servers=1, runs_per_server=5, page_size=3)
    async with fake, session.get(runs_url(fake, "srv-0001", limit=1)) as response:
        assert len((await response.json())["data"]) == 1
        assert "limit=1&cursor=1" in response.headers["Link"]


# -- progression -----------------------------------------------------------------


def test_advance_moves_runs_through_their_statuses() -> None:
    """queued -> running -> a terminal status with completedAt, then nothing."""
    fake = FakeACPServer(servers=["s"], runs_per_server=0)
    run = fake.add_run("s")
    assert run["status"] == "queued"
    fake.advance("s")
    assert fake.runs("s")[0]["status"] == "running"
    assert "completedAt" not in fake.runs("s")[0]
    fake.advance()
    done = fake.runs("s")[0]
    assert done["status"] in {"completed", "failed"}
    assert ISO_MS.match(done["completedAt"])
    fake.advance("s", steps=5)
    assert fake.runs("s")[0] == done


def test_about_one_in_five_runs_fail_deterministically() -> None:
    """The failed share is ~20% and is the same for the same seed and ids."""
    outcomes = []
    for _ in range(2):
        fake = FakeACPServer(servers=["s"], runs_per_server=0, seed=3)
        for _ in range(300):
            fake.add_run("s", status="running")
        fake.advance(steps=1)
        outcomes.append([run["status"] for run in fake.runs("s")])
    assert outcomes[0] == outcomes[1]
    failed = outcomes[0].count("failed")
    assert 30 <= failed <= 90
    assert failed + outcomes[0].count("completed") == 300


def test_advance_leaves_unknown_statuses_alone() -> None:
    """A status the fake does not know (say "paused") is not progressed."""
    fake = FakeACPServer(servers=["s"], runs_per_server=0)
    fake.add_run("s", status="paused")
    fake.advance(steps=2)
    assert fake.runs("s")[0]["status"] == "paused"


async def test_progress_every_advances_with_the_clock(session: aiohttp.ClientSession) -> None:
    """Each request first applies the whole periods elapsed on the injected clock."""
    clock = FakeClock()
    async with FakeACPServer(
        servers=["s"], runs_per_server=0, progress_every=10.0, clock=clock
    ) as fake:
        fake.add_run("s")

        async def status() -> str:
            _, body, _ = await get_json(session, runs_url(fake, "s"))
            return str(body["data"][0]["status"])

        clock.now += 9.9
        assert await status() == "queued"
        clock.now += 0.1
        assert await status() == "running"
        clock.now += 25.0
        assert await status() in {"completed", "failed"}
        assert fake.requests[0].started == pytest.approx(109.9)


# -- scripting runs ------------------------------------------------------------------


def test_add_run_is_newest_and_fields_override() -> None:
    """add_run puts the run first; camelCase fields win over generated ones."""
    fake = FakeACPServer(servers=1, runs_per_server=3)
    before = fake.runs("srv-0001")
    run = fake.add_run(
        "srv-0001", id="run-mine", status="completed", title="Mine", extraField={"x": 1}
    )
    runs = fake.runs("srv-0001")
    assert runs[0] == run
    assert runs[1:] == before
    assert (run["id"], run["title"], run["extraField"]) == ("run-mine", "Mine", {"x": 1})
    assert "completedAt" in run
    assert run["createdAt"] > before[0]["createdAt"]
    with pytest.raises(KeyError):
        fake.add_run("missing")


def test_set_run_changes_fields_and_keeps_them_consistent() -> None:
    """set_run to a terminal status fills completedAt; back to running removes it."""
    fake = FakeACPServer(servers=["s"], runs_per_server=0)
    run_id = fake.add_run("s")["id"]
    fake.set_run("s", run_id, status="failed")
    failed = fake.runs("s")[0]
    assert "completedAt" in failed
    assert failed["error"]
    fake.set_run("s", run_id, status="running")
    running = fake.runs("s")[0]
    assert "completedAt" not in running
    assert "error" not in running
    fake.set_run("s", run_id, status="completed", completedAt=None, output="42")
    assert fake.runs("s")[0]["completedAt"] is None
    assert fake.runs("s")[0]["output"] == "42"
    with pytest.raises(KeyError):
        fake.set_run("s", "run-nope", status="completed")


def test_add_server_refuses_duplicates_and_empty_ids() -> None:
    """add_server creates an empty server once."""
    fake = FakeACPServer(servers=0)
    fake.add_server("x")
    assert fake.runs("x") == []
    with pytest.raises(ValueError, match="already exists"):
        fake.add_server("x")
    with pytest.raises(ValueError, match="non-empty"):
        fake.add_server("")


@pytest.mark.parametrize("server_id", ["a/b", "50%", "x y", "é", "a%2Fb", "?#;+&=", "~._-"])
async def test_special_server_ids_round_trip(
    session: aiohttp.ClientSession, server_id: str
) -> None:
    """An id is one percent-encoded segment, decoded exactly once by the fake."""
    async with FakeACPServer(servers=0, page_size=1) as fake:
        fake.add_server(server_id)
        fake.add_run(server_id)
        fake.add_run(server_id)
        status, body, response = await get_json(session, runs_url(fake, server_id, limit=5))
        assert status == 200
        assert body["serverId"] == server_id
        assert body["data"][0]["serverId"] == server_id
        assert fake.requests[0].server_id == server_id
        assert fake.requests[0].path == runs_url(fake, server_id).raw_path
        next_url = response.url.join(URL(str(response.links["next"]["url"])))
        status, body, _ = await get_json(session, next_url)
        assert (status, body["serverId"]) == (200, server_id)


# -- faults ----------------------------------------------------------------------


async def test_status_fault_with_retry_after_then_recovers(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A status fault answers the JSON error with Retry-After, then normal service resumes."""
    fake.fail("status", status=429, retry_after="3", headers={"X-Extra": "1"}, times=2)
    for _ in range(2):
        status, body, response = await get_json(session, runs_url(fake, "srv-0001"))
        assert status == 429
        assert response.headers["Retry-After"] == "3"
        assert response.headers["X-Extra"] == "1"
        assert body["error"] == "too_many_requests"
        assert {"message", "code"} <= body.keys()
    status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200
    assert [(r.status, r.fault) for r in fake.requests] == [
        (429, "status"),
        (429, "status"),
        (200, None),
    ]


async def test_status_fault_can_carry_a_custom_body(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """`body` replaces the generated error body."""
    fake.fail("status", status=422, body=b'{"error": "invalid", "details": [1]}')
    status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert (status, body) == (422, {"error": "invalid", "details": [1]})


async def test_faults_match_server_and_are_consumed_in_order(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A fault for one server skips the others; faults apply in the order queued."""
    fake.fail("status", status=500, server_id="srv-0002")
    fake.fail("status", status=502)
    statuses = []
    for server_id in ["srv-0001", "srv-0002", "srv-0001", "srv-0002"]:
        async with session.get(runs_url(fake, server_id)) as response:
            statuses.append(response.status)
    assert statuses == [502, 500, 200, 200]


async def test_html_fault_is_a_text_html_page(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """An html fault answers an HTML page with the given status, like a proxy."""
    fake.fail("html", status=502)
    async with session.get(runs_url(fake, "srv-0001")) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "502 Bad Gateway" in await response.text()


async def test_malformed_fault_is_invalid_json(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A malformed fault answers 200 application/json that does not parse."""
    fake.fail("malformed")
    async with session.get(runs_url(fake, "srv-0001")) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            await response.json()


async def test_truncated_fault_raises_payload_error(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A truncated body (short of its Content-Length) is a ClientPayloadError."""
    fake.fail("truncated")
    async with session.get(runs_url(fake, "srv-0001")) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert [(r.status, r.fault) for r in fake.requests] == [(200, "truncated")]
    status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200


async def test_drop_fault_disconnects(fake: FakeACPServer, session: aiohttp.ClientSession) -> None:
    """Two drops beat aiohttp's one silent resend: the client sees a disconnect."""
    fake.fail("drop", times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get_json(session, runs_url(fake, "srv-0001"))
    assert [(r.status, r.fault) for r in fake.requests] == [(None, "drop"), (None, "drop")]
    assert all(r.finished is not None for r in fake.requests)


async def test_single_drop_is_absorbed_by_aiohttp_resend(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """aiohttp resends a GET once after a drop; the fake shows both requests."""
    fake.fail("drop")
    status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200
    assert [r.fault for r in fake.requests] == ["drop", None]


async def test_stall_fault_trips_a_read_timeout(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A stall sends headers and part of the body, then nothing until sock_read fires."""
    fake.fail("stall")
    timeout = aiohttp.ClientTimeout(sock_read=0.1)
    async with session.get(runs_url(fake, "srv-0001"), timeout=timeout) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ServerTimeoutError):
            await response.read()
    # The client closed the connection, so the stalled handler ends too.
    await wait_until(lambda: fake.in_flight == 0)
    assert fake.requests[0].fault == "stall"


async def test_short_stall_completes_the_body(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A stall shorter than the client's patience still delivers the whole body."""
    fake.fail("stall", delay=0.05)
    status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200
    assert body["data"] == fake.runs("srv-0001")


async def test_latency_fault_delays_one_response(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A latency fault waits `delay`, then answers normally."""
    fake.fail("latency", delay=0.15)
    started = time.monotonic()
    status, _, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert status == 200
    assert time.monotonic() - started >= 0.15
    assert fake.requests[0].fault == "latency"


async def test_latency_option_delays_every_response(session: aiohttp.ClientSession) -> None:
    """`latency` adds a fixed delay before every response."""
    async with FakeACPServer(latency=0.05) as fake:
        started = time.monotonic()
        for _ in range(2):
            await get_json(session, runs_url(fake, "srv-0001"))
        assert time.monotonic() - started >= 0.1


async def test_redirect_fault_sends_location(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """A redirect fault answers 302 to the Location given; following it works."""
    target = str(runs_url(fake, "srv-0002"))
    fake.fail("redirect", headers={"Location": target}, times=2)
    async with session.get(runs_url(fake, "srv-0001"), allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == target
    status, body, _ = await get_json(session, runs_url(fake, "srv-0001"))
    assert (status, body["serverId"]) == (200, "srv-0002")


def test_fail_rejects_bad_arguments() -> None:
    """Unknown kinds, times < 1 and a redirect without Location are refused."""
    fake = FakeACPServer()
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake.fail("explode")
    with pytest.raises(ValueError, match="times"):
        fake.fail(times=0)
    with pytest.raises(ValueError, match="Location"):
        fake.fail("redirect")
    with pytest.raises(ValueError, match="status"):
        fake.fail(status=42)


async def fault_trace(seed: int) -> list[tuple[str | None, int | None]]:
    """Send 40 requests to a fake with fault_rate and return what it did."""
    async with (
        FakeACPServer(seed=seed, fault_rate=0.4) as fake,
        aiohttp.ClientSession(headers=AUTH) as session,
    ):
        for _ in range(40):
            try:
                async with session.get(runs_url(fake, "srv-0001")) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass
        return [(r.fault, r.status) for r in fake.requests]


async def test_fault_rate_is_seeded_and_transient() -> None:
    """fault_rate injects a seeded mix of retryable faults among successes."""
    trace = await fault_trace(seed=1)
    assert trace == await fault_trace(seed=1)
    assert trace != await fault_trace(seed=2)
    faults = {fault for fault, _ in trace if fault}
    assert faults <= {"status", "drop", "truncated"}
    assert len(faults) >= 2
    assert {status for fault, status in trace if fault == "status"} <= {429, 500, 502, 503, 504}
    assert (None, 200) in trace


async def test_fault_rate_leaves_seeded_data_alone() -> None:
    """Drawing random faults does not change the seeded runs."""
    assert FakeACPServer(fault_rate=0.5).runs("srv-0001") == FakeACPServer().runs("srv-0001")


# -- observation -------------------------------------------------------------------


async def test_in_flight_and_max_in_flight_measure_concurrency(
    session: aiohttp.ClientSession,
) -> None:
    """max_in_flight is the peak of concurrent requests; reset_stats restarts it."""
    async with FakeACPServer(latency=0.1) as fake:
        task = asyncio.gather(*(get_json(session, runs_url(fake, "srv-0001")) for _ in range(8)))
        await wait_until(lambda: fake.in_flight == 8)
        assert all(r.finished is None and r.status is None for r in fake.requests)
        await task
        assert (fake.in_flight, fake.max_in_flight) == (0, 8)
        fake.reset_stats()
        assert (fake.requests, fake.max_in_flight) == ([], 0)
        await get_json(session, runs_url(fake, "srv-0001"))
        assert fake.max_in_flight == 1


async def test_client_giving_up_ends_the_request(
    fake: FakeACPServer, session: aiohttp.ClientSession
) -> None:
    """When the client closes the connection, in_flight drops without waiting for the delay."""
    fake.fail("latency", delay=10)
    with pytest.raises(asyncio.TimeoutError):
        await get_json(session, runs_url(fake, "srv-0001"), timeout=aiohttp.ClientTimeout(0.05))
    await wait_until(lambda: fake.in_flight == 0)
    assert (fake.requests[0].status, fake.requests[0].fault) == (None, "latency")


async def test_requests_are_recorded_with_the_clock(session: aiohttp.ClientSession) -> None:
    """Each RecordedRequest holds the raw path, query, headers and clock times."""
    clock = FakeClock()
    async with FakeACPServer(clock=clock) as fake:
        await get_json(session, runs_url(fake, "srv-0001", limit=2), headers={"X-Trace": "t"})
    (record,) = fake.requests
    assert isinstance(record, RecordedRequest)
    assert record.path == "/v1/servers/srv-0001/runtime/agent/runs"
    assert record.query == {"limit": "2"}
    assert record.headers["Authorization"] == f"Bearer {TOKEN}"
    assert record.headers["X-Trace"] == "t"
    assert record.auth == "bearer"
    assert (record.started, record.finished, record.status) == (100.0, 100.0, 200)


# -- lifecycle -----------------------------------------------------------------------


async def test_close_during_a_stall_is_prompt(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() wakes a stalled handler rather than waiting for aiohttp to give up on it."""
    # aiohttp would wait this long for a handler that is not woken: a hang, if ours is not.
    monkeypatch.setattr(fake_server, "_SHUTDOWN_TIMEOUT", 60.0)
    fake = FakeACPServer()
    await fake.start()
    fake.fail("stall", delay=30)

    async def read() -> bytes:
        async with session.get(runs_url(fake, "srv-0001")) as response:
            return await response.read()

    reader = asyncio.create_task(read())
    await wait_until(lambda: fake.in_flight == 1)
    async with asyncio.timeout(5):  # bounds a failure only: a woken close takes milliseconds
        await fake.close()
    with pytest.raises(aiohttp.ClientPayloadError):
        await reader
    await fake.close()  # idempotent


async def test_lifecycle_guards() -> None:
    """base_url needs start(); a closed fake cannot start again."""
    fake = FakeACPServer()
    with pytest.raises(RuntimeError, match="start"):
        _ = fake.base_url
    async with fake:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.base_url)
        assert fake.token == TOKEN
        assert fake.runtime_token == RUNTIME_TOKEN
        with pytest.raises(RuntimeError, match="already started"):
            await fake.start()
    with pytest.raises(RuntimeError, match="closed"):
        await fake.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fault_rate": 1.5},
        {"page_size": 0},
        {"progress_every": 0},
        {"latency": -1},
        {"shape": "list"},
        {"runs_per_server": -1},
    ],
)
def test_constructor_validates_options(kwargs: dict[str, Any]) -> None:
    """Out-of-range options fail at construction, naming the option."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FakeACPServer(**kwargs)
