"""How run data reads in the dashboard's tables and headers: status colours, and cells that are
always rich Text. A plain str cell is parsed as Textual markup: a run named `[/]` would raise, one
with escapes or bidi overrides would garble the row, so text from a run goes through here."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

from rich.cells import cell_len
from rich.text import Text

from gigagpt.listing import fmt_duration, fmt_loss, fmt_step, never_started
from gigagpt.store.meta import printable
from gigagpt.store.metrics import number as finite_number

STATUS_STYLE = {"running": "bold green", "starting": "green", "completed": "cyan", "stopped": "yellow",
                "failed": "bold red", "crashed": "bold red", "not started": "red", "damaged": "bold red"}
QUEUE_STYLES = {"queued": "magenta", "cancelled": "dim"}


def cell(value, style: str = "") -> Text:
    """A table cell: the value as plain text (never markup), control characters dropped."""
    return Text(printable("–" if value is None else str(value)), style=style)


def drawn(value):
    """A cell as it is drawn, to compare: rich's Text == ignores the style (a name turning red)."""
    return (value.plain, str(value.style), tuple(value.spans)) if isinstance(value, Text) else value


def set_columns(table, columns: list[str], headers: list[str], widths: dict[str, int], before) -> tuple:
    """A DataTable's columns (keys, their headers, widths), added again only when they differ from
    `before` (the layout this returned last time: a new one means the rows are written again too)."""
    layout = (columns, widths, headers)
    if layout != before:
        table.clear(columns=True)
        for key, header in zip(columns, headers):
            table.add_column(header, key=key, width=widths[key])
    return layout


def write_rows(table, columns: list[str], rows: dict[str, list], before: dict[str, list], rebuild: bool) -> dict:
    """Put rows ({row key: its cells in `columns`' order}, in table order) in a DataTable: all of
    them when the keys, their order or the columns changed (rebuild), else only the cells not as
    `before` drew them. Returns the rows as drawn now: the next call's `before`."""
    if rebuild or list(rows) != list(before) or table.row_count != len(rows):
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
    else:
        for key, cells in rows.items():
            for column, value, was in zip(columns, cells, before[key]):
                if drawn(value) != was:
                    table.update_cell(key, column, value)
    return {key: [drawn(v) for v in cells] for key, cells in rows.items()}


def status_cell(status: str) -> Text:
    return cell(status, STATUS_STYLE.get(status, ""))


def run_status_cell(row: dict) -> Text:
    """A run's status as every table shows it: a queued run with its place in its root's queue
    (`queued #2`, from QueueWatch.annotate), a cancelled one dim."""
    if row["status"] == "queued" and row.get("queue_position"):
        return Text(f"queued #{row['queue_position']}", style=QUEUE_STYLES["queued"])
    if row["status"] in QUEUE_STYLES:
        return Text(row["status"], style=QUEUE_STYLES[row["status"]])
    return status_cell(row["status"])


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def fit(name: str, width: int) -> str:
    """A name in at most `width` characters, cut in the middle: its start and its end, where run
    names differ (`tiny-20261129-093012` in 16: `tiny-20…9-093012`)."""
    if len(name) <= width:
        return name
    if width < 2:
        return "…"[:max(width, 0)]
    tail = width // 2
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def around(name: str, at: int, width: int) -> str:
    """A name in at most `width` characters that shows it from `at` on (where it differs from
    names like it): its start when `at` is in it, else a window from just before `at`."""
    if len(name) <= width:
        return name
    if at < width - 1:
        return name[:width - 1] + "…"
    start = at - (width - 2) // 3
    if start + width - 2 >= len(name):
        return "…" + name[len(name) - (width - 1):]
    return "…" + name[start:start + width - 2] + "…"


def _clashes(names: list[str], labels: list[str]) -> list[dict[str, list[int]]]:
    """Groups of different names given the same label: {name: its indices} per group."""
    by_label: dict[str, dict[str, list[int]]] = {}
    for i, (name, label) in enumerate(zip(names, labels)):
        by_label.setdefault(label, {}).setdefault(name, []).append(i)
    return [group for group in by_label.values() if len(group) > 1]


