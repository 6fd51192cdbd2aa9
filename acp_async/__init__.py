"""acp-async: the async-first, typed SDK for reading Computer Agents (ACP) agent runs."""

from . import _log  # noqa: F401 - the logger and its NullHandler, set up once
from ._client import ACPClient
from ._config import InsecureTransportWarning, MissingCredentialsError
from ._converter import to_json
from ._shard import shard
from ._version import __version__
from ._watch import WatchState
from .errors import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from .models import AgentRun, AgentRunList, RunEvent, RunMode, RunStatus, ServerRuns

__all__ = (
    "ACPClient",
    "ACPError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AgentRun",
    "AgentRunList",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InsecureTransportWarning",
    "InternalServerError",
    "MissingCredentialsError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "RunEvent",
    "RunMode",
    "RunStatus",
    "ServerRuns",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "WatchState",
    "__version__",
    "shard",
    "to_json",
)
