"""How runs read in a table: cells of a summary row, filtering and sorting. Shared by
`gigagpt runs` and the dashboard's runs screen; no torch, no Textual."""
from __future__ import annotations

import math
import time

from gigagpt import plan
from gigagpt.store.meta import printable

# ---------------------------------------------------------------------------- filtering and sorting

SORT_KEYS = ("started", "name", "preset", "status", "step", "tokens", "loss", "val_loss", "best_val",
             "tok_s", "device", "duration")


def matches(row: dict, text: str = "", statuses=()) -> bool:
    if statuses and row["status"] not in statuses:
        return False
    if text:
        hay = " ".join(str(x) for x in (row["id"], row["name"], row["preset"], row["device"],
                                          row["status"], *row["tags"])).lower()
        return all(word in hay for word in text.lower().split())
    return True


def sort_rows(rows: list[dict], key: str, reverse: bool = False) -> list[dict]:
    """Rows sorted by `key`; rows without a value go last whichever the direction."""
    have = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    have.sort(key=lambda r: (r[key].lower() if isinstance(r[key], str) else r[key]), reverse=reverse)
    return have + missing


# ---------------------------------------------------------------------------- formatting

def human_count(n) -> str:
    """Table cells: three significant digits."""
    return plan.human_count(n, digits=3)


def fmt_loss(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def never_started(row: dict) -> bool:
    """A queued or cancelled run: its summary's `started` is only when it was made (the order it
    sorts in), so it shows no start time and no duration."""
    return row["status"] in ("queued", "cancelled")


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds / 86400:.1f}d"


def fmt_time(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "–"


def fmt_step(row: dict) -> str:
    return f"{row['step'] if row['step'] is not None else '?'}/{row['max_steps'] or '?'}"


def note(row: dict) -> str:
    """The failure reason or what is damaged: one line."""
    return printable("; ".join(x for x in (row["failure"], row["problem"]) if x))


def run_cell(row: dict) -> str:
    run_id = printable(row["id"])
    return row["name"] if row["name"] == run_id else f"{row['name']} ({run_id})"


TABLE = (("RUN", run_cell),
         ("PRESET", lambda r: r["preset"] or "–"), ("STATUS", lambda r: r["status"]),
         ("STEP", fmt_step), ("TOKENS", lambda r: human_count(r["tokens"])),
         ("LOSS", lambda r: fmt_loss(r["loss"])), ("VAL", lambda r: fmt_loss(r["val_loss"])),
         ("BEST VAL", lambda r: fmt_loss(r["best_val"])), ("TOK/S", lambda r: human_count(r["tok_s"])),
         ("DEVICE", lambda r: r["device"] or "–"),
         ("STARTED", lambda r: "–" if never_started(r) else fmt_time(r["started"])),
         ("DURATION", lambda r: "–" if never_started(r) else fmt_duration(r["duration"])),
         ("TAGS", lambda r: printable(",".join(r["tags"]))),
         ("NOTE", note))


ROOT_COLUMN = ("ROOT", lambda r: printable(r["root"]))  # `runs list` shows it when there are several roots


CELL_MAX = 80  # a longer value is cut (the NOTE column, the last, is not)


def clip(text: str, width: int = CELL_MAX) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def table(rows: list[dict], columns=TABLE) -> str:
    last = len(columns) - 1
    cells = [[h for h, _ in columns]] + [[f(r) if i == last else clip(f(r)) for i, (_, f) in enumerate(columns)]
                                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


