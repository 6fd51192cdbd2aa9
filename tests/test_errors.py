"""The error tree: one root, stdlib-friendly timeouts, statuses mapped to classes."""

from __future__ import annotations

import pytest

from acp_async import errors


def test_one_root() -> None:
    """Every public error is an ACPError."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ACPError), name


def test_timeouts_are_stdlib_timeouts() -> None:
    """APITimeoutError and WaitTimeoutError are TimeoutErrors; the first is a connection error."""
    assert issubclass(errors.APITimeoutError, TimeoutError)
    assert issubclass(errors.APITimeoutError, errors.APIConnectionError)
    assert issubclass(errors.WaitTimeoutError, TimeoutError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (402, errors.PaymentRequiredError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (413, errors.APIStatusError),
        (422, errors.UnprocessableEntityError),
        (429, errors.RateLimitError),
        (500, errors.InternalServerError),
        (503, errors.InternalServerError),
        (599, errors.InternalServerError),
    ],
)
def test_status_maps_to_its_class(status: int, cls: type) -> None:
    """Each documented status gets its own class; others the base APIStatusError."""
    assert errors.status_error_class(status) is cls


def test_status_error_fields_and_message() -> None:
    """A status error carries its fields and says them in one line; the body is an excerpt."""
    exc = errors.NotFoundError(
        "no such server", status=404, code="not_found", request_id="req-1", body="x" * 2000
    )
    assert (exc.status, exc.code, exc.message, exc.request_id) == (
        404,
        "not_found",
        "no such server",
        "req-1",
    )
    assert exc.body is not None
    assert len(exc.body) == 500
    assert str(exc) == "404: no such server code=not_found request_id=req-1"


def test_errors_pickle_with_their_fields() -> None:
    """Errors cross process boundaries (shard workers) with every field intact."""
    import pickle

    from acp_async.models import AgentRun

    status = errors.RateLimitError(
        "slow down", status=429, code="rate", request_id="r1", retry_after=2.0, body="{}"
    )
    copy = pickle.loads(pickle.dumps(status))
    assert type(copy) is errors.RateLimitError
    assert (copy.status, copy.code, copy.request_id, copy.retry_after, str(copy)) == (
        429,
        "rate",
        "r1",
        2.0,
        str(status),
    )
    wait = errors.WaitTimeoutError("late", server_id="s", run_id="r", run=AgentRun(id="r"))
    again = pickle.loads(pickle.dumps(wait))
    assert (again.server_id, again.run_id, again.run, str(again)) == (
        "s",
        "r",
        AgentRun(id="r"),
        "late",
    )
