"""How run data reads in the dashboard's tables and headers: status colours, and cells that are
always rich Text. A plain str cell is parsed as Textual markup: a run named `[/]` would raise, one
with escapes or bidi overrides would garble the row, so text from a run goes through here."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text

from gigagpt.listing import fmt_loss, fmt_step
from gigagpt.store.meta import printable

STATUS_STYLE = {"running": "bold green", "starting": "green", "completed": "cyan", "stopped": "yellow",
                "failed": "bold red", "crashed": "bold red", "not started": "red", "damaged": "bold red"}


def cell(value, style: str = "") -> Text:
    """A table cell: the value as plain text (never markup), control characters dropped."""
    return Text(printable("–" if value is None else str(value)), style=style)


def status_cell(status: str) -> Text:
    return cell(status, STATUS_STYLE.get(status, ""))


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def started(row: dict) -> Text:
    return cell(time.strftime("%m-%d %H:%M", time.localtime(row["started"])) if row["started"] else "–")


def recent_cells(row: dict) -> tuple:
    """The launch screen's recent-runs row of a summary (store.summary): run, preset, status,
    step, loss, started. A run outside the runs root says where it is."""
    name = cell(short(row["name"], 40))
    if row["key"] != row["id"]:
        name.append(f" ({printable(Path(row['root']).name)})", style="dim")
    return (name, cell(row["preset"] or "–"), status_cell(row["status"]), cell(fmt_step(row)),
            cell(fmt_loss(row["loss"])), started(row))
