"""Output for people: aligned tables, coloured statuses and a progress bar, with ``rich``.

Imported only when human output is asked for, so ``--json`` works without the extra.
Every server-controlled string goes in as ``Text`` after ``clean``: never as markup.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..models import AgentRun, AgentRunList, RunEvent, RunStatus, ServerRuns
from ._report import (
    EVENT_FIXED_WIDTH,
    NARROW_STATUS_WIDTH,
    STATUS_WIDTH,
    clean,
    event_parts,
    short,
)

STATUS_STYLES = {
    RunStatus.QUEUED: "cyan",
    RunStatus.RUNNING: "yellow",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
}
STATUS_ORDER = tuple(STATUS_STYLES)
# Off a terminal rich assumes 80 columns; a table piped to a file or grep keeps its rows whole.
_PIPE_WIDTH = 1000


def stdout_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=_PIPE_WIDTH)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def status_text(status: object) -> Text:
    if status is None:
        return Text("-", style="dim")
    return Text(clean(status), style=STATUS_STYLES.get(status, ""))  # type: ignore[call-overload]


# Below this many columns the runs table drops the year and the seconds, so titles fit.
_WIDE = 120
# A title gets at least this many columns before a column beside it is dropped...
_MIN_TITLE = 20
# ... dropped in this order (the least needed first); the id and the status always stay.
_DROPPED_FIRST = ("completed (UTC)", "mode", "created (UTC)")
_MAX_TITLE = 60
_GAP = 2  # columns between two columns: the padding plus the box's blank separator


def _when(moment: datetime | None, compact: bool) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%m-%d %H:%M" if compact else "%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> Text:
    return Text("-", style="dim") if value is None else Text(clean(value))


def _table(*columns: str, footers: Sequence[Text] = ()) -> Table:
    """A table with these column names, as text (a status a server made up may name a
    column: it is never read as markup)."""
    table = Table(
        box=box.SIMPLE,
        padding=(0, 1, 0, 0),  # with the box's blank separator: two spaces between columns
        pad_edge=False,
        show_edge=False,
        header_style="bold",
        show_footer=bool(footers),
    )
    padded: list[Text] = [*footers, *[Text("")] * (len(columns) - len(footers))]
    for name, footer in zip(columns, padded, strict=True):
        table.add_column(Text(clean(name)), footer=footer, no_wrap=True, overflow="ellipsis")
    return table


def runs_table(runs: Sequence[AgentRun], *, width: int | None = None) -> Table:
    """id, status, mode, title, created and completed (UTC), newest first like the API.

    On a narrow terminal the times drop the year and seconds, then the completed, mode and
    created columns go, in that order, while the title has fewer than 20 columns; the
    title takes what is left, cut with an ellipsis. The ids and statuses stay whole.
    """
    compact = width is not None and width < _WIDE
    cells = {
        "id": [_cell(run.id) for run in runs],
        "status": [status_text(run.status) for run in runs],
        "mode": [_cell(run.mode) for run in runs],
        "title": [Text(clean(run.title or "-")) for run in runs],
        "created (UTC)": [_cell(_when(run.created_at, compact)) for run in runs],
        "completed (UTC)": [_cell(_when(run.completed_at, compact)) for run in runs],
    }
    natural = {
        name: max([len(name), *(c.cell_len for c in column)]) for name, column in cells.items()
    }
    shown = list(cells)
    title_width = min(natural["title"], _MAX_TITLE)
    if width is not None:

        def room() -> int:  # what the title would get beside the other shown columns
            others = [natural[name] for name in shown if name != "title"]
            return width - sum(others) - _GAP * len(others)

        for name in _DROPPED_FIRST:
            if room() >= min(_MIN_TITLE, natural["title"]):
                break
            shown.remove(name)
        title_width = max(1, min(title_width, room()))
    table = _table(*shown)
    for column in table.columns:
        column.min_width = natural[str(column.header)]
        if str(column.header) == "title":
            column.min_width = column.max_width = title_width
    for row in zip(*(cells[name] for name in shown), strict=True):
        table.add_row(*row)
    return table


def statuses_of(page: AgentRunList | None) -> Counter[str]:
    return Counter(str(run.status) for run in (page.data if page else ()) if run.status)


def status_columns(counts: Counter[str]) -> list[str]:
    """The known statuses in their order, then any the server added (say ``paused``)."""
    return [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]


def poll_table(outcomes: Sequence[ServerRuns]) -> Table:
    """One row per server (runs by status, error), and the totals as the footer."""
    per_server = {o.server_id: statuses_of(o.result) for o in outcomes}
    total: Counter[str] = sum(per_server.values(), Counter())
    columns = status_columns(total)
    failed = sum(1 for o in outcomes if o.error is not None)
    footers = [
        Text(f"{len(outcomes)} servers"),
        Text(str(total.total())),
        *_counts(total, columns),
        Text(f"{failed} failed", style="red" if failed else "dim"),
    ]
    table = _table("server", "runs", *columns, "error", footers=footers)
    for column in table.columns[1:-1]:
        column.justify = "right"
    for outcome in outcomes:
        counts = per_server[outcome.server_id]
        if outcome.error is not None:
            error = Text(short(outcome.error), style="red")
            table.add_row(_cell(outcome.server_id), *[_cell(None)] * (len(columns) + 1), error)
        else:
            table.add_row(_cell(outcome.server_id), str(counts.total()), *_counts(counts, columns))
    return table


def _counts(counts: Counter[str], columns: Sequence[str]) -> list[Text]:
    return [
        Text(str(counts[c]), style=STATUS_STYLES.get(c, "") if counts[c] else "dim")  # type: ignore[call-overload]
        for c in columns
    ]


def status_summary(counts: Counter[str]) -> Table:
    """Runs by status across the fleet, with each status's share."""
    total = counts.total()
    table = _table("status", "runs", "share", footers=[Text("all"), Text(str(total))])
    table.columns[1].justify = table.columns[2].justify = "right"
    for status in status_columns(counts):
        share = f"{100 * counts[status] / (total or 1):.1f}%"
        table.add_row(status_text(status), str(counts[status]), share)
    return table


def event_line(event: RunEvent, id_width: int, width: int | None = None) -> Text:
    """``event_text``'s columns, with the kind in bold and the statuses coloured.

    On a terminal ``width`` columns wide where the title would get fewer than 20 columns,
    the status column narrows so the title keeps some room (it is cut at the edge).
    """
    status_width = STATUS_WIDTH
    if width is not None and width - EVENT_FIXED_WIDTH - id_width - STATUS_WIDTH < _MIN_TITLE:
        status_width = NARROW_STATUS_WIDTH
    line = Text()
    for text, what in event_parts(event, id_width, status_width):
        if what == "status":
            line.append_text(status_text(text))
        else:
            line.append(text, _EVENT_STYLES.get(what, ""))
    return line


_EVENT_STYLES = {"time": "dim", "created": "bold", "arrow": "dim"}


@contextlib.contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[bool], None]]:
    """A bar on stderr while ``total`` servers are read; nothing when stderr is not a terminal.

    Yields ``advance(failed)``, to call once per server.
    """
    console = stderr_console()
    if not console.is_terminal:
        yield lambda failed: None
        return
    failures = 0
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[errors]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout is the result (say --json for jq): never the bar's
    )
    task = bar.add_task(label, total=total, errors="")

    def advance(failed: bool) -> None:
        nonlocal failures
        failures += failed
        bar.update(task, advance=1, errors=f"{failures} failed" if failures else "")

    with bar:
        yield advance
