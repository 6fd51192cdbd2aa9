"""The public surface is a decision: renaming or dropping a name must fail a test."""

import acp_async
import acp_async.errors
import acp_async.testing


def test_top_level_exports_are_pinned() -> None:
    """`acp_async.__all__` is exactly the documented public names, sorted."""
    assert acp_async.__all__ == (
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
    for name in acp_async.__all__:
        assert hasattr(acp_async, name), name


def test_errors_are_reexported_from_the_errors_module() -> None:
    """Every error in `acp_async.errors` is the same object at the top level."""
    for name in acp_async.errors.__all__:
        assert getattr(acp_async, name) is getattr(acp_async.errors, name)


def test_testing_exports() -> None:
    """The testing aid exposes the fake server and the backoff switch."""
    assert acp_async.testing.__all__ == ("FakeACPServer", "RecordedRequest", "instant_backoff")


def test_package_is_typed() -> None:
    """`py.typed` ships, so users' mypy reads our annotations."""
    from importlib.resources import files

    assert files("acp_async").joinpath("py.typed").is_file()


def test_fleet_exports() -> None:
    """The fleet's public names: the class, its two values and its two Redis errors, both
    ``ACPError``s."""
    import acp_async.fleet

    assert acp_async.fleet.__all__ == (
        "FleetEvent",
        "FleetRedisError",
        "FleetStatus",
        "RedisFleet",
        "RedisUnavailableError",
    )
    assert issubclass(acp_async.fleet.RedisUnavailableError, acp_async.fleet.FleetRedisError)
    assert issubclass(acp_async.fleet.FleetRedisError, acp_async.ACPError)