def fit_all(names: list[str], width: int) -> list[str]:
    """Labels of at most `width` characters for names shown together (a table's rows, a legend):
    two different names never get the same label, equal names get equal ones, a name that fits is
    itself. Cut in the middle (fit); names that still look alike show where they differ (around);
    should even that meet, they are numbered (`…~2`). Distinct when width leaves room for the number."""
    labels = [fit(name, width) for name in names]
    for _ in range(4):
        groups = _clashes(names, labels)
        if not groups:
            return labels
        for group in groups:
            at = len(os.path.commonprefix(list(group)))
            for name, where in group.items():
                for i in where:
                    labels[i] = around(name, at, width)
    for group in _clashes(names, labels):
        for number, (name, where) in enumerate(group.items(), 1):
            for i in where:
                labels[i] = fit(name, width - len(f"~{number}")) + f"~{number}"
    if _clashes(names, labels):  # a number met a name that looks like one: number every name
        number = {name: i for i, name in enumerate(dict.fromkeys(names), 1)}
        labels = [fit(name, width - len(f"~{number[name]}")) + f"~{number[name]}" for name in names]
    return labels


PADDING = 2  # a DataTable column's padding: one cell each side
MIN_CUT = 8  # a column cut to fit (fit_columns), and the names in a small terminal, are at least this wide


def table_space(table, rows: int) -> int:
    """The cells a DataTable's columns may take once it holds `rows` rows: its width, less its
    vertical scrollbar when the rows and the header overflow the height it may take: its height,
    or a height: auto table's max-height (its height now fits only the rows it held)."""
    width, height = table.size
    if table.styles.height and table.styles.height.is_auto and table.styles.max_height:
        height = int(table.styles.max_height.resolve(table.parent.size, table.app.size)) - table.styles.gutter.height
    if not width:  # not laid out yet: its screen's width, less its border
        width = table.screen.size.width - table.styles.gutter.width
    return width - (table.styles.scrollbar_size_vertical if rows > height - 1 else 0)  # the header: a row


def whole_widths(headers: dict[str, str], rows: list[dict]) -> dict[str, int]:
    """Each column's width with nothing cut: its widest cell or its header (the names' aside)."""
    return {k: max([cell_len(h)] + [row[k].cell_len for row in rows]) for k, h in headers.items() if k != "name"}


class Columns(NamedTuple):
    """A table's columns for fit_columns: every one's header (in table order, the names' `name`),
    those always shown, those shown while they fit (most useful first), the names' (min, max)
    width, and those cut in the middle to fit rather than left out."""
    headers: dict[str, str]
    required: tuple
    optional: tuple
    name_width: tuple[int, int]
    cut: tuple = ()


def fit_columns(table: Columns, rows: list[dict], space: int,
                small: dict | None = None) -> tuple[list[str], dict[str, int], list[dict]]:
    """A table laid out in `space` terminal cells with no horizontal scrolling: (its columns, in
    the order of its headers; each one's width; the rows as shown). rows: each row's cells (Text)
    by column, its name (str) as `name`; the rows returned are new, `name` the name as the column
    shows it (fit_all). The required columns always, the name column name_width's (min, max) min
    wide (narrower only when the names are); then the optional ones while they fit ("name" among
    them: the names widen to the max there); a `cut` one that does not fit whole in its turn takes
    what is left, its cells cut in the middle (fit_all: never two alike); what is left at the end
    widens the names. A small terminal, where the required columns do not fit whole: `small`'s
    cells ({column: a cell per row}) replace theirs, then the names narrow, to MIN_CUT."""
    headers, required = table.headers, table.required
    rows = [dict(row) for row in rows]  # the caller's rows as they were: a new cell is this layout's
    names = [row["name"] for row in rows]
    low, high = table.name_width
    longest = min(max([len(n) for n in names] + [cell_len(headers["name"])]), high)
    widths = whole_widths(headers, rows)

    def others() -> int:  # the required columns but the names, and the names' padding
        return sum(widths[k] + PADDING for k in set(required) - {"name"}) + PADDING

    if small and others() + min(longest, low) > space:
        for key, cells in small.items():
            for row, value in zip(rows, cells):
                row[key] = value
        widths = whole_widths(headers, rows)
    widths["name"] = max(min(longest, low, space - others()), min(longest, MIN_CUT))
    used = others() + widths["name"]
    chosen = set(required) | {"name"}
    for key in table.optional:
        left = space - used - PADDING
        if key == "name":
            grown = min(longest, widths["name"] + space - used)
            used, widths["name"] = used + max(grown - widths["name"], 0), max(grown, widths["name"])
        elif key in chosen:
            continue
        elif widths[key] <= left:
            chosen.add(key)
            used += widths[key] + PADDING
        elif key in table.cut and left >= max(cell_len(headers[key]), MIN_CUT):
            chosen.add(key)
            used, widths[key] = space, left
            for row, label in zip(rows, fit_all([row[key].plain for row in rows], left)):
                row[key] = Text(label, style=row[key].style)
    widths["name"] = max(min(longest, widths["name"] + space - used), widths["name"])
    for row, label in zip(rows, fit_all(names, widths["name"])):
        row["name"] = label
    columns = [k for k in headers if k in chosen]
    return columns, {k: widths[k] for k in columns}, rows


