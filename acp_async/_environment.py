"""What a client reads from the environment when an argument is not given.

The names follow ours (``ACP_*``), the official Python SDK's (``COMPUTER_AGENTS_*``) and
the platform's runtime helpers' (the older ``TESTBASE_*`` twins, each read right after
its ``COMPUTER_AGENTS_*`` name, and a base64 JSON description of the runtime). The first
variable found, in the order of each tuple, wins; a variable set to blanks counts as unset.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import attrs

API_KEY_ENV = ("ACP_API_KEY", "COMPUTER_AGENTS_API_KEY", "TESTBASE_API_KEY")
RUNTIME_TOKEN_ENV = ("COMPUTER_AGENTS_RUNTIME_TOKEN", "TESTBASE_RUNTIME_TOKEN")
# The official SDK reads both of its own names, in this order.
BASE_URL_ENV = ("ACP_BASE_URL", "COMPUTER_AGENTS_BASE_URL", "COMPUTER_AGENTS_API_URL")
# Where the platform tells code inside a resource to call it (runtime authorization only).
PLATFORM_URL_ENV = ("COMPUTER_AGENTS_PLATFORM_API_URL", "TESTBASE_PLATFORM_API_URL")
RUNTIME_JSON_ENV = ("COMPUTER_AGENTS_RUNTIME_JSON_B64", "TESTBASE_RUNTIME_JSON_B64")
SERVER_ID_ENV = ("COMPUTER_AGENTS_SERVER_ID", "TESTBASE_SERVER_ID")

# The url-safe alphabet read as the standard one: the platform's Node helpers accept both.
_URLSAFE = str.maketrans("-_", "+/")


def from_env(names: tuple[str, ...]) -> tuple[str, str] | None:
    """``(name, value)`` of the first of ``names`` set to something other than blanks."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def value_from_env(names: tuple[str, ...]) -> str | None:
    found = from_env(names)
    return None if found is None else found[1]


@attrs.frozen
class Runtime:
    """What the platform's runtime description says, and which variable said it."""

    source: str
    api_base_url: str | None
    server_id: str | None


def runtime_description() -> Runtime | None:
    """The runtime JSON (``COMPUTER_AGENTS_RUNTIME_JSON_B64``, then the ``TESTBASE_`` one),
    or None when neither is set.

    Read whenever one is set: its ``server.id`` is the default server id with an API key
    too. A value that is not base64 of a JSON object is a ``ValueError`` naming the
    variable; the value itself is never echoed (it may describe more than it should show).
    """
    found = from_env(RUNTIME_JSON_ENV)
    if found is None:
        return None
    name, raw = found
    document = _decode(raw)
    if not isinstance(document, dict):
        # Raised outside any except block: no chained error keeps the decoded text.
        raise ValueError(
            f"{name} must be a base64-encoded JSON object (the platform's runtime "
            "description); its value is not"
        )
    return Runtime(
        source=name,
        api_base_url=_field(document, name, "platform", "apiBaseUrl"),
        server_id=_field(document, name, "server", "id"),
    )


def _decode(raw: str) -> object:
    """The JSON value base64-encoded in ``raw`` (standard or url-safe alphabet, padding
    optional), or None when it is not one."""
    text = "".join(raw.split()).translate(_URLSAFE)
    text += "=" * (-len(text) % 4)
    try:
        return json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _field(document: dict[str, Any], source: str, section: str, key: str) -> str | None:
    """``document[section][key]`` as a non-blank str, or None when absent or null."""
    part = document.get(section)
    if part is None:
        return None
    if not isinstance(part, dict):
        raise ValueError(f"{source}: {section} must be a JSON object")
    value = part.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{source}: {section}.{key} must be a string")
    return value.strip() or None
