"""An application that keeps one ``ACPClient`` for its whole life.

    ACP_API_KEY=... python examples/app_client.py   # then GET http://127.0.0.1:8080/servers/ID/runs

One client means one connection pool, one 429 cool-down and one place to close.
aiohttp's ``cleanup_ctx`` opens it when the app starts and closes it when the
app stops, so no request handler creates (or forgets to close) its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from acp_async import ACPClient, ACPError, APIStatusError, to_json

CLIENT = web.AppKey("acp_client", ACPClient)


async def acp_client(app: web.Application) -> AsyncIterator[None]:
    async with ACPClient() as client:
        app[CLIENT] = client
        yield


async def server_runs(request: web.Request) -> web.Response:
    client = request.app[CLIENT]
    try:
        page = await client.runs.list(request.match_info["server_id"], limit=20)
    except APIStatusError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    except (ACPError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response({"runs": [to_json(run) for run in page.data]})


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(acp_client)
    app.router.add_get("/servers/{server_id}/runs", server_runs)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
