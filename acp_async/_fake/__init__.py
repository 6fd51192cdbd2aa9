"""The fake ACP server behind `acp_async.testing`, one job per module.

- ``_world``: seeded servers and runs, scripted changes, progression over time.
- ``_answer``: the API's answers as data: a page of runs, a JSON error, headers.
- ``_faults``: scripted and random faults, and how each is sent (cut, stalled, dropped).
- ``_log``: the request log: what arrived, how it ended, how many ran at once.
- ``_server``: `FakeACPServer`, the aiohttp server that ties them together.
"""

from ._log import RecordedRequest
from ._server import FakeACPServer

__all__ = ("FakeACPServer", "RecordedRequest")
