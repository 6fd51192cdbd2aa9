"""The errors acp-async raises. One root, so ``except ACPError`` catches them all::

    ACPError
    ├── APIConnectionError          DNS, refused, reset, TLS, truncated body
    │   └── APITimeoutError         also a TimeoutError
    ├── ResponseValidationError     not JSON, wrong shape, too large
    ├── WaitTimeoutError            wait_for gave up; also a TimeoutError
    └── APIStatusError              .status .code .message .details .request_id .body
        ├── BadRequestError             400
        ├── AuthenticationError         401
        ├── PaymentRequiredError        402
        ├── PermissionDeniedError       403
        ├── NotFoundError               404
        ├── ConflictError               409
        ├── UnprocessableEntityError    422
        ├── RateLimitError              429 (.retry_after)
        └── InternalServerError         >= 500

The fleet (``acp_async.fleet``, extra ``redis``) adds ``FleetRedisError`` (Redis refused
the fleet's work for good) and its ``RedisUnavailableError`` (Redis away), both
``ACPError``s.

Every error raised for a request carries ``.url``, the URL that was asked for, set once
by the send path; messages do not repeat it. Messages never contain the token: it is not
part of any URL or body we quote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import AgentRun

__all__ = (
    "ACPError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "UnprocessableEntityError",
    "WaitTimeoutError",
)

_BODY_EXCERPT = 500


class ACPError(Exception):
    """Root of every error acp-async raises on purpose.

    ``url`` is the request's URL (a ``str``) when the error came from a request, else None.
    """

    url: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; shard workers in other
        # processes hand errors around, so rebuild from the message and the attributes.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[ACPError], args: tuple[Any, ...], state: dict[str, Any]) -> ACPError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class APIConnectionError(ACPError):
    """The request did not produce a complete HTTP response: DNS, a refused or reset
    connection, TLS, a proxy that could not be reached, a body cut short. Retried."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """An attempt ran past its timeout; a ``TimeoutError`` so stdlib habits keep working."""


class ResponseValidationError(ACPError):
    """The server answered 2xx, but not with a body we can trust.

    ``problems`` holds each thing found wrong (say ``"expected str, got int @ $.data[0].id"``);
    the message joins them.
    """

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class WaitTimeoutError(ACPError, TimeoutError):
    """``wait_for`` ran out of time; also a ``TimeoutError``.

    Attributes:
        server_id: the server polled.
        run_id: the run waited for.
        run: the last state seen of that run (an ``AgentRun``), or None if never seen.
    """

    def __init__(self, message: str, *, server_id: str, run_id: str, run: AgentRun | None) -> None:
        super().__init__(message)
        self.server_id = server_id
        self.run_id = run_id
        self.run = run


class APIStatusError(ACPError):
    """The server answered with an error status; the fields come from its JSON error body
    (``{"error": ..., "message": ..., "code": ..., "details": [...]}``), or are None when
    the body was not JSON (a proxy's HTML page).

    Attributes:
        status: the HTTP status, an ``int``.
        message: the body's ``message`` (else its ``error``, else the reason phrase).
        code: the body's machine-readable ``code``, or None.
        details: the body's ``details``, as sent, or None.
        request_id: the response's ``X-Request-Id``, or None; quote it to support.
        body: the first 500 characters of the body (the token blanked out), or None.
        retry_after: the ``Retry-After`` header in seconds, or None.

    A subclass per status says which it was (``NotFoundError`` for 404, ...); any other
    status is an ``APIStatusError`` itself.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        details: Any = None,
        request_id: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.message = message
        self.code = code
        self.details = details
        self.request_id = request_id
        self.body = body[:_BODY_EXCERPT] if body is not None else None
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"{self.status}: {self.message}"]
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: the host refused the request as malformed (say a ``limit`` it does not take)."""


class AuthenticationError(APIStatusError):
    """401: the API key or runtime token was refused; no request can succeed without a new
    one, so it ends every loop (``watch``, ``wait_for``, a fleet worker)."""


class PaymentRequiredError(APIStatusError):
    """402: the account's plan or credit does not cover the request."""


class PermissionDeniedError(APIStatusError):
    """403: the credentials are valid but may not read this server."""


class NotFoundError(APIStatusError):
    """404: no such server (or path)."""


class ConflictError(APIStatusError):
    """409: the host was busy with a conflicting change; retried."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but its values were refused."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, when it
    said one; the whole client waits it out (retried when at most 60 s)."""


class InternalServerError(APIStatusError):
    """5xx: the host failed; 500, 502, 503 and 504 are retried."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The most specific error class for an HTTP status."""
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIStatusError)
