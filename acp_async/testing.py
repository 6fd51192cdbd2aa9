"""Test helpers for code that uses acp-async: a real fake server, and no waiting."""

from ._fake import FakeACPServer, RecordedRequest
from ._retry import instant_backoff

__all__ = ("FakeACPServer", "RecordedRequest", "instant_backoff")
