"""Which servers a command reads: arguments, a servers file or stdin, and a shard of them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

from .. import _validate, shard
from ._parser import UsageError


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (worker I of N, counting from 0) as a pair, checked."""
    index, sep, count = text.partition("/")
    try:
        pair = (int(index), int(count))
    except ValueError:
        pair = (-1, 0)
    if not sep or pair[1] < 1 or not 0 <= pair[0] < pair[1]:
        raise argparse.ArgumentTypeError(
            f"--shard wants I/N with 0 <= I < N (like 0/4), got {text!r}"
        )
    return pair


def read_ids(lines: Iterable[str], where: str) -> list[str]:
    """One id per line; blank lines and lines starting with ``#`` are skipped."""
    ids = []
    for number, line in enumerate(lines, 1):
        server_id = line.strip()
        if server_id and not server_id.startswith("#"):
            ids.append(checked(server_id, f"in {where}, line {number}"))
    return ids


def server_ids(
    arguments: Sequence[str], servers_file: str | None, shard_spec: tuple[int, int] | None
) -> tuple[list[str], int]:
    """The ids this process owns (in order, without repeats) and how many were given."""
    ids = [checked(sid, "on the command line") for sid in arguments]
    if servers_file is not None:
        ids += _from_file(servers_file)
    if not ids:
        raise UsageError("no servers: give SERVER_ID arguments or --servers-file FILE ('-': stdin)")
    unique = list(dict.fromkeys(ids))
    if shard_spec is None:
        return unique, len(unique)
    return list(shard(unique, *shard_spec)), len(unique)


def _from_file(path: str) -> list[str]:
    if path == "-" and sys.stdin is None:
        raise UsageError("--servers-file -: there is no standard input")
    try:
        if path == "-":
            return read_ids(sys.stdin, "stdin")
        with open(path, encoding="utf-8") as file:
            return read_ids(file, path)
    except OSError as exc:
        raise UsageError(f"cannot read --servers-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        where = "stdin" if path == "-" else path
        raise UsageError(f"--servers-file: {where} is not UTF-8 text") from None


def checked(server_id: str, where: str) -> str:
    """The id, once the SDK's own rule (one path segment, not '.' or '..') accepts it."""
    try:
        _validate.path_segment(server_id)
    except ValueError as exc:
        why = str(exc).rpartition(", got ")[0] or str(exc)  # the id is said once, first
        raise UsageError(f"bad server id {server_id!r} {where}: {why}") from None
    return server_id