def started(row: dict) -> Text:
    shown = row["started"] and not never_started(row)
    return cell(time.strftime("%m-%d %H:%M", time.localtime(row["started"])) if shown else "–")


def duration(row: dict) -> Text:
    return cell("–" if never_started(row) else fmt_duration(row["duration"]))


def current_step(row: dict) -> Text:
    """The step without its max (`600000`, not `600000/600000`): the step column in a small terminal."""
    return cell("?" if row["step"] is None else row["step"])


RECENT = Columns({"name": "run", "preset": "preset", "status": "status", "step": "step", "loss": "loss",
                  "started": "started"}, ("name", "status", "step"), ("loss", "started", "preset", "name"),
                 (20, 40))  # the names: cut to no fewer (in the middle) and no more characters


def recent_table(rows: list[dict], space: int) -> tuple[list[str], dict[str, int], list[list[Text]]]:
    """The launch screen's recent runs of summaries (store.summary) laid out in `space` cells like
    the runs table (fit_columns): run, status and step always, then loss, started and preset while
    they fit. Returns the columns (the names' is `run`), their widths and each row's cells. A run
    outside the runs root says where it is after its name, dim."""
    places = [f" ({printable(Path(r['root']).name)})" if r["key"] != r["id"] else "" for r in rows]
    every = [{"name": printable(r["name"]) + place, "preset": cell(r["preset"] or "–"), "status": run_status_cell(r),
              "step": cell(fmt_step(r)), "loss": cell(fmt_loss(r["loss"])), "started": started(r)}
             for r, place in zip(rows, places)]
    columns, widths, every = fit_columns(RECENT, every, space, small={"step": [current_step(r) for r in rows]})
    for cells, place in zip(every, places):
        label = cells["name"]
        cells["name"] = cell(label)
        if place and label.endswith(place):
            cells["name"].stylize("dim", len(label) - len(place))
    keys = ["run" if k == "name" else k for k in columns]
    return keys, dict(zip(keys, widths.values())), [[cells[k] for k in columns] for cells in every]


def peak_text(events: list[dict]) -> str:
    """' of 1.29 TFLOP/s bf16 (measured)': the MFU denominator (one device's peak), from the last
    `start` or `peak` event (docs/run-format.md); '' when the run names none."""
    rec = next((e for e in reversed(events) if e.get("event") in ("start", "peak")), None) or {}
    flops, dtype, source = finite_number(rec.get("peak_flops")), rec.get("peak_dtype"), rec.get("peak_source")
    if not flops or flops <= 0:
        return ""
    scaled = next((f"{flops / scale:.3g} {unit}FLOP/s" for scale, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"))
                   if flops >= scale), f"{flops / 1e6:.3g} MFLOP/s")
    dtype = {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, "") if isinstance(dtype, str) else ""
    source = f" ({printable(source)})" if isinstance(source, str) and source else ""
    return f" of {scaled}{' ' + dtype if dtype else ''}{source}"
